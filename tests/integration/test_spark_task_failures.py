"""A failed Spark task's error reaches the driver's code, which reports it, and Spark itself does not
print the task's Python traceback on stderr (an outage must read as one line)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
from jobs.aggregate.session import get_spark

def fail(batches):
    for batch in batches:
        raise RuntimeError("UNAVAILABLE: no Bigtable in this test")
        yield batch

spark = get_spark("local[1]")
try:
    spark.range(3).mapInArrow(fail, "id long").collect()
except Exception as exc:
    print("driver saw:", "UNAVAILABLE: no Bigtable in this test" in str(exc))
spark.stop()
"""


def test_a_failed_task_reaches_the_driver_without_a_traceback_on_stderr() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "driver saw: True"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "Exception in task" not in done.stderr
