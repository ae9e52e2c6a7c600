#!/usr/bin/env bash
# Make this checkout ready to run: a virtual environment with requirements.txt and the project
# itself installed in it (editable), and the system pieces the tests need (Java for Spark and the
# Pub/Sub emulator, Chromium for the browser test). Idempotent and quiet when everything is already there.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
WITH_BROWSER="${WITH_BROWSER:-0}"

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
if [ "$WITH_BROWSER" = 1 ] && [ ! -x /usr/bin/chromium ]; then need_apt+=(chromium); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing system packages: ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

stamp=".venv/.requirements.sha"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> creating .venv and installing requirements.txt (first time takes a few minutes)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet --progress-bar on -r requirements.txt
  echo "$want" >"$stamp"
fi

# The project itself, editable (pip install -e .): the txn-* commands, and its packages importable
# from any folder (the notebook's kernel, spark-submit). Its dependencies are the pins above, so
# --no-deps. Done again only when pyproject.toml changes or the checkout moves.
stamp=".venv/.project.sha"
want="$(cat pyproject.toml <(echo "$ROOT") | sha256sum | cut -d' ' -f1)"
if [ ! -x .venv/bin/txn-serve ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing the project into .venv (pip install -e .)"
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$want" >"$stamp"
fi

# The notebook's kernel, `txn-pipeline` (the name notebooks/main.ipynb asks for): this .venv's Python,
# registered in the .venv's own Jupyter folder, where JupyterLab (`make notebook`) and papermill
# started from the .venv find it. Its path is in it, so it is written again when the checkout moves.
kernel=".venv/share/jupyter/kernels/txn-pipeline/kernel.json"
if ! grep -qF "\"$ROOT/.venv/bin/python\"" "$kernel" 2>/dev/null; then
  echo "==> registering the notebook kernel txn-pipeline (.venv's Python)"
  .venv/bin/python -m ipykernel install --sys-prefix --name txn-pipeline --display-name "Python (txn-pipeline)" >/dev/null
fi
