"""Starting Spark: a JVM that dies while starting is started again; other errors are not retried."""

from __future__ import annotations

import pytest
from pyspark.errors import PySparkRuntimeError

from jobs.aggregate.session import start


class Builder:
    """Stands in for SparkSession.builder: fails its first `failures` starts with `error`."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures, self.calls = failures, 0
        self.error = error or PySparkRuntimeError(errorClass="JAVA_GATEWAY_EXITED", messageParameters={})

    def getOrCreate(self) -> str:  # the builder's own name
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "session"


def test_a_jvm_that_exits_while_starting_is_started_again(capsys: pytest.CaptureFixture[str]) -> None:
    builder = Builder(failures=2)
    assert start(builder, attempts=3, pause=0) == "session"
    assert builder.calls == 3
    assert capsys.readouterr().err.count("starting it again") == 2


def test_the_last_attempts_error_is_raised() -> None:
    builder = Builder(failures=5)
    with pytest.raises(PySparkRuntimeError, match="JAVA_GATEWAY_EXITED"):
        start(builder, attempts=3, pause=0)
    assert builder.calls == 3


def test_other_errors_are_not_retried() -> None:
    other = PySparkRuntimeError(
        errorClass="PYTHON_VERSION_MISMATCH", messageParameters={"worker_version": "3.10", "driver_version": "3.11"}
    )
    builder = Builder(failures=1, error=other)
    with pytest.raises(PySparkRuntimeError, match="PYTHON_VERSION_MISMATCH"):
        start(builder, attempts=3, pause=0)
    assert builder.calls == 1
