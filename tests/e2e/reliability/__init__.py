"""The reliability and security suite: faults, redeliveries, outages, concurrency and hostile input
thrown at the whole pipeline, with every number checked against an independent ledger.

    .venv/bin/python -m pytest tests/e2e/reliability            # default setting, part of `make test`
    .venv/bin/python -m pytest tests/e2e/reliability --heavy    # more seeds, data, faults and fuzz cases
    scripts/test.sh --heavy                                 # lint, types and the whole suite, heavy

test_reconciliation  seeds through emitter -> spooler -> job; Bigtable and random /sum vs the ledger
test_crashes         SIGKILL of the spooler and of the job at random points; two restarts at once
test_redelivery      nacks, expired leases, a frozen spooler, republished transactions
test_outages         Pub/Sub and Bigtable unreachable mid-run; Bigtable emulator restarted empty
test_long_outages    Pub/Sub and Bigtable outages past every retry budget during a live emitter,
                     spooler and --every job; a simulation stopped mid-outage and rerun as it says
test_disk_faults     the spool's file system full, then read-only, under a running spooler (root)
test_concurrency     listing while files are renamed into place; job runs while the spooler writes
test_hostile_spooler malformed messages through Pub/Sub, each dead-lettered with its reason
test_properties      hypothesis: message, time and row-key parsing
test_api_hostile     hostile user ids and queries, tokens, generated bodies, schemathesis
test_secrets         no committed secret; credential files ignored by git; README on credentials

The counts (faults injected, malformed inputs tried, fuzz cases run, values compared and
discrepancies found) are printed at the end of the run and written to
tests/artifacts/reliability-counts.json.
"""
