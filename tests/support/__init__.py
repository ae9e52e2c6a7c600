"""Test support shared by the test suite: the reliability suite's scale (scale.py) and its tally
(tally.py). The outage proxy the tests and the soak benchmark both use is bench/proxy.py: the
benchmark ships in the installed project, tests/ does not."""
