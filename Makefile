# cellbus: the two commands are `make run` and `make test`; see README.md.
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
UV_VERSION := 0.13.8

.PHONY: run test test-fast typecheck install lint format services frontend browser compose-tools clean bench bench-quick

WEB := frontend/web
WEB_SOURCES := $(shell find $(WEB)/src $(WEB)/static -type f 2>/dev/null) $(WEB)/build.mjs

# Everything in one program (accounts, web, a kernel worker) on the in-process bus and SQLite:
# no servers needed. CELLBUS_PORT (8888) and CELLBUS_DATA_DIR choose where.
run: install frontend
	$(VENV)/bin/cellbus serve

# The whole suite against the real Redis and PostgreSQL on 127.0.0.1 (installed and started
# from Debian's packages when they are not running), in two processes (pytest-xdist; a
# module's tests stay in one, sharing its fixtures), then the tests marked `alone`, which
# measure a speed-up on both cores, by themselves. The 30 slowest tests are listed: the suite
# should stay under 15 minutes on a 2-core machine.
test: install services browser compose-tools frontend lint
	$(VENV)/bin/pytest -q -n 2 --dist loadscope -m "not alone" --durations=30
	$(VENV)/bin/pytest -q -m alone

# The fast tier: tests/unit (marked `unit`), pure code only, no Redis or PostgreSQL; seconds.
test-fast: install
	$(VENV)/bin/pytest -q -m unit tests/unit

# cellbus against Jupyter, the same workloads on both in turns (bench/, docs/performance.md):
# bench/results/<date>.json, .md and -latency.png. About 10 minutes; workload 7 also runs
# the services on the Redis and PostgreSQL on 127.0.0.1 (`make services` starts them).
bench: install services frontend
	$(VENV)/bin/python -m bench.cellbus_bench

# Every workload briefly (about 4 minutes), into bench/results/quick/ (not kept in git).
bench-quick: install services frontend
	$(VENV)/bin/python -m bench.cellbus_bench --quick --out bench/results/quick

install: $(VENV)/.installed

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --compile-bytecode: the kernel template imports IPython from these files; compiled at install,
# it need not compile them itself (which costs every session process memory: docs/performance.md).
$(VENV)/.installed: $(UV) pyproject.toml uv.lock */*/pyproject.toml
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	touch $@

services:
	bash scripts/ensure-services.sh

# The browser app (frontend/web/dist): `npm ci` when package-lock.json changes, then a build
# when any source changes. Each step leaves a stamp file, so an unchanged app costs nothing.
frontend: $(WEB)/dist/.built

$(WEB)/node_modules/.installed: $(WEB)/package.json $(WEB)/package-lock.json
	@command -v npm >/dev/null || { echo "the browser app needs Node.js and npm" >&2; exit 1; }
	cd $(WEB) && npm ci --no-audit --no-fund
	touch $@

$(WEB)/dist/.built: $(WEB)/node_modules/.installed $(WEB_SOURCES)
	cd $(WEB) && npm run build
	touch $@

# Debian's Chromium at /usr/bin/chromium, which the browser tests drive with Playwright.
browser:
	bash scripts/ensure-browser.sh

# Debian's docker-compose (Compose v1), which tests/integration/test_compose.py validates with.
compose-tools:
	bash scripts/ensure-compose-tools.sh

# mypy in strict mode over every package, the tests and bench ([tool.mypy] in pyproject.toml).
typecheck: install
	$(VENV)/bin/mypy

lint: install $(WEB)/node_modules/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd $(WEB) && npm run --silent format:check

format: install $(WEB)/node_modules/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
	cd $(WEB) && npm run --silent format

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache artifacts $(WEB)/node_modules $(WEB)/dist
