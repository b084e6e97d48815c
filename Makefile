# Two commands do everything on a fresh machine (Python 3.11+, Node 20):
#   make run   - set up, then run the app locally on Azurite + the simulators
#   make test  - set up, then ruff, mypy, the whole pytest suite and the infra scan
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup run test lint typecheck unit infra-scan bench clean

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

run: setup
	$(BIN)/python -m scripts.dev_stack

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy function_app.py shared devhost simulators scripts

unit: setup
	$(BIN)/pytest

infra-scan:
	bash scripts/scan_infra.sh

test: lint typecheck unit infra-scan

bench: setup
	$(BIN)/python -m scripts.bench

clean:
	rm -rf $(VENV) node_modules .local .mypy_cache .ruff_cache .pytest_cache
