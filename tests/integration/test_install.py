"""The installed project: the console scripts in the interpreter's bin answer --help from any folder
with the same options as `python -m ...`; the zip Spark executors get imports on its own; a wheel
built from the checkout's files holds the packages and the dashboard's files, and no tests or
benchmark data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from jobs.aggregate.archive import DISTRIBUTION, project_archive

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMMANDS = {
    "txn-emit": "emitter",
    "txn-spool": "jobs.spooler",
    "txn-aggregate": "jobs.aggregate",
    "txn-serve": "webapp",
    "txn-bench": "bench",
    "txn-sql": "jobs.sql",
}


def plain_env() -> dict[str, str]:
    """This environment without PYTHONPATH: what imports comes from the installed project alone."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"} | {"COLUMNS": "100"}


@pytest.fixture(scope="module")
def installed_here() -> None:
    """The interpreter has this checkout installed (scripts/bootstrap.sh does `pip install -e .`)."""
    # pip's record of where it installed from; the build's own txn_pipeline.egg-info in the
    # checkout (found on the path too) has none.
    records = [dist.read_text("direct_url.json") for dist in metadata.distributions(name=DISTRIBUTION)]
    direct_url = next((record for record in records if record), None)
    if direct_url is None:
        pytest.fail(f"{DISTRIBUTION} is not installed in {sys.executable}: run scripts/bootstrap.sh")
    source = Path(unquote(urlparse(json.loads(direct_url).get("url", "")).path))
    if source.resolve() != ROOT.resolve():
        pytest.skip(f"{sys.executable} has {DISTRIBUTION} installed from {source}, not from this checkout")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_console_script_answers_help_like_its_module(command: str, installed_here: None, tmp_path: Path) -> None:
    script = BIN / command
    assert script.is_file(), f"{script} missing: run scripts/bootstrap.sh"
    # From an unrelated folder, with no PYTHONPATH: the install alone makes the packages importable.
    by_script = subprocess.run(
        [str(script), "--help"], cwd=tmp_path, env=plain_env(), capture_output=True, text=True, timeout=120
    )
    assert by_script.returncode == 0, by_script.stderr
    assert by_script.stdout.startswith(f"usage: {command} ")
    by_module = subprocess.run(
        [sys.executable, "-m", COMMANDS[command], "--help"],
        cwd=ROOT,
        env=plain_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert by_module.returncode == 0, by_module.stderr
    assert by_module.stdout.startswith(f"usage: python -m {COMMANDS[command]} ")
    # Past the usage block (wrapped to the name's length) the two print the same options.
    assert by_script.stdout.split("\n\n", 1)[1] == by_module.stdout.split("\n\n", 1)[1]


def test_a_console_script_refuses_a_bad_flag_in_one_line(installed_here: None, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "txn-emit"), "--users", "0"], cwd=tmp_path, env=plain_env(), capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: argument --users: invalid integer >= 1 value: '0' (see txn-emit --help)"


def test_the_executors_archive_imports_on_its_own(tmp_path: Path) -> None:
    """Every module of the zip imports with the zip and the third-party libraries alone on the path
    (-S: no site processing, so neither an editable install nor the checkout can supply them)."""
    archive = project_archive(cache_dir=tmp_path / "cache")
    libraries = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    check = (
        "import importlib, sys, zipfile\n"
        "archive = sys.argv[1]\n"
        "names = [n[:-3].replace('/', '.').removesuffix('.__init__') for n in zipfile.ZipFile(archive).namelist()]\n"
        "for name in names:\n"
        "    module = importlib.import_module(name)\n"
        "    assert module.__file__.startswith(archive), (name, module.__file__)\n"
        "print(len(names))\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", check, str(archive)],
        cwd=tmp_path,
        env={**plain_env(), "PYTHONPATH": os.pathsep.join([str(archive), *libraries])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout) == len(zipfile.ZipFile(archive).namelist())


def test_a_wheel_of_the_checkout_holds_the_packages_and_the_dashboard_files(tmp_path: Path) -> None:
    """Built from a copy of the files git tracks, so the checkout gets no build/ or egg-info."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    source = tmp_path / "source"
    for name in tracked.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path / "dist"), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("txn_pipeline-*.whl")
    with zipfile.ZipFile(wheel) as bundle:
        names = set(bundle.namelist())
        (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        declared = bundle.read(entry_points).decode()

    files = [name for name in tracked.decode().split("\0") if name]
    sources = {
        n for n in files if n.endswith(".py") and n.split("/")[0] in ("common", "emitter", "jobs", "webapp", "bench")
    }
    dashboard = {n for n in files if n.startswith(("webapp/static/", "webapp/templates/"))}
    assert dashboard >= {"webapp/templates/dashboard.html", "webapp/static/vendor/chart.umd.min.js"}
    assert {name for name in names if ".dist-info/" not in name} == sources | dashboard
    for command, module in COMMANDS.items():
        assert f"{command} = {module}.__main__:console" in declared
