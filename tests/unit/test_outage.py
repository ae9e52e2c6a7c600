"""common.outage: which errors mean "unreachable", the capped backoff, and the one-line reasons."""

from __future__ import annotations

import errno

from google.api_core import exceptions as gexc
from pyspark.errors import PythonException

from common.clients import ServiceUnavailable
from common.outage import Backoff, describe_os_error, first_line, is_outage, names_outage, outage_line

# What the driver receives when a Bigtable write fails inside an executor (shortened).
EXECUTOR_TEXT = """
  An exception was thrown from the Python worker. Please see the stack trace below.
Traceback (most recent call last):
  File "/work/main/jobs/aggregate/load.py", line 80, in write_partition
google.api_core.exceptions.ServiceUnavailable: 503 failed to connect to all addresses; last error: UNAVAILABLE
"""


def test_errors_that_mean_unreachable_are_outages_whatever_their_wrapper() -> None:
    assert is_outage(PythonException(message=EXECUTOR_TEXT))
    assert is_outage(PythonException(message="grpc StatusCode.DEADLINE_EXCEEDED while writing"))
    assert is_outage(gexc.ServiceUnavailable("down"))
    assert is_outage(gexc.RetryError("Timeout of 5.0s exceeded", cause=gexc.ServiceUnavailable("x")))
    assert is_outage(ServiceUnavailable("cannot reach Bigtable"))
    assert is_outage(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    try:
        try:
            raise gexc.DeadlineExceeded("slow")
        except gexc.DeadlineExceeded as inner:
            raise RuntimeError("the run failed") from inner
    except RuntimeError as outer:
        assert is_outage(outer)  # through its cause


def test_errors_that_are_bugs_or_bad_data_are_not_outages() -> None:
    assert not is_outage(ValueError("amount_minor must be an integer"))
    assert not is_outage(PythonException(message="ZeroDivisionError: division by zero"))
    assert not is_outage(gexc.InvalidArgument("bad row key"))
    assert not is_outage(KeyError("user_id"))


def test_the_reason_line_is_the_one_naming_the_status() -> None:
    assert outage_line(PythonException(message=EXECUTOR_TEXT)).startswith(
        "google.api_core.exceptions.ServiceUnavailable: 503 failed to connect"
    )
    retry = gexc.RetryError("Timeout of 30.0s exceeded, last exception: ...", cause=gexc.ServiceUnavailable("gone"))
    assert first_line(retry) == "ServiceUnavailable: 503 gone"


def test_full_read_only_and_unwritable_disks_are_named() -> None:
    assert describe_os_error(OSError(errno.ENOSPC, "No space left on device"), "spool_dir") == "spool_dir is full"
    assert describe_os_error(OSError(errno.EDQUOT, "Disk quota exceeded"), "spool_dir") == "spool_dir is full"
    assert describe_os_error(OSError(errno.EROFS, "Read-only file system"), "spool_dir") == "spool_dir is read-only"
    assert describe_os_error(OSError(errno.EACCES, "Permission denied"), "spool_dir") == "spool_dir is not writable"
    assert describe_os_error(OSError(errno.EIO, "Input/output error"), "spool_dir") == "spool_dir: Input/output error"


def test_backoff_doubles_to_its_cap_reports_once_per_interval_and_says_when_it_ends() -> None:
    lines: list[str] = []
    backoff = Backoff("spooler", "Pub/Sub", lines.append, cap=4.0, report_every=3600.0, initial=0.5)
    waits = [backoff.failed("503 down") for _ in range(8)]
    for wait, base in zip(waits, [0.5, 1, 2, 4, 4, 4, 4, 4], strict=True):
        assert 0.8 * base <= wait <= base  # jitter takes at most a fifth off
    assert backoff.down and backoff.outages == 1
    assert lines == ["spooler: Pub/Sub unreachable for 0 s (503 down); retrying with backoff up to 4 s"]
    backoff.succeeded()
    assert not backoff.down and backoff.delay() == 0.0
    assert lines[-1] == "spooler: Pub/Sub back after 0 s"
    backoff.failed("again")
    assert backoff.outages == 2 and len(lines) == 3  # a new outage is reported at once


def test_a_row_failures_text_names_an_outage_or_not() -> None:
    refused = "UNAVAILABLE: failed to connect to all addresses; last error: Connection refused"
    assert names_outage(refused)
    assert not names_outage("INVALID_ARGUMENT: column family dcfnope does not exist")
