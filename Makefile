# The few verbs people type. Everything runs from the project's own .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv dev lint test bench load clean

venv: $(STAMP)

# pip is the sign of a usable venv: a run that failed half-way (no ensurepip) is redone.
$(BIN)/pip:
	$(PYTHON) -m venv $(VENV)

# Re-install only when the dependencies may have changed.
$(STAMP): pyproject.toml | $(BIN)/pip
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev,load]'
	touch $@

# Embedded Postgres and Valkey under .devdata/, demo data, API on :8000, scheduler inside.
dev: venv
	$(BIN)/slots-service dev

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict slots_service

# The suite starts its own Postgres and Valkey in each xdist worker.
test: venv lint
	$(BIN)/pytest -n 2 -p no:cacheprovider

bench: venv
	$(BIN)/slots-service bench

load: venv
	$(BIN)/locust -f load/locustfile.py --headless -u 50 -r 10 -t 60s --host http://127.0.0.1:8000

clean:
	rm -rf .devdata .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
