# Two entry points: `make demo` (set up, then run the main job on the embedded default) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint chromium clean

# torch==2.13.0 goes in first: an unpinned torch would pull a multi-GB CUDA build on a CPU-only machine.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/supernet demo

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

# The browser test of `supernet report` opens the HTML in headless Chromium (Debian's `chromium` package): installed
# here when missing (as root, or with passwordless sudo); where it cannot be, that test skips and says why.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	  echo "installing chromium for the report's browser test (apt-get)"; \
	  { $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	    >/dev/null 2>&1 || echo "could not install chromium: the report's browser test will be skipped"; }

test: lint chromium
	$(PY) -m pytest -n 2 --durations=15 tests

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
