# ml-connector: every target does its own set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(PYTHON) -m uv
endif

.PHONY: demo test test-fast bytecode faults bench lint venv postgres postgres-stop clean

$(VENV)/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV) sync --frozen --quiet
	@touch $@

venv: $(VENV)/.synced

demo: venv bytecode
	$(VENV)/bin/ml-connector demo

# The scale-out tests need a Postgres server: scripts/postgres.sh installs
# Debian's package if missing and starts a throwaway cluster on loopback.
# The console's browser tests need Chromium: scripts/chromium.sh installs Debian's
# chromium and chromium-driver if missing (MLC_REQUIRE_BROWSER: no skipping here).
# `make test` runs in three passes. Most tests (each in a directory, database and ports of its own) run on
# two pytest-xdist workers, a module's tests on one worker (`--dist loadfile`: many share a module-scoped
# sandbox world and some build on the previous test's state). The fault matrix (tests/faults: every case
# its own world, crashes at fixed points, not at times) runs on two workers too. The tests that kill,
# stop and time separate processes, share the Postgres server or drive the browser run last, one at a
# time. Every pass runs; `make test` fails if any did.
SERIAL := scaleout or slow or browser or faults
SERIAL_NOT := not ($(SERIAL))

# Python compiles, at every import, each module it has no cached bytecode for, and caches nothing where
# PYTHONDONTWRITEBYTECODE is set (as in this machine's environment; uv does not compile either): every CLI
# process compiled ~170 modules (DBOS, psycopg, ours), a third of its CPU. Compile once first (when
# nothing changed this only reads timestamps); a third-party file that does not compile is skipped.
bytecode: venv
	@$(VENV)/bin/python -m compileall -q -j 0 src tests \
		"$$($(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || true

test: venv bytecode
	@eval "$$(scripts/postgres.sh start)" && \
	export MLC_TEST_PG_URL && \
	eval "$$(scripts/chromium.sh)" && \
	export MLC_CHROMIUM MLC_CHROMEDRIVER MLC_REQUIRE_BROWSER=1 && \
	$(VENV)/bin/ruff check src tests $(wildcard bench) && \
	$(VENV)/bin/mypy && \
	{ rc=0; \
	  $(VENV)/bin/pytest -q -p no:cacheprovider -m "$(SERIAL_NOT)" -n 2 --dist loadfile || rc=$$?; \
	  $(VENV)/bin/pytest -q -p no:cacheprovider tests/faults -n 2 --dist worksteal || rc=$$?; \
	  $(VENV)/bin/pytest -q -p no:cacheprovider -m "$(SERIAL)" --ignore=tests/faults || rc=$$?; \
	  exit $$rc; }

# The developer's quick loop (under 3 minutes on two cores): every unit test (mappings, engine, config,
# providers) and the loopback tests marked `smoke` (each emulator's protocol and one end-to-end pass
# per flow), on two pytest-xdist workers. `make test` runs everything.
test-fast: venv bytecode
	$(VENV)/bin/pytest -q -p no:cacheprovider -m "(unit or smoke) and not (scaleout or slow or browser or faults)" \
		-n 2 --dist loadfile

# The fault matrix: every flow's write path under the sandboxes' faults (and the SIGKILL tests),
# then a table of duplicates and losses per stream and fault (all zero). `make test` runs it too.
faults: venv
	@eval "$$(scripts/postgres.sh start)" && \
	export MLC_TEST_PG_URL && \
	$(VENV)/bin/pytest -q -p no:cacheprovider -m faults

bench: venv
	$(VENV)/bin/python -m bench.run_all

lint: venv
	$(VENV)/bin/ruff check src tests $(wildcard bench)
	$(VENV)/bin/mypy

postgres:
	@scripts/postgres.sh start

postgres-stop:
	@scripts/postgres.sh stop

clean:
	rm -rf $(VENV) demo .pgdata
