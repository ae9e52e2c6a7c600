"""`make notebook` as its users meet it: scripts/notebook.sh (what the target runs once the set-up is
done) starts JupyterLab, which serves the JupyterLab page and notebooks/main.ipynb, and opens the
notebook on the project's kernel: the .venv's Python, importing this checkout's packages, in the
notebook's folder. The server is stopped at the end, its kernel with it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import checkout_env
from jupyter_client import BlockingKernelClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "notebooks/main.ipynb"
KERNEL = "txn-pipeline"
START_TIMEOUT_S = 120


class Lab:
    """A running JupyterLab: its base URL, a requests session carrying the token, its runtime dir."""

    def __init__(self, url: str, token: str, runtime: Path) -> None:
        self.url, self.runtime = url.rstrip("/"), runtime
        self.http = requests.Session()
        self.http.trust_env = False  # never through a proxy: the server is on loopback
        self.http.headers["Authorization"] = f"token {token}"

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(f"{self.url}{path}", params=params, timeout=30)


def _server_info(runtime: Path, pid: int) -> dict[str, Any] | None:
    """The server's own record of where it listens (jpserver-<pid>.json), once it is serving."""
    path = runtime / f"jpserver-{pid}.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    token = secrets.token_hex(16)
    runtime = tmp_path / "runtime"
    env = checkout_env(
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),  # no user settings, workspaces written here
        JUPYTER_RUNTIME_DIR=str(runtime),
    )
    args = ["--no-browser", "--port=0", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}"]
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [str(ROOT / "scripts" / "notebook.sh"), *args], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        info = None
        while info is None:
            assert server.poll() is None, f"JupyterLab exited: {(tmp_path / 'lab.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-3000:]}"
            )
            time.sleep(0.5)
            info = _server_info(runtime, server.pid)
        yield Lab(f"http://127.0.0.1:{info['port']}{info['base_url']}", token, runtime)
    finally:
        server.send_signal(signal.SIGTERM)  # the server stops its kernels before it exits
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_make_notebook_serves_the_notebook_on_the_projects_kernel(lab: Lab) -> None:
    assert lab.get("/lab").status_code == 200
    assert lab.get(f"/lab/tree/{NOTEBOOK}").status_code == 200

    response = lab.get(f"/api/contents/{NOTEBOOK}", content=1)
    assert response.status_code == 200, response.text
    served = response.json()
    on_disk = json.loads((ROOT / NOTEBOOK).read_text(encoding="utf-8"))
    assert served["type"] == "notebook" and served["path"] == NOTEBOOK
    assert [cell["source"] for cell in served["content"]["cells"]] == [
        "".join(cell["source"]) for cell in on_disk["cells"]
    ]
    assert served["content"]["metadata"]["kernelspec"]["name"] == KERNEL

    specs = lab.get("/api/kernelspecs").json()["kernelspecs"]
    assert KERNEL in specs, sorted(specs)
    assert os.path.abspath(specs[KERNEL]["spec"]["argv"][0]) == os.path.abspath(sys.executable)

    # Open it as JupyterLab does (a session for the notebook's path) and ask the kernel where it runs.
    opened = lab.http.post(
        f"{lab.url}/api/sessions",
        json={"path": NOTEBOOK, "name": "main.ipynb", "type": "notebook", "kernel": {"name": KERNEL}},
        timeout=60,
    )
    assert opened.status_code == 201, opened.text
    kernel_id = opened.json()["kernel"]["id"]
    client = BlockingKernelClient(connection_file=str(lab.runtime / f"kernel-{kernel_id}.json"))
    client.load_connection_file()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        printed: list[str] = []
        code = "import os, sys, common.spool; print(json.dumps([sys.executable, os.getcwd(), common.spool.__file__]))"
        reply = client.execute_interactive(
            "import json\n" + code,
            timeout=60,
            output_hook=lambda msg: printed.append(msg["content"].get("text", "")),
        )
    finally:
        client.stop_channels()
    assert reply["content"]["status"] == "ok", reply["content"]
    executable, cwd, module = json.loads("".join(printed))
    assert os.path.abspath(executable) == os.path.abspath(sys.executable)
    assert Path(cwd) == ROOT / "notebooks"
    assert Path(module) == ROOT / "common" / "spool.py"
    closed = lab.http.delete(f"{lab.url}/api/sessions/{opened.json()['id']}", timeout=30)
    assert closed.status_code == 204
