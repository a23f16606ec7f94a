# fer-data: `make run` runs the whole pipeline (demo data when raw/ is empty); `make test` tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
export FER_RAW_DIR ?= $(CURDIR)/raw
export FER_CURATED_DIR ?= $(CURDIR)/curated
UI_PORT ?= 3000

.PHONY: run test ui lint lock bench samples figures clean install worker

install: $(STAMP)

# `make run` installs what running needs; `make test` adds the test extras (browser driver, S3
# and Kubernetes clients, Celery + Redis client). facenet-pytorch 2.6.0 pins torch<2.3 and
# numpy<2 in its metadata but runs on current releases of both, so it goes in after the
# project, without its dependencies. constraints.txt pins every package to the versions the
# tests last passed with (a new OpenCV or NumPy release must not change a run's results);
# `make lock` rewrites it from this venv.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e .
	$(PY) -m pip install --quiet --no-deps facenet-pytorch==2.6.0
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(DEV_STAMP)

lock: $(DEV_STAMP)
	$(PY) -m pip freeze --exclude-editable > constraints.txt

run: $(STAMP)
	$(PY) -m fer_data.instance >/dev/null
	$(PY) -m fer_data.datasets demo $(FER_RAW_DIR) --if-empty
	$(PY) -m fer_data.run

test: $(DEV_STAMP)
	$(PY) -m pytest

ui: $(STAMP)
	$(PY) -m fer_data.instance >/dev/null
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(UI_PORT)

# a Celery worker for FER_EXECUTOR=celery runs (README "Past one machine"); QUEUES=gpu on a GPU box
worker: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[cluster]'
	$(PY) -m fer_data.worker --queues $(or $(QUEUES),dagster,gpu)

samples: $(STAMP)
	$(PY) -m fer_data.samples -n $(or $(N),32)

# FIGURES_FROM=/tmp/fer-real takes them from the real-data benches' run instead of `make run`'s
figures: $(STAMP)
	$(PY) -m fer_data.readme_figures assets $(if $(FIGURES_FROM),--work $(FIGURES_FROM))

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check fer_data stargan tests bench
	$(VENV)/bin/lint-imports --no-cache

bench: $(STAMP)
	for b in ingest frames faces dedup leaks stargan_speed judge synthetic rerun; do $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf $(DAGSTER_HOME)/storage $(DAGSTER_HOME)/history $(DAGSTER_HOME)/schedules
