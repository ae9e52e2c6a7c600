"""Test support shared by the test suite and the benchmark's soak stage: a TCP proxy that puts a
service out of reach on command (tests/support/proxy.py)."""
