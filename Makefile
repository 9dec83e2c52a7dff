# edgemeter: `make demo` runs the whole path on one machine; `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-all
UV     := $(shell command -v uv 2>/dev/null)
# Test workers (pytest-xdist); `make test WORKERS=0` runs in one process.
WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider -n $(WORKERS)

.PHONY: demo test test-board test-fast lint typecheck unit install clean wheel

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "edgemeter needs Python >= 3.10"'
ifneq ($(UV),)
	$(UV) venv -q --allow-existing -p $(PYTHON) $(VENV)
	$(UV) pip install -q -p $(BIN)/python -e '.[all]'
else
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all]'
endif
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgemeter demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Every test, in WORKERS processes; a test file stays in one worker (its module fixtures start once)
# and files start in the order tests/suite.py gives them (slowest first). The 20 slowest tests are
# listed at the end. Any failure fails: a crashed worker, a timeout, no test collected (status 5).
unit: $(STAMP)
	$(PYTEST) -q --dist loadfile --no-loadscope-reorder --durations=20 -m 'not board'; \
	status=$$?; [ $$status -ne 5 ] || echo "pytest collected no tests: that is a failure" >&2; exit $$status

test: lint typecheck unit

# The edit loop (under a minute): no broker, database or child process (--offline deselects the
# tests marked mqtt, postgres or subprocess and fails one that reaches a service anyway), nothing
# marked slow, fewer examples per property test, no lint or type check.
test-fast: $(STAMP)
	$(PYTEST) -q --offline -m 'not slow' -x --hypothesis-profile=fast

# The wheel a board installs (deploy/install.sh, deploy/ansible): dist/edgemeter-<version>-py3-none-any.whl
wheel:
	rm -f dist/edgemeter-*.whl
ifneq ($(UV),)
	$(UV) build -q --wheel -o dist .
else
	$(PYTHON) -m pip wheel -q --no-deps -w dist .
endif

clean:
	rm -rf $(VENV) edgemeter-demo .pytest_cache .mypy_cache .ruff_cache

# A board-like install (debootstrapped Debian 12 root, install.sh --root, the agent run inside);
# needs root and debootstrap, takes minutes; .ci/run runs it after `make test`.
test-board: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m board
