# Two commands for a fresh machine with Python 3.11 and make:
#   make sandbox   install what is needed, then run the bot locally (no token) at http://127.0.0.1:8080
#   make test      install what is needed, then run the whole test suite (SQLite and PostgreSQL)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8080
LOCK   := requirements.lock

.PHONY: sandbox test lint system-deps test-deps install lock bench clean

# Exactly the versions in the lock file, each checked against its hash (the dev extra and the build
# backend included), then the project itself on top without resolving anything again.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --only-binary :all: -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e '.[dev]'
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

# Refresh the lock after changing the dependencies in pyproject.toml (pip-tools in a venv of its own).
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet pip-tools
	.venv-lock/bin/pip-compile --quiet --upgrade --generate-hashes --allow-unsafe --strip-extras \
	  --extra dev --all-build-deps --no-emit-index-url --no-emit-find-links --output-file $(LOCK) pyproject.toml
	rm -rf .venv-lock

# Debian packages: CJK font and HarfBuzz subsetting for flyers, Pango for WeasyPrint, libGL for OpenCV.
system-deps:
	bash scripts/system-deps.sh

# The sandbox starts without the system packages (Chinese flyers are then slow or boxed): a warning, not a stop.
sandbox:
	@bash scripts/system-deps.sh || echo "WARNING: system packages missing (see above); the sandbox starts anyway"
	@$(MAKE) --no-print-directory install
	$(BIN)/reunite sandbox --port $(PORT)

# ... and Chromium, for the test that clicks through the sandbox page in a real browser.
test-deps:
	bash scripts/system-deps.sh --test

# Test files side by side: the suite mostly waits, so more workers than cores pay (README, "Tests").
TEST_WORKERS ?= 4

test: test-deps install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# ruff with the rules chosen in pyproject.toml, then mypy over bot/ and flyers/
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: system-deps install
	$(BIN)/python bench/tip_load.py --scenario all

clean:
	rm -rf $(VENV) .venv-lock .pytest_cache
