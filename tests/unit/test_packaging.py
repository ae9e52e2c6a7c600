"""The project's packaging, read without running anything: pyproject declares the six console
scripts and only dependencies that requirements.txt pins; the zip Spark executors get holds exactly
the sources of the packages they import, is rebuilt only when they change, and a package already
inside an archive is not zipped again."""

from __future__ import annotations

import os
import tomllib
import zipfile
from pathlib import Path

import pytest

from jobs.aggregate.archive import EXECUTOR_PACKAGES, NotShippable, project_archive

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {
    "txn-emit": "emitter",
    "txn-spool": "jobs.spooler",
    "txn-aggregate": "jobs.aggregate",
    "txn-serve": "webapp",
    "txn-bench": "bench",
    "txn-sql": "jobs.sql",
}


def _sources(package: str) -> dict[str, bytes]:
    """Every .py file under the checkout's `package` folder by its name inside an archive, read here."""
    found = {}
    for folder, dirs, files in os.walk(ROOT / package):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                path = Path(folder) / name
                found[path.relative_to(ROOT).as_posix()] = path.read_bytes()
    return found


def test_pyproject_declares_the_six_commands() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {command: f"{module}.__main__:console" for command, module in COMMANDS.items()}


def test_every_declared_dependency_is_pinned_in_requirements() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(declared["dependencies"]) + [d for extra in declared["optional-dependencies"].values() for d in extra]
    pinned = {
        line.split("==")[0].strip().lower()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert names and [name for name in names if name.lower() not in pinned] == []


def test_the_executors_archive_holds_the_packages_sources_and_nothing_else(tmp_path: Path) -> None:
    archive = project_archive(cache_dir=tmp_path)
    expected = {name: data for package in EXECUTOR_PACKAGES for name, data in _sources(package).items()}
    assert {"common/config.py", "jobs/aggregate/transforms.py", "jobs/aggregate/load.py"} <= set(expected)
    with zipfile.ZipFile(archive) as bundle:
        held = {name: bundle.read(name) for name in bundle.namelist()}
    assert held == expected
    assert not [name for name in held if name.startswith(("tests/", "bench/", "webapp/", "emitter/"))]


def test_the_executors_archive_is_built_once_per_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "src" / "shipme"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 1\n")
    (package / "notes.txt").write_text("not a source")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    cache = tmp_path / "cache"

    first = project_archive(cache_dir=cache, packages=("shipme",))
    stamp = first.stat().st_mtime_ns
    assert project_archive(cache_dir=cache, packages=("shipme",)) == first
    assert first.stat().st_mtime_ns == stamp  # reused, not rewritten
    (package / "__init__.py").write_text("VALUE = 2\n")
    second = project_archive(cache_dir=cache, packages=("shipme",))
    assert second != first
    with zipfile.ZipFile(second) as bundle:
        assert bundle.namelist() == ["shipme/__init__.py"]
        assert bundle.read("shipme/__init__.py") == b"VALUE = 2\n"
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.name, second.name])  # no partial left


def test_a_package_inside_an_archive_is_not_shipped_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zipped = tmp_path / "already.zip"
    with zipfile.ZipFile(zipped, "w") as bundle:
        bundle.writestr("shipped_before/__init__.py", "")
    monkeypatch.syspath_prepend(str(zipped))
    with pytest.raises(NotShippable, match="shipped_before"):
        project_archive(cache_dir=tmp_path / "cache", packages=("shipped_before",))
