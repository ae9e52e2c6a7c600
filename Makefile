# Run `make help` to see the targets.
.DEFAULT_GOAL := help
PY := .venv/bin/python

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

setup: ## Create .venv, install requirements.txt and the project itself (pip install -e .: the txn-* commands)
	scripts/bootstrap.sh

demo: ## The live demo: emulators, simulation, spool, Spark job, dashboard on :5000
	scripts/demo.sh

test: ## Lint, type-check and run every test tier (unit first) on the real emulators
	scripts/test.sh

test-unit: setup ## The unit tier: no emulator, no Spark, no subprocess (about a minute)
	$(PY) -m pytest tests/unit

test-integration: setup ## The integration tier on the real emulators and Spark
	scripts/emulators.sh start >/dev/null && $(PY) -m pytest -n 3 --dist worksteal tests/integration

test-e2e: setup ## The end-to-end tier: demo, browser, notebook, cluster, reliability suite
	scripts/emulators.sh start >/dev/null && $(PY) -m pytest -n 3 --dist worksteal tests/e2e

emulators: setup ## Start the Pub/Sub and Bigtable emulators
	scripts/emulators.sh start

emulators-stop: ## Stop the emulators
	scripts/emulators.sh stop

notebook: setup ## JupyterLab on notebooks/main.ipynb with the project's kernel (NOTEBOOK_ARGS="--no-browser --port 8890")
	scripts/notebook.sh $(NOTEBOOK_ARGS)

server: setup ## Serve the dashboard and API on :5000
	./run_server.sh

bench: setup ## Run the benchmark harness (BENCH_ARGS=--quick for a short run)
	scripts/emulators.sh start >/dev/null && $(PY) -m bench $(BENCH_ARGS)

lint: setup ## ruff check, ruff format --check and mypy
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

format: setup ## Format the code with ruff
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

clean: ## Remove the local spool, emulator state and caches
	rm -rf spool .emulators .pytest_cache .mypy_cache .ruff_cache

.PHONY: help setup demo notebook test test-unit test-integration test-e2e emulators emulators-stop server bench lint format clean
