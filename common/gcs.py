"""Cloud Storage for the spool: the one place a filesystem for gs:// URIs is built, and the one
object writer.

Through pyarrow.fs.GcsFileSystem (Google's C++ storage client inside pyarrow), not fsspec/gcsfs:
pyarrow already writes and reads every spool file, its GcsFileSystem takes an endpoint override for
the emulator, and it adds no dependency, where gcsfs would bring aiohttp and an auth stack of its
own for the same few calls.

STORAGE_EMULATOR_HOST, when set (`http://host:port` or `host:port`, the form google-cloud-storage
reads), points it at an emulator, anonymously and over plain HTTP; unset, it talks to Google Cloud
with application default credentials. pyarrow's own `FileSystem.from_uri("gs://...")` ignores that
variable (and waits minutes for a metadata server off Google Cloud), so nothing here uses it.

A write uploads one object from a buffer that already holds the whole Parquet file. Cloud Storage
creates an object only when its upload is finalized, in one step, so a reader sees it whole or not
at all, and a writer killed mid-upload leaves no object. The call returns once Cloud Storage has
confirmed the object (it is durable and listed from then on), and its size is read back and
compared before the caller may ack its messages.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import re
from typing import Any

import pyarrow as pa
from pyarrow import fs as pafs

SCHEME = "gs://"
EMULATOR_VAR = "STORAGE_EMULATOR_HOST"
# How long one call retries transient errors before it fails; the spooler then waits and tries
# again with its own backoff (outage_backoff_max_seconds), reporting the outage meanwhile.
RETRY_SECONDS = 20.0
_STATUS = re.compile(r"Status\((\w+): (.*?)(?: error_info=|\)\. Detail|$)", re.DOTALL)


def is_gcs(spool_dir: str) -> bool:
    return spool_dir.startswith(SCHEME)


def object_base(spool_dir: str) -> str:
    """gs://bucket/prefix -> bucket/prefix, the form GcsFileSystem paths take (no trailing /)."""
    return spool_dir[len(SCHEME) :].rstrip("/")


def filesystem() -> pafs.GcsFileSystem:
    """A GcsFileSystem for Google Cloud, or for the emulator named by STORAGE_EMULATOR_HOST."""
    timeout = dt.timedelta(seconds=RETRY_SECONDS)
    emulator = os.environ.get(EMULATOR_VAR, "").strip()
    if not emulator:
        return pafs.GcsFileSystem(retry_time_limit=timeout)
    scheme, _, host = emulator.rpartition("://")
    return pafs.GcsFileSystem(
        anonymous=True,
        scheme=scheme or "http",
        endpoint_override=host,
        project_id=os.environ.get("GOOGLE_CLOUD_PROJECT") or "emulator",
        retry_time_limit=timeout,
    )


def short_error(exc: BaseException) -> str:
    """The Cloud Storage client's status as one short line ('NOT_FOUND: ...'), else the error's text."""
    text = str(exc)
    found = _STATUS.search(text)
    line = f"{found.group(1)}: {found.group(2).strip()}" if found else (text.strip().splitlines() or [""])[0]
    return line[:200]


def write_object(filesystem: Any, path: str, data: pa.Buffer) -> str:
    """Upload `data` (a whole file) as the object `path` (bucket/name); return `path` once Cloud
    Storage has it, complete. Raises OSError with one line naming what failed; then no object of
    that name was made (see the module docstring)."""
    try:
        stream = filesystem.open_output_stream(path)
        # One write of the whole buffer, then close, which finalizes the upload. Not a `with`
        # block: after a failed write it would close (finalize) what was sent so far.
        stream.write(data)
        stream.close()
        size = filesystem.get_file_info(path).size
    except OSError as exc:
        code = exc.errno or errno.EIO
        raise OSError(code, f"Cloud Storage: {short_error(exc)}") from exc
    if size != data.size:  # never seen; refuse to ack rather than trust it
        raise OSError(errno.EIO, f"Cloud Storage: {path} holds {size} bytes, {data.size} were written")
    return path
