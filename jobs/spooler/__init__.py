"""The spooler: Pub/Sub -> validated transactions in durable Parquet files; bad messages set aside."""
