# `make run` and `make test` work from a fresh clone with only python3, make and the
# machine's services: each creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
JS := tests/compat/js

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

$(JS)/node_modules/.stamp: $(JS)/package.json $(JS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(JS) && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --silent && touch node_modules/.stamp; \
	else echo "npm not found: the Node client tests will be skipped"; fi

run: $(STAMP)
	$(VENV)/bin/leadloop quickstart --playbook examples/playbook.yaml

test: $(STAMP) $(JS)/node_modules/.stamp
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check leadloop tests bench
	$(VENV)/bin/ruff format --check leadloop tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(VENV)/bin/leadloop bench ingest

clean:
	rm -rf $(VENV) $(JS)/node_modules .pytest_cache .mypy_cache .ruff_cache
