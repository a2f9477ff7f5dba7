# Two commands for a fresh machine with Python 3.11 and make:
#   make sandbox   install what is needed, then run the bot locally (no token) at http://127.0.0.1:8080
#   make test      install what is needed, then run the whole test suite (SQLite and PostgreSQL)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8080

.PHONY: sandbox test system-deps test-deps install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

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

test: test-deps install
	$(BIN)/pytest

bench: system-deps install
	$(BIN)/python bench/tip_load.py --scenario all

clean:
	rm -rf $(VENV) .pytest_cache
