"""The project's code for Spark executors: one zip of the installed packages they import.

The packages are found where the driver imports them from (importlib), so the executors run exactly
the driver's code, whether the project is installed (editable or not) or run from a checkout. Only
Python sources go in: no caches, no tests, no benchmark data. The zip is built once per version and
content, named by both, and kept in the user's cache folder; a run with unchanged code reuses it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "txn-pipeline"
# What the executors import: the transforms, the Bigtable writer and what they use (nothing of
# emitter/, webapp/ or bench/).
EXECUTOR_PACKAGES = ("common", "jobs")


class NotShippable(RuntimeError):
    """A package is not a folder of sources (already inside an archive, say), so it cannot be zipped."""


def package_sources(package: str) -> list[tuple[str, Path]]:
    """(name inside the archive, file) for every .py file of the imported top-level `package`, sorted."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if len(locations) != 1 or not Path(locations[0]).is_dir():
        raise NotShippable(f"package {package!r} is not one folder of sources (found at {locations or 'nowhere'})")
    base = Path(locations[0])
    return [
        (f"{package}/{source.relative_to(base).as_posix()}", source)
        for source in sorted(base.rglob("*.py"))
        if "__pycache__" not in source.parts
    ]


def version() -> str:
    """The installed distribution's version; "0+checkout" when the packages are not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+checkout"


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / DISTRIBUTION / "executors"


def project_archive(cache_dir: Path | None = None, packages: tuple[str, ...] = EXECUTOR_PACKAGES) -> Path:
    """The zip of `packages` for the executors' Python path, built when this version and content have
    no zip in `cache_dir` yet (default: ~/.cache/txn-pipeline/executors). Raises NotShippable."""
    files = [entry for package in packages for entry in package_sources(package)]
    digest = hashlib.sha256()
    for name, source in files:
        digest.update(name.encode() + b"\0" + source.read_bytes() + b"\0")
    folder = cache_dir or default_cache_dir()
    archive = folder / f"{DISTRIBUTION.replace('-', '_')}-{version()}-{digest.hexdigest()[:16]}.zip"
    if archive.is_file():
        return archive
    folder.mkdir(parents=True, exist_ok=True)
    # Written beside, then renamed: a concurrent run never sees half a zip under the final name.
    handle, partial = tempfile.mkstemp(dir=folder, prefix=".partial-", suffix=".zip")
    os.close(handle)
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as bundle:
            for name, source in files:
                bundle.write(source, name)
        os.replace(partial, archive)
    finally:
        Path(partial).unlink(missing_ok=True)
    return archive
