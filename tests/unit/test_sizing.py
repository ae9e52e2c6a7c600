"""The pure parts of the cluster and costs stages and of the sizing script: the job's phase lines,
the fixed + per-event fit, a message's Pub/Sub size, and the sizing formulas on hand-computed numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cluster import phase_seconds, serial_phases
from bench.costs import fit_line, message_bytes
from bench.sizing import FIGURES, Assumptions, Measured, load_measured, resources

JOB_OUTPUT = """\
run 1: listing
extract: 20 files, 1,000,000 rows (12.5 s)
transform: 999,000 distinct transactions, 1,000 duplicates dropped, 0 late rows (kept in the spool) (20.0 s)
lookup: 0 ids looked up, 0 already counted, 0 conflicting copies set aside (0.0 s)
load: 999,000 dcflist rows in 80.2 s (12,456 rows/s)
load: 48,000 dcfbhour, 2,880 dcfbmin, 48 dcftop, 48,048 dcfcat, 1,000 dcfuser rows in 9.8 s
run 1: 20 files, 1,000,000 rows, 1,000 duplicates dropped, 123.0 s
"""


def test_phase_seconds_reads_every_phase_line_of_the_job() -> None:
    assert phase_seconds(JOB_OUTPUT) == {
        "extract": 12.5,
        "transform": 20.0,
        "lookup": 0.0,
        "load rows": 80.2,
        "load counters": 9.8,
    }


def test_serial_phases_are_those_that_did_not_speed_up_slowest_first() -> None:
    one = {"extract": 10.0, "transform": 20.0, "load rows": 80.0, "lookup": 0.2}
    two = {"extract": 5.0, "transform": 15.0, "load rows": 78.0, "lookup": 0.2}
    # extract halves (0.5 <= 0.7); transform 0.75 and load 0.975 do not; lookup is under 0.5 s.
    assert serial_phases(one, two) == ["load rows", "transform"]


def test_fit_line_separates_the_fixed_and_per_event_costs() -> None:
    # 20 CPU-s to start, 0.5 CPU-s per 1,000 events: 25 at 10,000 and 40 at 40,000.
    fixed, per_event = fit_line([(40_000, 40.0), (10_000, 25.0)])
    assert fixed == pytest.approx(20.0)
    assert per_event * 1000 == pytest.approx(0.5)


def test_fit_line_without_a_fixed_part_charges_everything_to_the_events() -> None:
    # Noise made the small run cost more per event than the line allows: no negative start-up.
    assert fit_line([(10_000, 30.0), (40_000, 20.0)]) == (0.0, 20.0 / 40_000)
    with pytest.raises(ValueError, match="two different sizes"):
        fit_line([(10, 1.0), (10, 2.0)])


def test_message_bytes_counts_data_and_attributes() -> None:
    message = (b"0123456789", {"ab": "cde", "é": "x"}, 0, None)
    assert message_bytes(message) == 10 + (2 + 3) + (2 + 1)  # type: ignore[arg-type]


MEASURED = Measured(
    spooler_cpu_per_1000=0.2,
    job_cpu_per_1000=2.0,
    job_cpu_fixed=30.0,
    pubsub_bytes=250.0,
    spool_bytes=60.0,
    bigtable_bytes=500.0,
    bigtable_rows=4.0,
    two_worker_speedup=1.6,
    quick=True,
)


def test_resources_for_a_hundred_million_events_a_day_by_hand() -> None:
    a = Assumptions(
        peak_to_mean=3.0,
        cadence_seconds=300.0,
        run_share=0.5,
        spooler_core_utilisation=0.7,
        bigtable_utilisation=0.7,
        api_requests_per_s=200.0,
        api_rows_per_request=30.0,
    )
    found = resources(100_000_000, MEASURED, a)
    mean = 100_000_000 / 86_400  # 1,157.4 events/s
    peak = 3 * mean  # 3,472.2
    assert found["peak_events_per_s"] == pytest.approx(peak)
    assert found["pubsub_peak_mb_per_s"] == pytest.approx(peak * 250 / 1e6)
    # spooler: 3,472 events/s x 0.0002 CPU-s = 0.69 cores, at 0.7 a core: 1 instance
    assert found["spooler_instances"] == 1
    assert found["spool_gb_per_day"] == pytest.approx(6.0)
    # a run: 3,472.2 x 300 = 1,041,667 events, 30 + 2,083.3 CPU-s; 150 s at 0.8 efficiency: 17.6 -> 18
    assert found["run_cpu_seconds"] == pytest.approx(30 + 2 * peak * 300 / 1000)
    assert found["spark_cores"] == 18
    # Bigtable: 13,889 writes/s + 6,000 reads/s over 7,000 per node: 2.84 -> 3 nodes
    assert found["bigtable_nodes"] == 3
    assert found["bigtable_gb_per_day"] == pytest.approx(50.0)


def test_load_measured_names_a_missing_figure(tmp_path: Path) -> None:
    rows = [{"name": name, "value": 1.0} for name in list(FIGURES.values())[1:]]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(KeyError, match="spooler CPU per 1,000 events"):
        load_measured(path)
    path.write_text(json.dumps([*rows, {"name": FIGURES["spooler_cpu_per_1000"], "value": 0.5}]))
    measured = load_measured(path)
    assert measured.spooler_cpu_per_1000 == 0.5 and measured.two_worker_speedup == 2.0 and measured.quick
