"""`txn-spool` and `python -m jobs.spooler`: see jobs/spooler/cli.py."""

from typing import NoReturn

from common.cli import run
from jobs.spooler.cli import main


def console() -> NoReturn:
    """The `txn-spool` command: the same as `python -m jobs.spooler`."""
    run(main)


if __name__ == "__main__":
    console()
