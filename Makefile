# The two commands of the README: `make demo` and `make test`.
# Everything else here is what they need; each step is idempotent.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test install system-tools lock services-stop bench clean

$(STAMP): pyproject.toml requirements/dev.txt requirements/torch.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	# --system-site-packages: a machine that already has torch (e.g. a CUDA build) keeps it.
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	# torch and torchvision as the locked pair, unless the machine has a pair of its own
	$(PY) -c 'import torch, torchvision' 2>/dev/null || $(PY) -m pip install --quiet -r requirements/torch.txt
	# everything else from the lock file, then this project and the test suite's own job package
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps -e . -e tests/jobpackage
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m tracker.dev.launcher demo $(DEMO_ARGS)

# The browser tests drive Debian's chromium; the deployment test validates docker-compose.yml
# with Docker's compose plugin or Debian's docker-compose; the report tests read a PDF's pages
# with poppler's pdftoppm. Install what is missing (as root).
system-tools:
	@missing=""; \
	test -x $(CHROMIUM) || command -v chromium >/dev/null || missing="$$missing chromium"; \
	docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v pdftoppm >/dev/null || missing="$$missing poppler-utils"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's$$missing for the tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "The tests need$$missing: run 'sudo apt-get install$$missing' (or set CHROMIUM=/path/to/chromium)"; \
	    exit 1; \
	  fi; \
	fi

test: $(STAMP) system-tools
	TRAINWATCH_CHROMIUM=$$(test -x $(CHROMIUM) && echo $(CHROMIUM) || command -v chromium) \
	  $(PY) -m tracker.dev.launcher test -- $(PYTEST_ARGS)

# each script prints its figures and ends with one name=value line
bench: $(STAMP) system-tools
	$(PY) -m tracker.dev.launcher run -- $(PY) manage.py migrate --no-input -v 0
	$(PY) -m tracker.dev.launcher run -- $(PY) bench/ingest.py
	$(PY) -m tracker.dev.launcher run -- $(PY) bench/latency.py
	$(PY) -m tracker.dev.launcher run -- $(PY) bench/client.py
	$(PY) bench/overhead.py
	$(PY) bench/diagnosis.py
	TRAINWATCH_CHROMIUM=$$(test -x $(CHROMIUM) && echo $(CHROMIUM) || command -v chromium) \
	  $(PY) -m tracker.dev.launcher run -- $(PY) bench/query.py
	$(PY) -m tracker.dev.launcher run -- $(PY) bench/lists.py

# Resolve each dependency group of pyproject.toml into requirements/<group>.txt (Python 3.11,
# Linux x86_64). The dev lock holds the project's own dependencies and its integrations extra
# too; torch, torchvision and their CUDA libraries are left to requirements/torch.txt.
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28
lock:
	$(UV_COMPILE) --group pyproject.toml:web -o requirements/web.txt
	$(UV_COMPILE) --group pyproject.toml:worker --constraint requirements/torch.txt -o requirements/worker.txt
	$(UV_COMPILE) --no-annotate pyproject.toml --extra integrations --group pyproject.toml:dev \
	  --constraint requirements/torch.txt | grep -vP '^(torch==|torchvision==|triton==|cuda-|nvidia-(?!ml-py))' \
	  > requirements/dev.txt

services-stop: $(STAMP)
	$(PY) -m tracker.dev.services stop

clean: services-stop
	rm -rf $(VENV) .trainwatch
