"""The stages import only `common` and themselves: what two stages share lives in common/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("emitter", "jobs", "webapp")


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a Python file imports (absolute imports only)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_no_other_stage(stage: str) -> None:
    others = set(STAGES) - {stage}
    reaching = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & others)
        for path in sorted((ROOT / stage).rglob("*.py"))
        if imported_packages(path) & others
    }
    assert reaching == {}


def test_common_imports_no_stage() -> None:
    reaching = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & set(STAGES))
        for path in sorted((ROOT / "common").rglob("*.py"))
        if imported_packages(path) & set(STAGES)
    }
    assert reaching == {}


def test_the_import_scan_sees_a_stage_import(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text("import os\nfrom jobs.aggregate import job\nfrom . import sibling\nimport webapp.api as api\n")
    assert imported_packages(source) == {"os", "jobs", "webapp"}
