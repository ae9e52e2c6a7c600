"""Test support shared by the test suite:

  ledger.py    ledgers, spool files written from them, and the table contents they imply (DuckDB)
  seed.py      fill a table by running the real aggregation job over a ledger written as spool files
  memtable.py  an in-memory table with the Bigtable Table reads and writes common/store.py uses
  scale.py     the reliability suite's sizes; tally.py its fault and check counts

The outage proxy the tests and the soak benchmark both use is bench/proxy.py: the benchmark ships
in the installed project, tests/ does not.
"""
