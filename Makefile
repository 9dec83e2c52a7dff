# edgemeter: `make demo` runs the whole path on one machine; `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-all
UV     := $(shell command -v uv 2>/dev/null)

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

unit: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m 'not board'

test: lint typecheck unit

# The edit loop: everything not marked slow, no lint or type check (under a minute).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m 'not slow' -x

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
