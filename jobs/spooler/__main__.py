"""`python -m jobs.spooler`: see jobs/spooler/cli.py."""

from common.cli import run
from jobs.spooler.cli import main

if __name__ == "__main__":
    run(main)
