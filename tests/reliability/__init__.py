"""The reliability and security suite: faults, redeliveries, outages, concurrency and hostile input
thrown at the whole pipeline, with the numbers checked against an independent ledger."""
