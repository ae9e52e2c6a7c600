"""`txn-emit` and `python -m emitter`: see emitter/cli.py."""

from typing import NoReturn

from common.cli import run
from emitter.cli import main


def console() -> NoReturn:
    """The `txn-emit` command: the same as `python -m emitter`."""
    run(main)


if __name__ == "__main__":
    console()
