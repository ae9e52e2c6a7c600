"""jobs/sql: analysts' SQL over the Parquet spool (txn-sql, python -m jobs.sql), with the product's
rules already applied by the views (views.py). See __main__.py for the command and the engine."""
