"""The aggregation job's command line: the crash tests' kill point is a flag of the job, kept out of
--help and refused by name when it is not a number of seconds."""

from __future__ import annotations

import pytest

from common.cli import UsageError
from jobs.aggregate.__main__ import build_parser


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
