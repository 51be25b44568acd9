# cinnflow: the two commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cinnflow-installed
CORES ?= all

.PHONY: setup run report test lint bench dvc-yaml slurm-test clean

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

bench: setup
	$(BIN)/python benchmarks/bench_events.py

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
