"""The PySpark micro-batch job: Parquet spool -> per-user buckets in Bigtable."""
