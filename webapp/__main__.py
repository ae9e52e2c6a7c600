"""`python -m webapp --check [--config PATH]`: validate the config the server would use and say
where it points; one line and exit code 2 on a bad config. Serving is ./run_server.sh's job."""

from __future__ import annotations

import argparse
import os
import sys

from common import clients
from common.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webapp", description=__doc__)
    parser.add_argument("--config", default=os.environ.get("CONFIG") or None, help="config file (default: CONFIG)")
    parser.add_argument("--check", action="store_true", help="validate the config and print the targets")
    args = parser.parse_args(argv)
    if not args.check:
        parser.error("nothing to do; serve with ./run_server.sh, or pass --check")
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"config ok: table '{cfg.table_id}', topic '{cfg.topic_id}'; {clients.describe_target(cfg)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
