"""Extract: find the spool files a run has not processed and read exactly those, schema checked.

Listing goes through the Hadoop FileSystem API of the session's JVM, so the spool may be any
Hadoop-compatible URI (gs://bucket/spool on Dataproc, hdfs://...) as well as a local path. A gs://
spool needs Hadoop's Cloud Storage connector on Spark's classpath (Dataproc images carry it; a
plain Spark does not): without it the run is refused in one line before anything is read.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common import gcs, spool
from common.config import ConfigError
from common.spool import SpoolSchemaError

_ARROW_TO_SPARK = {
    pa.string(): T.StringType(),
    pa.int64(): T.LongType(),
    pa.timestamp("us", tz="UTC"): T.TimestampType(),
}
EXPECTED_TYPES: dict[str, T.DataType] = {f.name: _ARROW_TO_SPARK[f.type] for f in spool.TRANSACTION_SCHEMA}
# The column older spool files hold in place of amount_minor (see spool.LEGACY_AMOUNT_COLUMN).
LEGACY_AMOUNTS = {"amount_minor": spool.LEGACY_AMOUNT_COLUMN}


def spool_uri(spool_dir: str) -> str:
    """The spool location as a URI Hadoop understands (local paths become file:// URIs)."""
    if spool.is_local(spool_dir):
        return "file://" + os.path.abspath(spool.local_path(spool_dir))
    return spool_dir.rstrip("/")


def _hadoop_fs(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    """The JVM and the Hadoop FileSystem for `uri`; ConfigError when it is gs:// and this Spark has
    no Cloud Storage connector."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "the SparkSession has no JVM gateway"
    path = jvm.org.apache.hadoop.fs.Path(uri)
    try:
        filesystem = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    except Py4JJavaError as exc:
        # No class for the scheme: Hadoop names the one it looked for (its own gs:// mapping or
        # fs.gs.impl) in a ClassNotFoundException, or says the scheme is unsupported.
        missing = exc.java_exception.getClass().getName().endswith("UnsupportedFileSystemException") or (
            "ClassNotFoundException" in str(exc.java_exception.toString()) + str(exc)
        )
        if gcs.is_gcs(uri) and missing:
            raise ConfigError(
                f"config key 'spool_dir' is {uri}, but this Spark has no Cloud Storage connector for Hadoop "
                "on its classpath: run the job where it is (Dataproc has it), or add the gcs-connector jar with "
                "--conf spark.jars=..."
            ) from None
        raise
    return jvm, filesystem


def _hadoop_lister(jvm: Any, filesystem: Any) -> spool.Lister:
    """spool.Lister over a Hadoop FileSystem, by listStatus. Not listFiles: on a local spool it reads
    each file's permissions (one `ls` process per file) and fails when the spooler renames a temp
    file away meanwhile; listStatus reads names and sizes only and skips entries that vanished."""

    def list_dir(directory: str) -> list[spool.Entry]:
        try:
            statuses = filesystem.listStatus(jvm.org.apache.hadoop.fs.Path(directory))
        except Py4JJavaError as exc:
            if exc.java_exception.getClass().getName() == "java.io.FileNotFoundException":
                return []
            raise
        return [
            spool.Entry(s.getPath().toString(), bool(s.isDirectory()), int(s.getModificationTime())) for s in statuses
        ]

    return list_dir


def list_spool_files(
    spark: SparkSession, spool_dir: str, closed: dict[str, int] | None = None
) -> tuple[list[str], dict[str, int]]:
    """Complete transaction files under spool_dir (spool-relative paths, sorted) by the spool's
    listing rule (spool.list_complete) through the session's Hadoop FileSystem, and every folder's
    modification time (epoch ms)."""
    jvm, filesystem = _hadoop_fs(spark, spool_uri(spool_dir))
    base = filesystem.makeQualified(jvm.org.apache.hadoop.fs.Path(spool_uri(spool_dir))).toString()
    return spool.list_complete(_hadoop_lister(jvm, filesystem), base, spool.TRANSACTIONS, closed)


def check_schema(df: DataFrame) -> DataFrame:
    """Return the spool columns of df in spool order (plus the legacy amount column when some file
    has it; a column only older files have is null in newer ones and the other way round); raise
    SpoolSchemaError naming the first column that is missing or of the wrong type. Extra columns
    are ignored."""
    actual = {f.name: f.dataType for f in df.schema.fields}
    columns = []
    for name, expected in EXPECTED_TYPES.items():
        legacy = LEGACY_AMOUNTS.get(name)
        for column in (name, legacy):
            if column in actual and actual[column] != expected:
                raise SpoolSchemaError(
                    f"spool column '{column}' must be {expected.simpleString()}, got {actual[column].simpleString()}"
                )
        if name not in actual and (legacy is None or legacy not in actual):
            raise SpoolSchemaError(f"spool column '{name}' is missing (expected {expected.simpleString()})")
        columns.append(F.col(name) if name in actual else F.lit(None).cast(expected).alias(name))
    extra = [F.col(legacy) for legacy in LEGACY_AMOUNTS.values() if legacy in actual]
    return df.select(*columns, *extra)


def _present(df: DataFrame, column: str) -> Column:
    """A column counts as present when it, or the legacy column standing for it, is not null."""
    legacy = LEGACY_AMOUNTS.get(column)
    if legacy is not None and legacy in df.columns:
        return F.coalesce(F.col(column), F.col(legacy)).isNotNull()
    return F.col(column).isNotNull()


def find_nulls(df: DataFrame) -> DataFrame:
    """One row: `rows`, and per spool column the count of rows where it is null (a file that lacks
    the column reads as nulls once merged with files that have it)."""
    nulls = [F.sum((~_present(df, c)).cast("long")).alias(c) for c in EXPECTED_TYPES]
    return df.agg(F.count(F.lit(1)).alias("rows"), *nulls)


def null_error(df: DataFrame, counts: dict[str, int], spool_dir: str) -> SpoolSchemaError | None:
    """A SpoolSchemaError naming the first column with nulls and a file holding one, else None."""
    for column in EXPECTED_TYPES:
        if counts.get(column):
            found = df.where(~_present(df, column)).select(F.input_file_name().alias("file")).first()
            where = str(found["file"]).replace(spool_uri(spool_dir) + "/", "") if found else "an unknown file"
            return SpoolSchemaError(
                f"spool column '{column}' is missing or null in {counts[column]:,} rows, e.g. in {where}"
            )
    return None


def _diagnose(spark: SparkSession, base: str, files: list[str]) -> SpoolSchemaError | None:
    """The schema error of the first file that does not match on its own (slow: one file at a time,
    only used once merging the files has failed)."""
    for name in files:
        try:
            check_schema(spark.read.parquet(f"{base}/{name}"))
        except SpoolSchemaError as exc:
            return SpoolSchemaError(f"{exc} in {name}")
    return None


def read_spool(spark: SparkSession, spool_dir: str, files: list[str]) -> DataFrame:
    """Exactly the given spool files (spool-relative paths) as one DataFrame, schema checked.

    Every file's footer is merged, so one odd file is caught, not only the first one read; a file
    lacking a column shows up as nulls in it (see find_nulls)."""
    base = spool_uri(spool_dir)
    _hadoop_fs(spark, base)  # a gs:// spool without the connector: the one-line refusal
    try:
        df = spark.read.option("mergeSchema", "true").parquet(*[f"{base}/{f}" for f in files])
    except (PySparkException, Py4JJavaError) as exc:
        error = _diagnose(spark, base, files)
        if error is None:
            raise
        raise error from exc
    return check_schema(df)
