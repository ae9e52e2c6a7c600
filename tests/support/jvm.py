"""The JVM options of every Spark driver the tests start (this process's session and each job, demo
or notebook they run): spark-submit puts SPARK_SUBMIT_OPTS on the driver's java command line.

The drivers are short-lived and small, on two cores shared by three test workers, so:
- the JIT's first tier only and the serial GC (C2's compiler threads and a parallel GC cost more CPU
  than they return in a run of seconds);
- a class-data archive of the classes a Spark session loads (JDK 17's dynamic CDS), written once per
  machine and PySpark version by a short session, then mapped by every driver instead of parsing and
  verifying those classes again.

bench/TUNING.md ("The test suite") has what each bought. The product's own runs keep the JVM's
defaults; a developer's SPARK_SUBMIT_OPTS is left as it is.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyspark

FLAGS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
WARM_UP = """
from pyspark.sql import functions as F
from jobs.aggregate.session import get_spark
spark = get_spark(master="local[2]", app_name="class-archive", shuffle_partitions=2)
frame = spark.range(20000).withColumn("k", F.col("id") % 7).withColumn("s", F.col("id").cast("string"))
frame.write.parquet(TARGET)
back = spark.read.parquet(TARGET)
back.groupBy("k").agg(F.sum("id"), F.min(F.struct("s", "id"))).toPandas()
back.repartition("s").dropDuplicates(["s"]).join(back, "s").count()
spark.createDataFrame(back.limit(10).toPandas()).collect()
spark.stop()
"""


def archive_path() -> Path:
    """Where this machine keeps the archive for this PySpark, Python environment and JVM (an archive
    of another JVM or class path would be refused by the JVM with a warning on every start)."""
    java = Path(os.path.realpath(shutil.which("java") or "java"))
    stamp = f"{sys.prefix}|{java}|{java.stat().st_mtime_ns if java.exists() else 0}"
    tag = f"{pyspark.__version__}-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"
    return Path(tempfile.gettempdir()) / f"txn-tests-spark-classes-{tag}.jsa"


def _write_archive(path: Path, root: Path) -> None:
    part = path.with_suffix(f".{os.getpid()}.part")
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            **os.environ,
            "SPARK_SUBMIT_OPTS": f"{FLAGS} -XX:ArchiveClassesAtExit={part}",
            "PYTHONPATH": str(root),
        }
        script = f"TARGET = {str(Path(scratch) / 'frame')!r}\n" + WARM_UP
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=600
        )
    if result.returncode == 0 and part.exists():
        part.rename(path)
    else:
        part.unlink(missing_ok=True)
        print(f"tests: no Spark class archive ({result.stderr.strip().splitlines()[-1:]}); drivers start without one")


def use_archive(root: Path) -> None:
    """Write the archive if this machine has none yet (one test process at a time), then hand it to
    every driver started from here on. Left alone when SPARK_SUBMIT_OPTS was set outside the tests."""
    if os.environ.get("SPARK_SUBMIT_OPTS", FLAGS) != FLAGS:
        return
    path = archive_path()
    with open(Path(tempfile.gettempdir()) / "txn-tests-spark-classes.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            _write_archive(path, root)
    if path.exists():
        os.environ["SPARK_SUBMIT_OPTS"] = f"{FLAGS} -XX:SharedArchiveFile={path}"
