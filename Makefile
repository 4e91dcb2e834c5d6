# movierec: two commands for a newcomer, `make up` and `make test`.
# Everything lands in .venv/ (Python) and $MOVIEREC_HOME (state, default ./var).

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
CLASS_ARCHIVE := $(VENV)/spark-classes.jsa
# Debian's packages the monitoring stack and the dashboard test run (apt-get installs them as root)
SYSTEM_PACKAGES := prometheus prometheus-alertmanager prometheus-node-exporter chromium
SYSTEM_COMMANDS := prometheus promtool prometheus-alertmanager amtool prometheus-node-exporter chromium
DASHBOARD := monitoring/dashboard

.DEFAULT_GOAL := help
.PHONY: help install system-packages dashboard up down status kafka kafka-stop test lint format bench clean image rollout

help:
	@echo "make up      install and start the whole loop (Kafka, site simulator, Airflow, service); UP_ARGS=... for movierec up"
	@echo "make test    install and run the test suite (starts and stops its own Kafka)"
	@echo "make down    stop everything 'make up' started"
	@echo "make status  what is running"
	@echo "make lint    ruff check + format check"
	@echo "make bench   run the benchmarks in bench/ (on demand, slow)"
	@echo "make image   build the container images with podman (service, loadbalancer, pipeline; IMAGES=...)"
	@echo "make rollout IMAGE=localhost/movierec-service:<tag>  roll a service image over compose.yaml's replicas"

$(INSTALLED): requirements.txt constraints.txt pyproject.toml
	@command -v java >/dev/null || { echo "Java 17 is required (Spark and the Kafka broker run on it)"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is required (it fetches the Kafka broker from Maven Central)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
		|| { echo "Python 3.11 is required (found $(PYTHON))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# Prometheus, Alertmanager, node-exporter (monitoring) and Chromium (the dashboard's test), from Debian.
system-packages:
	@missing=""; for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing$$missing: apt-get install -y $(SYSTEM_PACKAGES)"; \
			apt-get update -o DPkg::Lock::Timeout=600 -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 $(SYSTEM_PACKAGES) >/dev/null; \
		else \
			echo "missing$$missing: run as root: apt-get install -y $(SYSTEM_PACKAGES)"; exit 1; \
		fi; \
	fi

# uPlot for the dashboard, from npm at the version package-lock.json pins
$(DASHBOARD)/node_modules/.installed: $(DASHBOARD)/package.json $(DASHBOARD)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is required (the dashboard's chart library comes from npm)"; exit 1; }
	npm ci --prefix $(DASHBOARD) --no-audit --no-fund --silent
	touch $@

dashboard: $(DASHBOARD)/node_modules/.installed

# The Spark driver's classes, archived once per install (JDK class data sharing: each Spark job
# starts ~3 s sooner); on local[*], with its scratch and log in the venv, not in the state folder.
$(CLASS_ARCHIVE): $(INSTALLED) spark_jobs/class_archive.py
	MOVIEREC_HOME=$(CURDIR)/$(VENV)/class-archive-home MOVIEREC_SPARK_MASTER='local[*]' $(BIN)/movierec spark classes

install: $(INSTALLED) $(CLASS_ARCHIVE) system-packages dashboard

# The whole loop: Kafka, the simulated site, Airflow, the service, a first backfill, ingest and
# retrain, then live viewers (see README). Idempotent: a second `make up` starts what is not running.
up: install
	$(BIN)/movierec up $(UP_ARGS)

# Everything `make up` started, the viewers first and Kafka last.
down:
	@if test -x $(BIN)/movierec; then $(BIN)/movierec down; else echo "nothing installed, nothing to stop"; fi

status: install
	@$(BIN)/movierec status

kafka: install
	$(BIN)/movierec kafka start

kafka-stop: down

# pytest exit code 5 means "no tests ran": that is a failure, not a pass.
test: install
	@$(BIN)/pytest --cov --cov-report=term --cov-report=xml --cov-report=html; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# Container images from a fresh machine (docs/architecture.md, "Containers"): podman and friends
# from Debian (as root), the Debian base image made by debootstrap (once), then each image of the
# Dockerfile, tagged with the commit and :latest. IMAGES picks targets; the pipeline is the big one.
IMAGES ?= service loadbalancer pipeline
image:
	containers/install-tools.sh
	containers/base-image.sh
	containers/build-images.sh $(IMAGES)

# A new service image across compose.yaml's replicas behind its HAProxy, one at a time, no request
# lost; ROLLOUT_ARGS="--canary 1 --weight 10" for a canary. STATE_DIR is compose.yaml's state folder.
STATE_DIR ?= var/compose
rollout: install
	@test -n "$(IMAGE)" || { echo "usage: make rollout IMAGE=localhost/movierec-service:<tag> [ROLLOUT_ARGS=...]"; exit 2; }
	$(BIN)/movierec rollout --socket $(STATE_DIR)/lb/haproxy.sock $(ROLLOUT_ARGS) $(IMAGE)

clean: down
	rm -rf var htmlcov coverage.xml .coverage .pytest_cache .ruff_cache
