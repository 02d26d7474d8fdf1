# Two commands do all set-up on a bare machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# requirements.lock: what the services need (the Docker image); requirements-dev.lock: that plus the
# test and lint tools (the venv). Both include the build backend, so nothing unpinned is fetched.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
WEB_VENDOR := web_vendor/lock.json
# Linux x86_64, Python 3.11: this machine, CI and the Docker image.
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock' $(UPGRADE)
BUILD_REQUIRES = $(PY) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], sep='\n')"


.PHONY: chromium compose-validator
.PHONY: install web-assets lock audit run test lint typecheck pytest fuzz bench crash mutate loadtest overload feedbench abuse schema clean
.PHONY: cluster-test run-standby crash-standby bench-stall bench-restart bench-drain core test-core-source

# The venv installs exactly the pinned, hash-checked versions in $(DEV_LOCK) (runtime, dev tools and
# the build backend), then the project itself, editable and without touching those pins. The stamp
# depends on the lock, so an unchanged lock does not reinstall.
$(STAMP): $(DEV_LOCK) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP) $(WEB_VENDOR)

# GraphiQL's and the OpenAPI UI's browser files: npm tarballs pinned with their sha512 in
# web-assets.lock.json, checked and unpacked into web_vendor/, which the API serves at /vendor/
# so that /graphql and /docs work with no internet. The stamp is a copy of the lock.
$(WEB_VENDOR): web-assets.lock.json tools/web_assets.mjs
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { \
		echo "GraphiQL and the OpenAPI UI are installed from npm: install Node.js (>= 16) with npm"; \
		exit 1; }
	node tools/web_assets.mjs

web-assets: $(WEB_VENDOR)

# The one deliberate way to change pinned versions: re-resolve pyproject.toml (and the build backend)
# to the newest releases allowed. `make lock UPGRADE=` keeps existing pins and only adds what changed.
UPGRADE ?= --upgrade
lock: $(STAMP)
	$(BUILD_REQUIRES) | $(UV_COMPILE) pyproject.toml - -o $(LOCK)
	$(BUILD_REQUIRES) | $(UV_COMPILE) pyproject.toml - --extra dev -c $(LOCK) -o $(DEV_LOCK)

# The matching core (engine/book.py, engine/matching.py) compiled with mypyc, in place beside its
# source (tools/build_core.py; the .so files are git-ignored). Where it does not build (no C compiler
# or Python headers) the source runs instead, the same code, slower (docs/operations.md), and the
# next make tries again. engine/core_import.py lists the files whose digest the build records
# (an import checks it): a change to that list must rebuild too.
CORE_STAMP := build/core/stamp
$(CORE_STAMP): $(STAMP) engine/book.py engine/matching.py shared/commands.py shared/events.py \
		engine/core_import.py tools/build_core.py
	@mkdir -p build/core
	@if $(PY) -m tools.build_core >build/core/log 2>&1; then \
		echo "core: compiled (engine/*.so)"; touch $@; \
	else \
		rm -f engine/*.so; echo "core: mypyc build failed (build/core/log); the source runs instead"; \
	fi

core: $(CORE_STAMP)

# The core's tests against its source while the compiled modules are built: the twin's run. `make
# pytest` runs every test against whichever the build gave, then these against the source (with
# the property test's inner-loop profile).
CORE_TESTS := tests/engine/test_matching.py tests/engine/test_order_types.py \
	tests/engine/test_price_band.py tests/engine/test_stateful.py tests/engine/test_core_twin.py
test-core-source: $(STAMP)
	ENGINE_CORE=python $(PY) -m pytest -q $(CORE_TESTS)

run: $(STAMP) $(WEB_VENDOR) $(CORE_STAMP)
	$(PY) -m shared.stack

# The same with a hot standby engine (docs/recovery.md): twice the engine's memory and CPU.
run-standby: $(STAMP) $(WEB_VENDOR) $(CORE_STAMP)
	$(PY) -m shared.stack --standby

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy --strict on every package named in pyproject.toml's [tool.mypy] files, tests/ included.
typecheck: $(STAMP)
	$(VENV)/bin/mypy

# --durations=25: every run lists its slowest tests and fixtures, so a slow newcomer shows.
pytest: $(STAMP) $(WEB_VENDOR) $(CORE_STAMP) chromium compose-validator
	$(PY) -m pytest -q --ignore=tests/cluster --durations=25
	HYPOTHESIS_PROFILE=fast ENGINE_CORE=python $(PY) -m pytest -q $(CORE_TESTS)

# `docker compose config` needs no Docker engine; where the v2 plugin is missing, Debian's
# docker-compose validates the file instead (tests/test_deploy.py uses whichever is there).
compose-validator:
	@docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 || { \
		echo "installing Debian's docker-compose to validate docker-compose.yml"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq docker-compose >/dev/null; }

# The browser test drives Debian's Chromium (Playwright's own browser download cannot work here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# pip-audit on every pin in the dev lock (which includes the runtime lock); see tools/audit.py for
# the vulnerability source it can reach from here and what that source cannot see.
audit: $(STAMP)
	$(PY) -m tools.audit $(DEV_LOCK)

test: lint typecheck audit pytest

# The inner loop: unit tests and the API suite over the in-process gateway. No subprocess,
# no Redis, no browser.
test-fast: $(STAMP) $(WEB_VENDOR) $(CORE_STAMP)
	HYPOTHESIS_PROFILE=fast BOOK_FEED_COMMANDS=2000 $(PY) -m pytest -q -m "not stack" -p no:cacheprovider

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/engine/test_stateful.py

bench: $(STAMP) $(CORE_STAMP)
	$(PY) -m engine.bench

clean:
	rm -rf $(VENV) web_vendor data .mypy_cache .ruff_cache .pytest_cache .hypothesis .mutate build engine/*.so

# A real Redis Cluster (3 masters, 3 replicas) on this machine: the stack on it, failovers
# under load, then the API suite's stack half run through a stack on a cluster (4 instruments,
# 2 engines). Several minutes, so not part of `make test`.
cluster-test: $(STAMP)
	$(PY) -m pytest -q tests/cluster
	STACK_REDIS=cluster $(PY) -m pytest -q -m stack tests/api

crash: $(STAMP) $(CORE_STAMP)
	$(PY) -m tests.crash.harness --kills 100 --rate 300

# The same with a hot standby engine: every engine kill hits the leader; prints takeover times.
crash-standby: $(STAMP) $(CORE_STAMP)
	$(PY) -m tests.crash.harness --kills 100 --rate 300 --standby

# Engine service benchmarks (docs/recovery.md, docs/operations.md): how long checkpoints stop
# matching (100k and 1M resting; the leader forking, or a standby writing them), how fast an
# engine with 1M resting orders is ready after a start, and how many commands/s one engine
# process drains from Redis. Minutes each.
bench-stall: $(STAMP) $(CORE_STAMP)
	$(PY) -m engine.stall_bench --resting 100000 --mode fork
	$(PY) -m engine.stall_bench --resting 100000 --mode standby
	$(PY) -m engine.stall_bench --resting 1000000 --mode fork
	$(PY) -m engine.stall_bench --resting 1000000 --mode standby

bench-restart: $(STAMP) $(CORE_STAMP)
	$(PY) -m engine.restart_bench --resting 1000000

bench-drain: $(STAMP) $(CORE_STAMP)
	$(PY) -m engine.drain_bench --commands 1000000

# Hand-written semantic mutations of the matching core and of request validation, each
# applied to a scratch copy of the tree and expected to fail its guarding tests (not in `test`).
mutate: $(STAMP)
	$(PY) -m tests.mutate

loadtest: $(STAMP) $(CORE_STAMP)
	$(PY) -m tests.load

overload: $(STAMP)
	$(PY) -m tests.overload

# A client resuming /ws/trades (and trades(after:)) after 100,000 missed trades: trades/s.
feedbench: $(STAMP)
	$(PY) -m tests.feed_bench --graphql

abuse: $(STAMP)
	$(PY) -m tests.abuse_bench

# Files generated from the code, checked by tests/test_deploy.py.
schema: $(STAMP)
	$(PY) -c "from graphql_api.schema import schema; open('docs/schema.graphql', 'w').write(schema.as_str() + '\n')"
	$(PY) -m shared.config > .env.example
