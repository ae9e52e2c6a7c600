"""Progress of Spark work as tqdm bars (tasks done of tasks known, with the rate)."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator

from pyspark.sql import SparkSession
from tqdm import tqdm

from common import logs


@contextlib.contextmanager
def spark_progress(spark: SparkSession, description: str, interval: float = 0.5) -> Iterator[None]:
    """Show a bar of the Spark tasks run by the block (every job it starts), polled from the
    status tracker; the block's jobs are tagged with a job group of their own."""
    context = spark.sparkContext
    group = f"aggregate-{uuid.uuid4().hex[:8]}"
    context.setJobGroup(group, description)
    tracker = context.statusTracker()
    done = threading.Event()
    # Off when stderr is not a TTY, and with --log-format json (each stderr line is then JSON).
    bar = tqdm(desc=description, unit="task", leave=False, dynamic_ncols=True, disable=True if logs.is_json() else None)

    def poll() -> None:
        while not done.wait(interval):
            total = completed = 0
            for job_id in tracker.getJobIdsForGroup(group):
                job = tracker.getJobInfo(job_id)
                for stage_id in job.stageIds if job else []:
                    stage = tracker.getStageInfo(stage_id)
                    if stage:
                        total += stage.numTasks
                        completed += stage.numCompletedTasks
            bar.total = max(total, 1)
            bar.n = completed
            bar.refresh()

    thread = threading.Thread(target=poll, name="spark-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        bar.close()
        # None clears the property, which pyspark's annotation (value: str) leaves out.
        context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
