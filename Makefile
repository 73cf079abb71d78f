# Two commands do all set-up: `make app` (install, then serve on 127.0.0.1:7860) and
# `make test` (install with the test extras and Debian packages, then run the tests).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: app test install install-dev system-deps bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

system-deps:
	bash scripts/install-system-deps.sh

app: $(VENV)/.installed
	$(PY) app.py

# Two pytest-xdist workers, a test file each at a time (its module fixtures made once), one torch thread
# each: on 2 cores the suite took 775 s against 1135 s in one process (see docs/layout.md).
TEST_WORKERS ?= 2

test: $(VENV)/.installed-dev system-deps
	HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False OMP_NUM_THREADS=1 \
	  $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: $(VENV)/.installed
	$(PY) -m forensics bench --model vit-small --repeats 10

clean:
	rm -rf $(VENV) forensics_out .pytest_cache
