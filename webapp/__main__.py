"""`txn-serve` and `python -m webapp`: check the config the server will use, then serve the dashboard
and JSON API with gunicorn (./run_server.sh runs this).

    txn-serve [--config PATH] [--host ADDRESS] [--port N] [--workers N] [--threads N] [--log-format json]
    txn-serve --check [--config PATH] [--host ADDRESS]

--check only validates the config and says where it points. A bad config, an ADDRESS to listen
on that is not a loopback address while the config lacks a token or an allowed origin, or --threads
not above the config's push_max_streams (each open run stream holds a thread: the API needs some
left), is one line on stderr and exit 2, before anything listens. The config (--config, else CONFIG, else config.json,
else config.sample.json) reaches gunicorn's workers through CONFIG.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from common import clients, logs
from common.cli import ArgumentParser, add_log_format_argument, command_name, configure_logs, positive_int, run
from common.config import ConfigError, load_config
from webapp.security import check_bind

# Where the workers keep their metrics so /metrics adds them up (webapp/metrics.py); emptied by
# webapp/gunicorn_conf.py when the server starts.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=command_name("txn-serve", "webapp"), description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--config", metavar="PATH", default=os.environ.get("CONFIG") or None, help="config file")
    parser.add_argument("--check", action="store_true", help="validate the config, print the targets and exit")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=positive_int, default=5000, help="the port to listen on (default: 5000)")
    parser.add_argument("--workers", type=positive_int, default=2, help="gunicorn processes (default: 2)")
    parser.add_argument("--threads", type=positive_int, default=8, help="threads per process (default: 8)")
    add_log_format_argument(parser)
    return parser


def gunicorn_command(host: str, port: int, workers: int, threads: int) -> list[str]:
    """The gunicorn command line serving `webapp:create_app()` on host:port, with the settings of
    webapp/gunicorn_conf.py (metrics added up across workers, JSON log lines with LOG_FORMAT=json)."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # an IPv6 address is bracketed
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:webapp.gunicorn_conf",
        "--bind",
        bind,
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--timeout",
        "30",
        "--graceful-timeout",
        "10",
        "--no-control-socket",
        "--access-logfile",
        "-",
        "--access-logformat",
        '%(h)s "%(r)s" %(s)s %(b)s %(M)sms',
        "webapp:create_app()",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logs(args, "webapp")
    cfg = load_config(args.config)
    check_bind(cfg, args.host)
    if args.threads <= cfg.push_max_streams:
        raise ConfigError(
            f"config key 'push_max_streams' must be below --threads ({args.threads}), got "
            f"{cfg.push_max_streams}: each open run stream holds a thread and the API needs some left"
        )
    guarded = "read token required" if cfg.read_token else "no read token (loopback only)"
    line = f"config ok: table '{cfg.table_id}', topic '{cfg.topic_id}'; {clients.describe_target(cfg)}; {guarded}"
    if logs.is_json():
        logs.write(line)  # a log line like the server's that follow
    else:
        print(line)
    if args.check:
        return 0
    if args.config:
        os.environ["CONFIG"] = str(Path(args.config).resolve())
    # Read by webapp/gunicorn_conf.py in gunicorn's master, and by prometheus_client in the workers.
    os.environ["LOG_FORMAT"] = args.log_format
    os.environ.setdefault(MULTIPROC_ENV, str(Path(tempfile.gettempdir()) / f"txn-metrics-{os.getuid()}-{args.port}"))
    command = gunicorn_command(args.host, args.port, args.workers, args.threads)
    sys.stdout.flush()  # exec drops what is still buffered
    # Exec, not a child: signals sent to this process (Ctrl-C, a supervisor's SIGTERM) reach gunicorn's master.
    os.execv(command[0], command)


def console() -> NoReturn:
    """The `txn-serve` command: the same as `python -m webapp`."""
    run(main)


if __name__ == "__main__":
    console()
