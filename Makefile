# The two commands of the README: `make demo` and `make test`.
# Everything else here is what they need; each step is idempotent.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test install chromium services-stop bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	# --system-site-packages: a machine that already has torch (e.g. a CUDA build) keeps it.
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	# torchvision's compiled operators need the torch they were built for: install the two as a pair
	$(PY) -c 'import torch, torchvision' 2>/dev/null || $(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[server,integrations,dev]'
	# the test suite's own job package (two entry points of the group trainwatch.jobs)
	$(PY) -m pip install --quiet -e tests/jobpackage
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m tracker.dev.launcher demo $(DEMO_ARGS)

# The browser tests drive Debian's chromium package; install it when missing.
chromium:
	@test -x $(CHROMIUM) || command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "The browser tests need Chromium: run 'sudo apt-get install chromium', or set CHROMIUM=/path/to/chromium"; \
	    exit 1; \
	  fi; }

test: $(STAMP) chromium
	TRAINWATCH_CHROMIUM=$$(test -x $(CHROMIUM) && echo $(CHROMIUM) || command -v chromium) \
	  $(PY) -m tracker.dev.launcher test -- $(PYTEST_ARGS)

# each script prints its figures and ends with one name=value line
bench: $(STAMP) chromium
	$(PY) -m tracker.dev.launcher run -- $(PY) manage.py migrate --no-input -v 0
	$(PY) -m tracker.dev.launcher run -- $(PY) bench/ingest.py
	$(PY) -m tracker.dev.launcher run -- $(PY) bench/latency.py
	$(PY) -m tracker.dev.launcher run -- $(PY) bench/client.py
	$(PY) bench/overhead.py
	$(PY) bench/diagnosis.py
	TRAINWATCH_CHROMIUM=$$(test -x $(CHROMIUM) && echo $(CHROMIUM) || command -v chromium) \
	  $(PY) -m tracker.dev.launcher run -- $(PY) bench/query.py
	$(PY) -m tracker.dev.launcher run -- $(PY) bench/lists.py

services-stop: $(STAMP)
	$(PY) -m tracker.dev.services stop

clean: services-stop
	rm -rf $(VENV) .trainwatch
