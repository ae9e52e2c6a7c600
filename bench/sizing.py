"""From the costs stage's per-event figures to the resources a day's volume needs (docs/sizing.md).

    python -m bench --quick --stages costs,cluster --out /tmp/sizing-out
    python -m bench.sizing --results /tmp/sizing-out/results.json --out docs

reads the measured figures from the benchmark's results.json, writes `sizing.json` (the inputs, the
assumptions and the resources for each volume) and `sizing.png` (cores and nodes against events a
day) into --out, and prints the Markdown table docs/sizing.md shows. Every formula is in
`resources`, with the same names as in docs/sizing.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SECONDS_PER_DAY = 86_400
VOLUMES = (1_000_000, 100_000_000, 1_000_000_000)

# Google's published per-node figure (cloud.google.com/bigtable/docs/performance): an SSD node
# serves about 10,000 rows/s of reads or of writes for 1 KB rows (the page's current table says up
# to 17,000 reads or 14,000 writes; 10,000 is the long-standing, conservative planning figure).
BIGTABLE_ROWS_PER_NODE = 10_000

# The results.json names of the costs and cluster stages' figures.
FIGURES = {
    "spooler_cpu_per_1000": "cost: spooler CPU per 1,000 events",
    "job_cpu_per_1000": "cost: job CPU per 1,000 events",
    "job_cpu_fixed": "cost: job CPU fixed per run",
    "pubsub_bytes": "cost: Pub/Sub bytes per event",
    "spool_bytes": "cost: spool bytes per event",
    "bigtable_bytes": "cost: Bigtable bytes per event",
    "bigtable_rows": "cost: Bigtable rows written per event",
}
CLUSTER_ONE, CLUSTER_TWO = "cluster: 1 worker (ceiling)", "cluster: 2 workers"


@dataclass(frozen=True)
class Measured:
    """Per-event costs measured by `python -m bench --stages costs,cluster`."""

    spooler_cpu_per_1000: float  # CPU-s per 1,000 events
    job_cpu_per_1000: float
    job_cpu_fixed: float  # CPU-s per job run
    pubsub_bytes: float  # per event
    spool_bytes: float
    bigtable_bytes: float
    bigtable_rows: float  # rows written per event
    two_worker_speedup: float  # 1-worker time / 2-worker time (2.0, linear, when not measured)
    quick: bool


@dataclass(frozen=True)
class Assumptions:
    """Planning choices, not measurements: change them and run the script again."""

    peak_to_mean: float = 3.0  # the busiest minute's rate over the day's mean rate
    cadence_seconds: float = 300.0  # a job run every 5 minutes
    run_share: float = 0.5  # a run takes at most this share of the cadence (the rest: catching up)
    spooler_core_utilisation: float = 0.7  # a spooler instance (1 core) is sized to this at peak
    bigtable_utilisation: float = 0.7  # Bigtable nodes sized to this share of their rows/s at peak
    api_requests_per_s: float = 200.0  # the stated API load
    api_rows_per_request: float = 30.0  # e.g. /sum over a day: 24 hour buckets, plus a few


def load_measured(results_path: Path, *more: Path) -> Measured:
    """The figures from benchmark results.json files (a later file's figure wins); KeyError naming
    a figure that is missing."""
    rows = {row["name"]: row for path in (results_path, *more) for row in json.loads(path.read_text())}
    values: dict[str, float] = {}
    for field, name in FIGURES.items():
        if name not in rows:
            raise KeyError(f"{results_path} has no {name!r}: run the bench's costs stage")
        values[field] = float(rows[name]["value"])
    speedup = 2.0  # not measured: assume a second worker doubles the speed
    if CLUSTER_ONE in rows and CLUSTER_TWO in rows and rows[CLUSTER_TWO]["value"]:
        speedup = float(rows[CLUSTER_ONE]["value"]) / float(rows[CLUSTER_TWO]["value"])
    quick = any(from_quick_run(path) for path in (results_path, *more))
    return Measured(**values, two_worker_speedup=speedup, quick=quick)


def from_quick_run(results_path: Path) -> bool:
    """Whether the results came from a --quick run (its RESULTS.md says so; unknown counts as quick)."""
    report = results_path.parent / "RESULTS.md"
    return not report.exists() or "(quick run" in report.read_text()


def resources(events_per_day: float, m: Measured, a: Assumptions) -> dict[str, float]:
    """What `events_per_day` needs, by the formulas docs/sizing.md states."""
    mean_rate = events_per_day / SECONDS_PER_DAY  # events/s
    peak_rate = mean_rate * a.peak_to_mean
    # Spark: a run counts a cadence's events (at peak); it must finish in run_share of the cadence.
    # Extra cores buy speed at the efficiency measured from 1 to 2 workers (capped at 1).
    events_per_run = peak_rate * a.cadence_seconds
    run_cpu = m.job_cpu_fixed + m.job_cpu_per_1000 / 1000 * events_per_run
    efficiency = min(1.0, m.two_worker_speedup / 2)
    spark_cores = max(1, math.ceil(run_cpu / (a.cadence_seconds * a.run_share * efficiency)))
    spooler_cores = peak_rate * m.spooler_cpu_per_1000 / 1000
    write_rows = peak_rate * m.bigtable_rows
    read_rows = a.api_requests_per_s * a.api_rows_per_request
    per_node = BIGTABLE_ROWS_PER_NODE * a.bigtable_utilisation
    return {
        "events_per_day": events_per_day,
        "mean_events_per_s": mean_rate,
        "peak_events_per_s": peak_rate,
        "pubsub_mean_mb_per_s": mean_rate * m.pubsub_bytes / 1e6,
        "pubsub_peak_mb_per_s": peak_rate * m.pubsub_bytes / 1e6,
        "spooler_instances": max(1, math.ceil(spooler_cores / a.spooler_core_utilisation)),
        "spool_gb_per_day": events_per_day * m.spool_bytes / 1e9,
        "events_per_run": events_per_run,
        "run_cpu_seconds": run_cpu,
        "spark_cores": spark_cores,
        "bigtable_peak_writes_per_s": write_rows,
        "bigtable_nodes_writes": write_rows / per_node,
        "bigtable_nodes_api": read_rows / per_node,
        "bigtable_nodes": max(1, math.ceil((write_rows + read_rows) / per_node)),
        "bigtable_gb_per_day": events_per_day * m.bigtable_bytes / 1e9,
    }


def table_markdown(rows: list[dict[str, float]]) -> str:
    """The resources per volume as docs/sizing.md's table."""
    head = "| | " + " | ".join(f"{r['events_per_day']:,.0f} events/day" for r in rows) + " |"
    lines = [head, "|---|" + "---:|" * len(rows)]
    shown: list[tuple[str, Callable[[dict[str, float]], str]]] = [
        ("mean / peak events/s", lambda r: f"{r['mean_events_per_s']:,.1f} / {r['peak_events_per_s']:,.0f}"),
        (
            "Pub/Sub publish, mean / peak MB/s",
            lambda r: f"{r['pubsub_mean_mb_per_s']:.3f} / {r['pubsub_peak_mb_per_s']:.3f}",
        ),
        ("spooler instances (1 core)", lambda r: f"{r['spooler_instances']:.0f}"),
        ("spool GB/day", lambda r: f"{r['spool_gb_per_day']:,.2f}"),
        ("events per 5-minute run (peak)", lambda r: f"{r['events_per_run']:,.0f}"),
        ("job CPU-s per run", lambda r: f"{r['run_cpu_seconds']:,.0f}"),
        ("Spark cores", lambda r: f"{r['spark_cores']:.0f}"),
        ("Bigtable writes/s (peak)", lambda r: f"{r['bigtable_peak_writes_per_s']:,.0f}"),
        ("Bigtable nodes: writes + API", lambda r: f"{r['bigtable_nodes_writes']:.2f} + {r['bigtable_nodes_api']:.2f}"),
        ("Bigtable nodes (SSD)", lambda r: f"{r['bigtable_nodes']:.0f}"),
        ("Bigtable GB/day (uncompressed)", lambda r: f"{r['bigtable_gb_per_day']:,.2f}"),
    ]
    for label, cell in shown:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in rows) + " |")
    return "\n".join(lines)


def chart(m: Measured, a: Assumptions, path: Path) -> None:
    """Spooler instances, Spark cores and Bigtable nodes against events a day (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    volumes = [10 ** (6 + i / 8) for i in range(8 * 4 + 1)]  # 1e6 .. 1e10
    found = [resources(v, m, a) for v in volumes]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for key, label, color in (
        ("spark_cores", "Spark cores (5-minute cadence)", "#1565c0"),
        ("spooler_instances", "spooler instances (1 core each)", "#2e7d32"),
        ("bigtable_nodes", "Bigtable SSD nodes (writes + API load)", "#c62828"),
    ):
        ax.step(volumes, [r[key] for r in found], where="post", label=label, color=color)
        marks = [resources(v, m, a) for v in VOLUMES]
        ax.scatter(VOLUMES, [r[key] for r in marks], color=color, zorder=3, s=18)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("events per day")
    ax.set_ylabel("cores / instances / nodes")
    kind = "quick-run" if m.quick else "full-run"
    ax.set_title(f"Resources against volume ({kind} per-event costs, peak = {a.peak_to_mean:g} x mean)", fontsize=10)
    ax.grid(True, which="both", lw=0.3, alpha=0.6)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(m: Measured, a: Assumptions, out_dir: Path) -> list[dict[str, float]]:
    """sizing.json and sizing.png in out_dir; returns the rows for VOLUMES."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [resources(v, m, a) for v in VOLUMES]
    document: dict[str, Any] = {
        "measured": asdict(m),
        "assumptions": asdict(a),
        "bigtable_rows_per_node": BIGTABLE_ROWS_PER_NODE,
        "volumes": rows,
    }
    (out_dir / "sizing.json").write_text(json.dumps(document, indent=2) + "\n")
    chart(m, a, out_dir / "sizing.png")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sizing", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--results",
        type=Path,
        action="append",
        help="a bench results.json (repeatable; default bench/out/results.json)",
    )
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where sizing.json and sizing.png go")
    args = parser.parse_args(argv)
    try:
        measured = load_measured(*(args.results or [Path("bench/out/results.json")]))
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = write(measured, Assumptions(), args.out)
    print(table_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
