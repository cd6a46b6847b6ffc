# cellbus: the two commands are `make run` and `make test`; see README.md.
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
UV_VERSION := 0.13.8

.PHONY: run test install lint format services clean

# Everything in one program (accounts, web, a kernel worker) on the in-process bus and SQLite:
# no servers needed. CELLBUS_PORT (8888) and CELLBUS_DATA_DIR choose where.
run: install
	$(VENV)/bin/cellbus serve

# The whole suite against the real Redis and PostgreSQL on 127.0.0.1 (installed and started
# from Debian's packages when they are not running).
test: install services lint
	$(VENV)/bin/pytest -q

install: $(VENV)/.installed

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: $(UV) pyproject.toml uv.lock */*/pyproject.toml
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

services:
	bash scripts/ensure-services.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache artifacts
