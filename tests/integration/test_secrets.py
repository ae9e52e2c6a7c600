"""No secret is committed, files that would hold credentials are ignored by git, and the README says
how credentials are supplied on Google Cloud (application default credentials, no key file)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What a leaked credential looks like. Each pattern is specific enough not to fire on this file's
# own source (the planted examples below are assembled at run time).
SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"),
    "service-account key": re.compile(r'"type"\s*:\s*"service_account"'),
    "service-account private key id": re.compile(r'"private_key_id"\s*:\s*"[0-9a-f]{20,}"'),
    "Google API key": re.compile(r"AIza[0-9A-Za-z_\-]{35}"),
    "Google OAuth access token": re.compile(r"ya29\.[0-9A-Za-z_\-]{20,}"),
    "Google OAuth refresh token": re.compile(r"1//0[0-9A-Za-z_\-]{30,}"),
    "OAuth client secret": re.compile(r'"client_secret"\s*:\s*"[^"\s]{8,}"'),
    "AWS access key": re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{16}"),
    "GitHub token": re.compile(r"gh[pousr]_[A-Za-z0-9]{36,}"),
    "Slack token": re.compile(r"xox[abprs]-[0-9A-Za-z-]{10,}"),
    "bearer token": re.compile(r"Authorization:\s*Bearer\s+[A-Za-z0-9._~+/-]{24,}=*", re.I),
}
CREDENTIAL_FILES = [
    "config.json",
    "jobs/aggregate/config.json",
    "prod-key.json",
    "deploy/txn-pipeline-key.json",
    "service-account.json",
    "service-account-prod.json",
    "credentials.json",
    "credentials-ci.json",
    "config.local.json",
    ".env",
    "webapp/.env",
]


def tracked_files() -> list[Path]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in listing.decode().split("\0") if name]


def find_secrets(path: Path) -> list[str]:
    """The kinds of secret found in one file's text (binary files and files over 5 MB are skipped:
    a key is text)."""
    try:
        if path.stat().st_size > 5_000_000:
            return []
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return []
    if b"\0" in data[:8192]:
        return []
    text = data.decode("utf-8", errors="replace")
    found = [kind for kind, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    if path.suffix == ".json":
        found += _json_secrets(text)
    return found


def _json_secrets(text: str) -> list[str]:
    """Config-shaped JSON with a non-empty ingest token or a key file path."""
    try:
        data = json.loads(text)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    found = []
    for key in ("ingest_token", "read_token"):
        if data.get(key):
            found.append(f"{key.replace('_', ' ')} in a config file")
    if data.get("private_key"):
        found.append("private key field")
    return found


def test_no_tracked_file_holds_a_secret() -> None:
    files = tracked_files()
    assert len(files) > 50  # the listing works: the whole checkout is scanned
    leaks = {str(path.relative_to(ROOT)): kinds for path in files if (kinds := find_secrets(path))}
    assert leaks == {}


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("id_rsa", "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEow...\n", "private key"),
        (
            "sa.json",
            json.dumps({"type": "service_" + "account", "private_key_id": "0f" * 20, "private_key": "x"}),
            "service-account key",
        ),
        ("notes.md", "key: AI" + "za" + "SyA" + "x" * 32, "Google API key"),
        ("token.txt", "ya" + "29." + "a0AfH6SMB" + "q" * 30, "Google OAuth access token"),
        ("config.json", json.dumps({"ingest_token": "s3cret-value"}), "ingest token in a config file"),
        ("config.json", json.dumps({"read_token": "s3cret-value-16ch"}), "read token in a config file"),
        ("ci.yml", "GH=" + "gh" + "p_" + "A" * 36, "GitHub token"),
    ],
)
def test_the_scan_finds_a_planted_secret(tmp_path: Path, name: str, content: str, kind: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert kind in find_secrets(path)


def test_files_that_would_hold_credentials_are_ignored_by_git() -> None:
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *CREDENTIAL_FILES],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    not_ignored = [line.split("\t", 1)[1] for line in result.stdout.splitlines() if line.startswith("::")]
    assert not_ignored == []
    assert len(result.stdout.splitlines()) == len(CREDENTIAL_FILES)
    tracked = {str(path.relative_to(ROOT)) for path in tracked_files()}
    assert not tracked & set(CREDENTIAL_FILES)


def test_the_sample_config_holds_no_credential_and_points_at_the_emulators() -> None:
    sample = json.loads((ROOT / "config.sample.json").read_text())
    assert sample["ingest_token"] == "" and sample.get("read_token", "") == ""
    assert not {key for key in sample if re.search(r"secret|password|private_key|credential", key, re.I)}


def test_the_readme_says_credentials_come_from_application_default_credentials() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## On Google Cloud") :]
    assert "application default credentials" in section.lower()
    assert "gcloud auth application-default login" in " ".join(section.split())
    assert "GOOGLE_APPLICATION_CREDENTIALS" in section  # and where a key file must not live
