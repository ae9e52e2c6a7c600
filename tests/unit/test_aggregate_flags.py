"""The aggregation job's command line: the crash tests' kill point and the benchmark's run without
categories and sketches are flags of the job, kept out of --help and refused by name when misused."""

from __future__ import annotations

import pytest

from common.cli import UsageError
from jobs.aggregate.__main__ import build_parser, main


def test_the_pause_after_each_batch_is_zero_unless_asked_for() -> None:
    parser = build_parser()
    assert parser.parse_args([]).pause_after_batch == 0.0
    assert parser.parse_args(["--pause-after-batch", "0.25"]).pause_after_batch == 0.25


def test_the_pause_flag_is_not_in_the_help() -> None:
    assert "pause" not in build_parser().format_help()


@pytest.mark.parametrize("value", ["-1", "soon", "inf", "nan"])
def test_a_pause_that_is_not_a_number_of_seconds_is_refused_by_name(value: str) -> None:
    with pytest.raises(UsageError, match="--pause-after-batch"):
        build_parser().parse_args(["--pause-after-batch", value])


def test_analytics_are_on_unless_the_benchmark_turns_them_off_and_the_flag_is_not_in_the_help() -> None:
    parser = build_parser()
    assert parser.parse_args([]).analytics is True
    assert parser.parse_args(["--no-analytics"]).analytics is False
    assert "analytics" not in parser.format_help()


@pytest.mark.parametrize("flags", [["--every", "5m"], ["--stream"]])
def test_a_run_without_analytics_is_refused_by_name_in_a_repeating_mode(flags: list[str]) -> None:
    with pytest.raises(UsageError, match=r"^--no-analytics is for the benchmark's one-off runs"):
        main(["--no-analytics", *flags])
