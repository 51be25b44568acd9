# cinnflow: the two commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cinnflow-installed
CORES ?= all

.PHONY: setup run report test lint bench bench-events bench-flows dvc-yaml slurm-test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

## The main job on the default configuration, then the HTML report.
run: setup
	$(BIN)/snakemake --profile workflow/profiles/default --cores $(CORES)
	$(BIN)/snakemake --report results/report.html
	@echo "report: results/report.html; metrics: $(BIN)/dvc metrics show"

report: setup
	$(BIN)/snakemake --report results/report.html

## The test suite, including a tiny end-to-end snakemake run.
test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests workflow/scripts benchmarks
	$(BIN)/snakemake --lint

## Benchmarks (not tests): the event chain and the cINN against FrEIA.
bench: bench-events bench-flows

## Event chain throughput (events/s per core, Pythia alone as the peer).
bench-events: setup
	$(BIN)/python benchmarks/bench_events.py --n-events 5000

# The FrEIA peer runs in its own venv: torch 2.13.0 is the CPU build on local disk
# (a plain `torch` would pull several GB of CUDA).
FREIA_VENV := .venv-freia
FREIA_STAMP := $(FREIA_VENV)/.freia-installed

$(FREIA_STAMP):
	$(PYTHON) -m venv $(FREIA_VENV)
	$(FREIA_VENV)/bin/pip install --quiet torch==2.13.0 freia==0.2 numpy
	touch $(FREIA_STAMP)

## cINN training, log-likelihood and sampling against FrEIA 0.2 (about 10 min on
## 2 cores): benchmarks/results/flows.md and flows.json.
bench-flows: setup $(FREIA_STAMP)
	$(BIN)/python benchmarks/bench_flows.py --freia-python $(FREIA_VENV)/bin/python

## Regenerate dvc.yaml from the Snakemake workflow (a test fails when they drift).
dvc-yaml: setup
	$(BIN)/python -m cinnflow.dvc_export --output dvc.yaml

## The tiny workflow on a real one-node SLURM cluster on this machine (root; installs
## slurm-wlm, munge, slurmdbd and mariadb-server, starts and stops the daemons).
slurm-test: setup
	$(BIN)/python -m pip install --quiet -e '.[slurm]'
	bash workflow/slurm/run_local_cluster.sh

clean:
	rm -rf results logs .snakemake
