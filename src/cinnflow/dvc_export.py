"""Derive ``dvc.yaml`` from the Snakemake workflow, so there is one graph, not two.

Snakemake owns the DAG. This module asks Snakemake for every job of the full
DAG with its rule, inputs and outputs (``snakemake --dry-run --forceall``), groups the
jobs by rule and writes one DVC stage per rule whose command runs that rule alone
through Snakemake (``python -m cinnflow.dvc_stage``, which decides whether to force
it), with the rule's inputs as DVC dependencies, its outputs as DVC outputs and the
configuration keys it reads as DVC params. Every output is ``persist: true``: DVC
never deletes finished Snakemake work before a stage runs. The metrics JSON files
are DVC metrics and the CSV curves DVC plots.

Run ``make dvc-yaml`` after changing a rule; ``tests/test_workflow.py`` fails when
``dvc.yaml`` differs from what this module derives.
"""

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from cinnflow.io.atomic import atomic_path

__all__ = ["GRID_RULES", "STAGE_PARAMS", "derive_stages", "parse_jobs", "render"]

#: Configuration keys each rule reads (DVC params from config/config.yaml).
STAGE_PARAMS = {
    "simulate": ["seed", "process", "events"],
    "prepare": ["seed", "process", "preparation"],
    "train": ["seed", "model", "training", "ensemble"],
    "train_grid": ["seed", "model", "training", "ensemble"],
    "select_grid": ["ensemble"],
    "plot_training": [],
    "plot_events": [],
    "sample": ["seed", "sampling", "ensemble", "training"],
    "calibrate": ["seed", "process", "evaluation"],
    "closure": [
        "seed",
        "process",
        "evaluation.n_bootstrap",
        "evaluation.ibu_iterations",
    ],
    "prior_dependence": [
        "seed",
        "process",
        "evaluation.n_bootstrap",
        "evaluation.ibu_iterations",
        "evaluation.prior",
    ],
    "simulate_injection": ["seed", "events", "evaluation.injection"],
    "prepare_injection": ["evaluation.injection"],
    "mix_injection": ["seed", "evaluation.injection"],
    "sample_injection": ["seed", "sampling", "ensemble"],
    "injection": [
        "seed",
        "process",
        "evaluation.n_bootstrap",
        "evaluation.ibu_iterations",
        "evaluation.injection",
    ],
    "summarize": ["evaluation.bars", "evaluation.validation_bars"],
    "provenance": [
        "seed",
        "process",
        "events",
        "preparation",
        "model",
        "training",
        "ensemble",
        "sampling",
        "evaluation",
    ],
}

#: Rules that run only with a hyperparameter grid (ensemble.grid).
GRID_RULES = ("train_grid", "select_grid")

#: Outputs shown by `dvc metrics` / `dvc plots`. They stay in the DVC cache like the
#: rest (results/ is not in git), so `dvc pull` restores them and `dvc metrics diff`
#: reads the committed ones through dvc.lock.
METRICS = ("results/metrics/",)
#: Loss curves: every training's loss CSV (one per member, and per grid point).
LOSS_PLOT = {"x": "epoch", "y": ["train_loss", "val_loss"]}
_LOSS_CSV = re.compile(r"results/training/(.+/)?loss_\d+\.csv")
PLOTS = {
    "results/plots/calibration_curves.csv": {"x": "nominal"},
    "results/plots/calibration_slices.csv": {
        "x": "slice",
        "y": ["calibration_error", "coverage_68", "coverage_95"],
    },
    "results/plots/closure_histograms.csv": {
        "x": "bin_low",
        "y": ["truth", "unfolded", "ibu"],
    },
}

#: Code each stage depends on besides its inputs (rules, scripts and the package).
CODE_DEPS = ["Snakefile", "workflow/rules", "workflow/scripts", "src/cinnflow"]


def _dry_run(snakemake, configfile):
    """Jobs of the full DAG as dicts with ``rule``, ``input`` and ``output`` lists."""
    command = [snakemake, "--dry-run", "--forceall", "--cores", "1", "all"]
    if configfile:
        command += ["--configfile", str(configfile)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}"
        raise RuntimeError(msg)
    return parse_jobs(result.stdout + result.stderr)


def parse_jobs(text):
    """Parse the job blocks that ``snakemake --dry-run`` prints."""
    jobs, job = [], None
    for line in text.splitlines():
        header = re.fullmatch(r"(?:local)?rule (\w+):", line.strip())
        if header and not line.startswith(" "):
            job = {"rule": header.group(1), "input": [], "output": []}
            jobs.append(job)
            continue
        entry = re.fullmatch(r"    (input|output): (.*)", line)
        if job is not None and entry:
            job[entry.group(1)] = [f.strip() for f in entry.group(2).split(",")]
    return [job for job in jobs if job["rule"] != "all"]


def _topological_order(by_rule):
    """Rule names with every producer before its consumers, ties sorted by name."""
    producer = {out: rule for rule, stage in by_rule.items() for out in stage["outs"]}
    needs = {
        rule: {producer[d] for d in stage["deps"] if d in producer} - {rule}
        for rule, stage in by_rule.items()
    }
    order = []
    while needs:
        ready = sorted(rule for rule, before in needs.items() if not before)
        if not ready:
            msg = f"the rules {sorted(needs)} depend on each other in a cycle"
            raise ValueError(msg)
        order += ready
        for rule in ready:
            del needs[rule]
        for before in needs.values():
            before.difference_update(ready)
    return order


def derive_stages(jobs):
    """Group the jobs of the DAG by rule into DVC stages.

    Args:
        jobs: dicts with ``rule`` and the ``input`` and ``output`` file lists of each
            job, as :func:`parse_jobs` returns them.

    Returns:
        dict: stage name to its DVC definition, in DAG order (producers first,
        ties by rule name, so the file does not depend on which outputs exist).
    """
    by_rule = {}
    for job in jobs:
        stage = by_rule.setdefault(job["rule"], {"outs": [], "deps": []})
        stage["outs"] += [f for f in job["output"] if f not in stage["outs"]]
        stage["deps"] += [f for f in job["input"] if f not in stage["deps"]]
    unknown = sorted(set(by_rule) - set(STAGE_PARAMS))
    if unknown:
        msg = f"rules {unknown} have no entry in STAGE_PARAMS of {__name__}"
        raise KeyError(msg)

    stages = {}
    for rule in _topological_order(by_rule):
        stage = by_rule[rule]
        outs = sorted(stage["outs"])
        dvc_outs = [{out: {"persist": True}} for out in outs]
        # DVC runs cmd through a shell: every path is quoted (a no-op for plain ones).
        definition = {
            "cmd": (
                f"python -m cinnflow.dvc_stage {shlex.quote(rule)} {shlex.join(outs)}"
            ),
            "deps": sorted(stage["deps"]) + CODE_DEPS,
        }
        if STAGE_PARAMS[rule]:
            definition["params"] = [{"config/config.yaml": STAGE_PARAMS[rule]}]
        definition["outs"] = dvc_outs
        stages[rule] = definition
    return stages


def render(stages):
    """The text of ``dvc.yaml`` for the given stages.

    The metrics are the outputs under ``METRICS``; the plots are the loss CSVs of
    every training (``LOSS_PLOT``) and those of ``PLOTS`` that a stage writes.
    """
    outs = sorted(
        {next(iter(out)) for stage in stages.values() for out in stage["outs"]}
    )
    plots = [{path: LOSS_PLOT} for path in outs if _LOSS_CSV.fullmatch(path)]
    plots += [{path: spec} for path, spec in PLOTS.items() if path in outs]
    document = {
        "stages": stages,
        "metrics": [path for path in outs if path.startswith(METRICS)],
        "plots": plots,
    }
    header = (
        "# Generated by `make dvc-yaml` (python -m cinnflow.dvc_export) from the\n"
        "# Snakemake workflow. Do not edit by hand: tests/test_workflow.py fails when\n"
        "# this file and the workflow drift apart.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, width=88)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="-", help="dvc.yaml path, or - for stdout")
    parser.add_argument("--configfile", default=None)
    args = parser.parse_args(argv)
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    text = render(derive_stages(_dry_run(snakemake, args.configfile)))
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with atomic_path(args.output) as tmp:
            tmp.write_text(text)


if __name__ == "__main__":
    main()
