"""`python -m webapp --check [--config PATH] [--host ADDRESS]`: validate the config the server would
use and say where it points; one line and exit code 2 on a bad config, or when ADDRESS (the address
to listen on) is not a loopback address and the config lacks a token or an allowed origin. Serving
is ./run_server.sh's job."""

from __future__ import annotations

import argparse
import os
import sys

from common import clients
from common.config import ConfigError, load_config
from webapp.security import check_bind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webapp", description=__doc__)
    parser.add_argument("--config", default=os.environ.get("CONFIG") or None, help="config file (default: CONFIG)")
    parser.add_argument("--check", action="store_true", help="validate the config and print the targets")
    parser.add_argument(
        "--host", default="127.0.0.1", help="the address the server will listen on (default: 127.0.0.1)"
    )
    args = parser.parse_args(argv)
    if not args.check:
        parser.error("nothing to do; serve with ./run_server.sh, or pass --check")
    try:
        cfg = load_config(args.config)
        check_bind(cfg, args.host)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    guarded = "read token required" if cfg.read_token else "no read token (loopback only)"
    print(f"config ok: table '{cfg.table_id}', topic '{cfg.topic_id}'; {clients.describe_target(cfg)}; {guarded}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
