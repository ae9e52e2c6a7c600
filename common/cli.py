"""Command-line plumbing every command shares: the --config and --log-format flags, one-line user
errors, progress lines.

A command is `main(argv) -> int` run through `run(main)`. Errors a user can cause (a bad flag, a bad
config value, a bad time, a bad message) print one line `error: ...` on stderr and exit 2; an
unreachable Pub/Sub or Bigtable prints one line and exits 3. Anything else is a bug and keeps its
traceback (with --log-format json, inside one JSON line).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from common import logs
from common.clients import ServiceUnavailable
from common.config import ConfigError
from common.message import MessageError
from common.timeutil import TimeFormatError

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


class UsageError(ValueError):
    """A command-line flag with a wrong value."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing the usage block and exiting, and that lets
    chosen options take values starting with '-' (`--start -48h`, which argparse reads as a flag)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dash_value_options: set[str] = set()

    def allow_dash_values(self, *options: str) -> None:
        """Let `options` take a value that starts with '-', such as a relative time."""
        self._dash_value_options.update(options)

    # typeshed declares this as overloads (with and without a namespace); one signature serves both.
    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        joined: list[str] = []
        i = 0
        while i < len(argv):
            if (
                argv[i] in self._dash_value_options
                and i + 1 < len(argv)
                and argv[i + 1][:1] == "-"
                and argv[i + 1][:2] != "--"
            ):
                joined.append(f"{argv[i]}={argv[i + 1]}")
                i += 2
            else:
                joined.append(argv[i])
                i += 1
        return super().parse_known_args(joined, namespace)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def command_name(script: str, module: str) -> str:
    """How the user started this command, for usage lines: `script` when run as that console
    script (`txn-emit`), else `python -m module`."""
    return script if Path(sys.argv[0]).name == script else f"python -m {module}"


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (a seed)."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (seconds)."""
    value = float(text)
    if not 0 <= value < float("inf"):
        raise ValueError(text)
    return value


# argparse names the type in its error: "invalid integer >= 1 value: '0'".
positive_int.__name__ = "integer >= 1"
non_negative_int.__name__ = "integer >= 0"
non_negative_float.__name__ = "number >= 0"


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--config PATH` (default: config.json, else config.sample.json)."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help="config file (default: config.json, else config.sample.json)",
    )


def add_log_format_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--log-format {text,json}` (default text); apply it with `configure_logs`."""
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default="text",
        help="text lines for people (default), or one JSON object per line for log shippers",
    )


def configure_logs(args: argparse.Namespace, process: str) -> None:
    """Write this command's log lines in the format `args.log_format` names, as `process`."""
    logs.configure(args.log_format, process)


def log(*parts: object) -> None:
    """One progress or summary line on stderr, so stdout stays free for data (a JSON object with
    --log-format json)."""
    logs.write(" ".join(str(part) for part in parts))


def run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> NoReturn:
    """Run `main(argv)` and exit with its code; user errors become one line and exit 2 (3 when a
    service cannot be reached). `kill -USR1 <pid>` prints every thread's stack to stderr and the
    command goes on: what a command that seems stuck is waiting for (not when stderr is no file,
    as when a test calls it in-process)."""
    with contextlib.suppress(io.UnsupportedOperation, ValueError):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        code = main(argv)
    except (UsageError, ConfigError, TimeFormatError, MessageError) as exc:
        log(f"error: {exc}")
        code = EXIT_USAGE
    except ServiceUnavailable as exc:
        log(f"error: {exc}")
        code = EXIT_UNAVAILABLE
    except Exception:
        if not logs.is_json():
            raise
        # A bug: its traceback, in one line a log shipper can read.
        logs.write(f"error: unexpected failure\n{traceback.format_exc().rstrip()}", "error")
        code = 1
    sys.exit(code)
