# The two commands of this project: `make demo` and `make test`.
# Each one creates or refreshes .venv, installs the project with its test
# extras, makes sure ActiveMQ is installed, then runs.

VENV     ?= .venv
PYTHON   ?= python3
BIN      := $(VENV)/bin

.PHONY: demo test lint typecheck contracts unit venv activemq chromium openssl clean

demo: venv activemq
	$(BIN)/b2bsim run scenarios/happy-path.yaml --result-json .b2bsim/demo-result.json

test: venv activemq chromium openssl lint typecheck contracts unit

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

# The import rules of docs/architecture.md ([tool.importlinter] in pyproject.toml).
contracts: venv
	$(BIN)/lint-imports

unit: venv activemq chromium openssl
	$(BIN)/pytest

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

activemq:
	@scripts/ensure-activemq.sh

# Debian's Chromium for the live view's browser tests (tests/ui/, driven by Playwright).
chromium:
	@scripts/ensure-chromium.sh

# Debian's openssl: the supplier's key and CSR in the onboarding tests (`openssl req`).
openssl:
	@scripts/ensure-openssl.sh

clean:
	-$(BIN)/b2bsim broker stop 2>/dev/null
	rm -rf .b2bsim .mypy_cache .ruff_cache .pytest_cache
