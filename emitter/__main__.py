"""`python -m emitter`: see emitter/cli.py."""

from common.cli import run
from emitter.cli import main

if __name__ == "__main__":
    run(main)
