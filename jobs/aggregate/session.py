"""The one place that builds the SparkSession and its settings."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from pyspark.errors import PySparkRuntimeError
from pyspark.sql import SparkSession

from jobs.aggregate.archive import NotShippable, project_archive

# In local mode the executors live in the driver's JVM, so this heap is the whole run's: with 512 MB
# the job's process tree (JVM, Python driver and workers) peaked at 1.6 GB over 1M rows, against
# 1.9-2.1 GB with the default 1 GB heap (bench/TUNING.md); Spark spills what does not fit.
# --conf spark.driver.memory=... overrides it.
LOCAL_DRIVER_MEMORY = "512m"
# and the serial collector: over 300k rows the tree peaked at 1,477 MB against 1,615 MB with G1,
# for a run of 84.1 s against 80.3 s (bench/TUNING.md). A 512 MB heap has little for G1's regions
# and threads to win, and nothing caps what a long --stream job may load, unlike the code cache or
# metaspace caps measured beside it.
LOCAL_GC = "-XX:+UseSerialGC"


def get_spark(
    master: str | None = None,
    app_name: str = "txn-aggregate",
    shuffle_partitions: int | None = None,
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    """A SparkSession for `master` (default: spark-submit's choice, else local[*]).

    The emulator variables are handed to executors so a cluster run talks to the same services,
    and off local mode the project's packages are shipped to the executors' Python path.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    elif "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit, which sets the master itself
        builder = builder.master("local[*]")
        master = "local[*]"
    if master and master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no network lookup for a one-machine run
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.sql.adaptive.enabled": "true",
        # Let AQE coalesce shuffle partitions of cached frames too (the job persists a few).
        "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning": "true",
    }
    if master and master.startswith("local"):
        conf["spark.driver.memory"] = LOCAL_DRIVER_MEMORY
        conf["spark.driver.extraJavaOptions"] += f" {LOCAL_GC}"
    if shuffle_partitions:
        conf["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
    for var in ("PUBSUB_EMULATOR_HOST", "BIGTABLE_EMULATOR_HOST"):
        if os.environ.get(var):
            conf[f"spark.executorEnv.{var}"] = os.environ[var]
    conf.update(extra_conf or {})
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = start(builder)
    session.sparkContext.setLogLevel("ERROR")
    quiet_task_failures(session)
    if "spark.sql.shuffle.partitions" not in conf:
        # A few partitions per core: the batches are small and 200 tasks per shuffle cost more than they split.
        cores = session.sparkContext.defaultParallelism
        session.conf.set("spark.sql.shuffle.partitions", str(max(4, 2 * cores)))
    ship_packages(session)
    return session


# Loggers that print a failed task's whole Python traceback on the driver's stderr (local mode), though
# the same error reaches the driver's code, which reports it: one line for an outage, the traceback
# for a bug. On a cluster these log on the executors, not here.
TASK_FAILURE_LOGGERS = ("org.apache.spark.executor.Executor", "org.apache.spark.scheduler.TaskSetManager")


def quiet_task_failures(session: SparkSession) -> None:
    """Turn off the TASK_FAILURE_LOGGERS (log4j2's Configurator, through the session's JVM)."""
    jvm = session.sparkContext._jvm
    if jvm is None:
        return
    off = jvm.org.apache.logging.log4j.Level.OFF
    for name in TASK_FAILURE_LOGGERS:
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(name, off)


GATEWAY_ATTEMPTS = 3


def start(builder: Any, attempts: int = GATEWAY_ATTEMPTS, pause: float = 2.0) -> SparkSession:
    """builder.getOrCreate(), tried again when the JVM exits before handing over its port: on a
    loaded machine its start-up can die on a transient error, and a second start succeeds (the one
    seen most, gRPC's "epoll_wait error" in the forked child, is turned off in common/__init__.py).
    Any other error, or the last attempt's, is raised."""
    for attempt in range(1, attempts + 1):
        try:
            session: SparkSession = builder.getOrCreate()
            return session
        except PySparkRuntimeError as exc:
            if exc.getCondition() != "JAVA_GATEWAY_EXITED" or attempt == attempts:
                raise
            print(
                f"spark: the JVM exited while starting; starting it again ({attempt}/{attempts - 1})", file=sys.stderr
            )
            time.sleep(pause * attempt)
    raise AssertionError("unreachable")


def ship_packages(session: SparkSession) -> Path | None:
    """Add the project's archive (jobs/aggregate/archive.py) to the executors' Python path; returns
    it, or None in local mode (the executors are this machine's Python, which imports the project
    as the driver does) or when the packages are not folders of sources (already shipped)."""
    if (session.sparkContext.master or "local").startswith("local"):
        return None
    try:
        archive = project_archive()
    except NotShippable:
        return None
    session.sparkContext.addPyFile(str(archive))
    return archive
