"""The benchmark harness: every stage beside its ceiling, in one run."""
