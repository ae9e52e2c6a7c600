"""Benchmark results: one record per measured stage, written as JSON, a Markdown table and a chart."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass
class Result:
    """One measured figure beside its ceiling. `ratio` is value / ceiling; `target` applies to `ratio`
    unless `target_on_value` is set (absolute targets such as events/s or a latency)."""

    name: str
    value: float
    unit: str
    ceiling: float | None
    ratio: float | None
    target: str
    meets: bool | None
    note: str = ""


def compare(
    name: str, value: float, unit: str, ceiling: float | None, target: str, check: bool | None, note: str = ""
) -> Result:
    ratio = round(value / ceiling, 3) if ceiling else None
    return Result(
        name, round(value, 3), unit, None if ceiling is None else round(ceiling, 3), ratio, target, check, note
    )


def machine() -> dict[str, str | int]:
    return {
        "cores": os.cpu_count() or 0,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def write_all(results: list[Result], out_dir: Path, quick: bool, wall_seconds: float | None = None) -> None:
    """results.json, RESULTS.md and ratios.png in out_dir (bench/ for a full run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    info = machine()
    (out_dir / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    lines = [
        "# Benchmark results",
        "",
        f"{info['date']} on {info['cores']} cores, Python {info['python']}"
        + (" (quick run: small sizes)" if quick else "")
        + (f"; the run took {wall_seconds / 60:.1f} min" if wall_seconds else ""),
        "",
        "Each ratio is value / ceiling, both measured in this run. For seconds (aggregation, incremental)"
        " lower is better; for rates higher is better. What each tuning step bought: [TUNING.md](TUNING.md).",
        "",
        "| stage | value | unit | ceiling | ratio | target | meets |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    for r in results:
        meets = {True: "yes", False: "**no**", None: "-"}[r.meets]
        ceiling = "-" if r.ceiling is None else f"{r.ceiling:,.3f}".rstrip("0").rstrip(".")
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        value = f"{r.value:,.3f}".rstrip("0").rstrip(".")
        lines.append(f"| {r.name} | {value} | {r.unit} | {ceiling} | {ratio} | {r.target} | {meets} |")
    notes = [f"- {r.name}: {r.note}" for r in results if r.note]
    if notes:
        lines += ["", "Notes:", *notes]
    lines += ["", "![stage ratios](ratios.png)", ""]
    (out_dir / "RESULTS.md").write_text("\n".join(lines))
    chart(results, out_dir / "ratios.png")


def chart(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results if r.ratio is not None]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    colors = ["#2e7d32" if r.meets else "#c62828" if r.meets is False else "#607d8b" for r in rows]
    ax.barh([r.name for r in rows], [r.ratio or 0.0 for r in rows], color=colors)
    ax.axvline(1.0, color="#333", lw=0.8, ls="--")
    ax.set_xlim(0, max(1.0, *(r.ratio or 0.0 for r in rows)) * 1.6)  # room for the labels
    ax.invert_yaxis()
    ax.set_xlabel("ratio to the ceiling measured in the same run (green: meets target)")
    for i, r in enumerate(rows):
        ax.text(r.ratio or 0, i, f" {r.ratio:.2f} ({r.target})", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
