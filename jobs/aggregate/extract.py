"""Extract: find the spool files a run has not processed and read exactly those, schema checked.

Listing goes through the Hadoop FileSystem API of the session's JVM, so the spool may be any
Hadoop-compatible URI (gs://bucket/spool on Dataproc, hdfs://...) as well as a local path.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T
from pyspark.sql.utils import AnalysisException

from common import spool
from jobs.aggregate import state

_ARROW_TO_SPARK = {
    pa.string(): T.StringType(),
    pa.int64(): T.LongType(),
    pa.timestamp("us", tz="UTC"): T.TimestampType(),
}
EXPECTED_TYPES: dict[str, T.DataType] = {f.name: _ARROW_TO_SPARK[f.type] for f in spool.TRANSACTION_SCHEMA}


class SpoolSchemaError(ValueError):
    """Spool files whose columns are not the transaction schema; the message names the column."""


def spool_uri(spool_dir: str) -> str:
    """The spool location as a URI Hadoop understands (local paths become file:// URIs)."""
    if spool.is_local(spool_dir):
        return "file://" + os.path.abspath(spool.local_path(spool_dir))
    return spool_dir.rstrip("/")


def _hadoop_fs(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "the SparkSession has no JVM gateway"
    path = jvm.org.apache.hadoop.fs.Path(uri)
    filesystem = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())  # type: ignore[union-attr]
    return jvm, filesystem


def list_spool_files(spark: SparkSession, spool_dir: str, scan_from: str | None = None) -> list[str]:
    """Complete transaction files under spool_dir (spool-relative paths, sorted), skipping dt=
    directories older than scan_from. Names starting with '.' or '_' are not complete files."""
    jvm, filesystem = _hadoop_fs(spark, spool_uri(spool_dir))
    base = filesystem.makeQualified(jvm.org.apache.hadoop.fs.Path(spool_uri(spool_dir))).toString().rstrip("/")
    root = jvm.org.apache.hadoop.fs.Path(f"{base}/{spool.TRANSACTIONS}")
    if not filesystem.exists(root):
        return []
    found: list[str] = []
    for status in filesystem.listStatus(root):
        path = status.getPath()
        if status.isDirectory():
            name = path.getName()
            if name.startswith((".", "_")) or not state.dir_in_window(name, scan_from):
                continue
            files = filesystem.listFiles(path, True)
            while files.hasNext():
                found.append(files.next().getPath().toString())
        else:
            found.append(path.toString())
    relative = (p[len(base) + 1 :] for p in found if p.startswith(base + "/"))
    return sorted(p for p in relative if state.is_complete_file(p))


def check_schema(df: DataFrame) -> DataFrame:
    """Return the spool columns of df in spool order; raise SpoolSchemaError naming the first column
    that is missing or of the wrong type. Extra columns are ignored."""
    actual = {f.name: f.dataType for f in df.schema.fields}
    for name, expected in EXPECTED_TYPES.items():
        if name not in actual:
            raise SpoolSchemaError(f"spool column '{name}' is missing (expected {expected.simpleString()})")
        if actual[name] != expected:
            raise SpoolSchemaError(
                f"spool column '{name}' must be {expected.simpleString()}, got {actual[name].simpleString()}"
            )
    return df.select(*EXPECTED_TYPES)


def read_spool(spark: SparkSession, spool_dir: str, files: list[str]) -> DataFrame:
    """Exactly the given spool files (spool-relative paths) as one DataFrame, schema checked.

    Every file's footer is merged, so one odd file is caught, not only the first one read."""
    base = spool_uri(spool_dir)
    paths = [f"{base}/{f}" for f in files]
    try:
        df = spark.read.option("mergeSchema", "true").parquet(*paths)
    except AnalysisException as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise SpoolSchemaError(f"spool files disagree on their columns: {first_line}") from None
    return check_schema(df)
