"""Config loading: the sample works as-is, a wrong value gets one line naming the key, and the
commands turn flag errors into one line and exit code 2 (in-process through common.cli.run; a bad
config value through the real commands is in tests/integration/test_config_commands.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from common.cli import run
from common.config import ConfigError, load_config, resolve_path
from emitter.cli import main as emitter_main
from jobs.spooler.cli import main as spooler_main
from webapp.__main__ import main as serve_main

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: object, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_sample_config_loads_as_is_with_the_named_keys() -> None:
    cfg = load_config(ROOT / "config.sample.json")
    assert cfg.instance_id == "demo-ti"
    raw = json.loads((ROOT / "config.sample.json").read_text())
    for key in ("project_id", "instance_id", "table_id", "topic_id", "subscription_id", "spool_dir"):
        assert raw[key] == getattr(cfg, key)
    assert (cfg.amount_min, cfg.amount_max) == ("20.00", "100.00")


def test_overrides_win_and_none_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, {"users": 5, "seed": 1})
    cfg = load_config(path, {"users": 7, "seed": None})
    assert (cfg.users, cfg.seed) == (7, 1)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("users", 0, "an integer >= 1"),
        ("users", "ten", "an integer >= 1"),
        ("users", True, "an integer >= 1"),
        ("seed", -1, "an integer >= 0"),
        ("mean_spending_period_seconds", 0, "a number > 0"),
        ("min_spending_period_seconds", 4000.0, "<= mean_spending_period_seconds"),
        ("amount_min", 20.0, "decimal string"),
        ("amount_min", "20.001", "at most two places"),
        ("amount_max", "10.00", ">= amount_min"),
        ("amount_max", "lots", "decimal amount"),
        ("currency", "usd", "3-letter"),
        ("simulation_start", "last tuesday", "a time such as -48h"),
        ("instance_id", "Demo", "lowercase"),
        ("topic_id", "1-starts-with-digit", "starting with a letter"),
        ("spool_dir", "", "non-empty path"),
        ("spool_dir", "gs://ab", "gs://bucket/prefix (bucket: 3-63"),
        ("spool_dir", "gs://Spool_Bucket/x", "gs://bucket/prefix"),
        ("spool_dir", "gs:/bucket/x", "gs://bucket/prefix"),
        ("spool_dir", "gs://bucket/with space", "gs://bucket/prefix"),
        ("spool_roll_messages", 0, "an integer >= 1"),
        ("spool_roll_seconds", -5, "a number > 0"),
        ("job_lease_seconds", 0, "a number > 0"),
        ("bigtable_timeout_seconds", 0, "a number > 0"),
        ("bigtable_timeout_seconds", "60", "a number > 0"),
        ("stream_poll_seconds", 0, "a number > 0"),
        ("compact_after_seconds", -1, "a number > 0"),
        ("compact_min_files", 1, "an integer >= 2"),
        ("job_max_files_per_run", 0, "an integer >= 1"),
        ("job_max_files_per_run", 2.5, "an integer >= 1"),
        ("push_max_streams", 0, "an integer >= 1"),
        ("push_max_streams", "4", "an integer >= 1"),
        ("push_heartbeat_seconds", 0, "a number > 0"),
        ("push_poll_seconds", -1, "a number > 0"),
        ("outage_backoff_max_seconds", -1, "a number > 0"),
        ("pubsub_emulator_host", "localhost", "host:port"),
        ("spooler_metrics_port", -1, "a port 1-65535, or 0 to serve no metrics"),
        ("spooler_metrics_port", 70000, "a port 1-65535, or 0"),
        ("spooler_metrics_port", "9100", "a port 1-65535"),
        ("spooler_metrics_port", True, "a port 1-65535"),
        ("spooler_metrics_host", "", "an address to listen on"),
        ("spooler_metrics_host", "host name", "an address to listen on"),
        ("amount_max", "1e30", "a decimal amount"),
        ("simulation_end", 1767225600, "a time such as -48h"),
        ("allowed_origins", "https://txn.example.com", "a list of origins"),
        ("allowed_origins", ["https://txn.example.com/app"], "got 'https://txn.example.com/app'"),
        ("post_rate_limit", "often", 'a rate such as "120 per minute"'),
    ],
)
def test_a_wrong_value_gets_one_line_naming_the_key(tmp_path: Path, key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, {key: value}))
    message = str(info.value)
    assert f"'{key}'" in message
    assert expected in message
    assert "\n" not in message


def test_a_token_that_is_refused_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, {"ingest_token": "secret with spaces 0123456789"}))
    assert "'ingest_token'" in str(info.value) and "secret" not in str(info.value)


def test_origins_are_kept_in_the_form_a_browser_sends(tmp_path: Path) -> None:
    origins = ["https://Txn.Example.com:443", "http://10.0.0.5:5000/", "http://[::1]:80"]
    cfg = load_config(write(tmp_path, {"allowed_origins": origins}))
    assert cfg.allowed_origins == ("https://txn.example.com", "http://10.0.0.5:5000", "http://[::1]")


def test_unknown_key_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown config key 'user'"):
        load_config(write(tmp_path, {"user": 10}))


def test_comment_keys_are_ignored(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, {"_comment": "hello", "users": 3})).users == 3


def test_missing_file_and_bad_json_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"users": 10,,}')
    with pytest.raises(ConfigError, match=r"not valid JSON \(line 1, column 14"):
        load_config(bad)


def test_default_path_prefers_config_json_in_the_working_directory(tmp_path: Path) -> None:
    write(tmp_path, {"users": 2})
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert resolve_path(None) == Path("config.json")
        assert load_config().users == 2
    finally:
        os.chdir(cwd)


def run_in_process(main: Callable[[Sequence[str] | None], int], argv: list[str], capsys: Any) -> str:
    """Run a command's main() through common.cli.run as `python -m` would; return its one error line."""
    with pytest.raises(SystemExit) as info:
        run(main, argv)
    assert info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--users", "0"], "--users"),
        (["--users", "many"], "--users"),
        (["--seed", "-3"], "--seed"),
        (["--speedup", "0", "--live"], "--speedup"),
        (["--start", "whenever"], "--start: not a time: 'whenever'"),
        (["--end", "-1x"], "--end"),
        (["--start", "-1h", "--end", "-2h"], "--start"),
        (["--live", "--start", "-1h"], "--live"),
        (["--bogus"], "--bogus"),
    ],
)
def test_emitter_flag_errors_are_one_line_and_exit_2(args: list[str], named: str, capsys: Any) -> None:
    line = run_in_process(emitter_main, ["--config", str(ROOT / "config.sample.json"), *args], capsys)
    assert named in line


@pytest.mark.parametrize(
    ("args", "named"), [(["--until-idle", "0"], "--until-idle"), (["--pullers", "0"], "--pullers")]
)
def test_spooler_flag_errors_are_one_line_and_exit_2(args: list[str], named: str, capsys: Any) -> None:
    line = run_in_process(spooler_main, ["--config", str(ROOT / "config.sample.json"), *args], capsys)
    assert named in line


def test_serve_refuses_threads_the_run_streams_could_all_take(tmp_path: Path, capsys: Any) -> None:
    config = write(tmp_path, {"push_max_streams": 4})
    line = run_in_process(serve_main, ["--check", "--config", str(config), "--threads", "4"], capsys)
    assert "'push_max_streams'" in line and "--threads (4)" in line
    with pytest.raises(SystemExit) as info:
        run(serve_main, ["--check", "--config", str(config), "--threads", "5"])
    assert info.value.code == 0
