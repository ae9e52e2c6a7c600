"""`python -m bench`: every stage of the pipeline beside the best the same machine does for it.

    python -m bench                        the full sizes; writes bench/results.json, RESULTS.md, ratios.png
    python -m bench --quick                small sizes (a couple of minutes); writes bench/out/
    python -m bench --stages api,job       only those stages (writes bench/out/ unless --out is given)
    python -m bench --stages soak [--soak-minutes 30] [--soak-outage-minutes 10]
    python -m bench --stages freshness [--freshness-minutes 3]
    python -m bench --stages costs,cluster  the figures docs/sizing.md scales (python -m bench.sizing)

Stages, in order: publish, spool, hostile, aggregate, job, writer, incremental, e2e, drain, api,
holders (1,000,000 card holders), cluster (the job on 1 and 2 standalone Spark workers), costs (CPU,
bytes and rows per event); and soak
(the live pipeline through long outages, 30 minutes) and freshness (seconds from publish to /sum,
four settings of a few minutes), which run only when named in --stages. Each runs on the
local emulators with its own uuid-named topic, subscription, table and spool, removed afterwards.
Exit codes: 0 every stage ran (whether or not it met its target), 1 a stage failed to run,
2 a bad flag or config value, 3 an emulator cannot be reached.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from bench import cluster, costs, freshness, hostile, pipeline, soak, stages
from bench.results import Result, compare, write_all
from common import clients
from common.cli import (
    ArgumentParser,
    UsageError,
    add_config_argument,
    add_log_format_argument,
    command_name,
    configure_logs,
    log,
    run,
)
from common.config import load_config

BENCH_DIR = Path(__file__).resolve().parent
STAGES: dict[str, Callable[[stages.Bench], list[Result]]] = {
    "publish": stages.publish,
    "spool": stages.spool_stage,
    "hostile": hostile.stage,
    "aggregate": stages.aggregate,
    "job": stages.job,
    "writer": stages.writer_choice,
    "incremental": stages.incremental,
    "e2e": pipeline.end_to_end,
    "drain": pipeline.drain,
    "api": stages.api,
    "holders": stages.holders,
    "cluster": cluster.stage,
    "costs": costs.stage,
    "soak": soak.soak,
    "freshness": freshness.freshness,
}
ON_REQUEST = {"soak", "freshness"}  # too long for every run: only when named in --stages


def parse_stages(text: str | None) -> list[str]:
    """--stages a,b -> the names in run order; raises UsageError naming an unknown one."""
    if not text:
        return [name for name in STAGES if name not in ON_REQUEST]
    wanted = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in STAGES]
    if unknown or not wanted:
        raise UsageError(f"--stages must be a comma-separated list of {', '.join(STAGES)}, got {text!r}")
    return [name for name in STAGES if name in wanted]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=command_name("txn-bench", "bench"), description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    add_config_argument(parser)
    add_log_format_argument(parser)
    parser.add_argument("--quick", action="store_true", help="small sizes: a run of a couple of minutes")
    parser.add_argument("--stages", metavar="A,B", help=f"only these stages ({', '.join(STAGES)})")
    parser.add_argument("--soak-minutes", type=float, default=30.0, metavar="M", help="the soak stage's length")
    parser.add_argument(
        "--soak-outage-minutes", type=float, default=10.0, metavar="M", help="each soak outage's length"
    )
    parser.add_argument(
        "--freshness-minutes", type=float, default=3.0, metavar="M", help="the freshness stage's window per setting"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="where results go (default: bench/ for a full run of every stage, else bench/out/)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logs(args, "bench")
    warnings.filterwarnings("ignore", message="Connecting to Bigtable emulator")
    names = parse_stages(args.stages)
    base = load_config(args.config)
    sizes = stages.QUICK if args.quick else stages.FULL
    full = not args.quick and not args.stages
    out = Path(args.out) if args.out else (BENCH_DIR if full else BENCH_DIR / "out")
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    bench = stages.Bench(
        base,
        sizes,
        work,
        log,
        soak_minutes=args.soak_minutes,
        soak_outage_minutes=args.soak_outage_minutes,
        freshness_minutes=args.freshness_minutes,
    )
    results: list[Result] = []
    failed: list[str] = []
    started = time.perf_counter()
    log(f"bench: {'quick' if args.quick else 'full'} run of {', '.join(names)}; {clients.describe_target(base)}")
    try:
        # Both emulators answer (else one line and exit 3) before any stage starts.
        with stages.scratch(bench, "probe") as probe:
            clients.ensure_subscription(probe, timeout=5.0)
            clients.ensure_table(probe, timeout=5.0)
        for number, name in enumerate(names, 1):
            log(f"==> [{number}/{len(names)}] {name}: {(STAGES[name].__doc__ or '').split(chr(10))[0]}")
            stage_started = time.perf_counter()
            try:
                found = STAGES[name](bench)
            except Exception as exc:
                log(traceback.format_exc(limit=3).rstrip())
                found = [compare(name, 0.0, "-", None, "runs", False, f"failed: {exc.__class__.__name__}: {exc}")]
                failed.append(name)
            results += found
            for result in found:
                shown = f"{result.value:,.3f} {result.unit}"
                ratio = f", {result.ratio:.2f} x ceiling" if result.ratio is not None else ""
                verdict = {True: f"meets {result.target}", False: f"MISSES {result.target}", None: ""}[result.meets]
                log(f"    -> {result.name}: {shown}{ratio} {verdict}")
            log(f"    ({time.perf_counter() - stage_started:.0f} s)")
            write_all(results, out, args.quick, time.perf_counter() - started)
    finally:
        for cleanup in bench.cleanups:
            cleanup()
        shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - started
    write_all(results, out, args.quick, wall)
    met = sum(1 for r in results if r.meets)
    targets = sum(1 for r in results if r.meets is not None)
    print((out / "RESULTS.md").read_text())
    log(f"bench: {len(names)} stages in {wall / 60:.1f} min; {met} of {targets} targets met; results in {out}")
    if failed:
        log(f"bench: stages that failed to run: {', '.join(failed)}")
    return 1 if failed else 0


def console() -> NoReturn:
    """The `txn-bench` command: the same as `python -m bench`."""
    run(main)


if __name__ == "__main__":
    console()
