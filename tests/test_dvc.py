"""DVC on top of Snakemake: repro, no-op, experiments, push/pull, no lost work.

The end-to-end test builds a fresh git + DVC project from a copy of the workflow
whose config/config.yaml is the tiny test configuration, with dvc.yaml derived for
it by cinnflow.dvc_export, and drives the real `dvc` and `snakemake` commands.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cinnflow.dvc_stage import outputs_as_recorded, snakemake_command

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _env(project):
    env = dict(os.environ)
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        # The project's own copy of the package is the code DVC hashes and runs.
        PYTHONPATH=str(project / "src"),
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="cinnflow test",
        GIT_AUTHOR_EMAIL="test@cinnflow.invalid",
        GIT_COMMITTER_NAME="cinnflow test",
        GIT_COMMITTER_EMAIL="test@cinnflow.invalid",
    )
    return env


def _run(command, cwd, project=None):
    result = subprocess.run(
        command,
        cwd=cwd,
        env=_env(project or cwd),
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output[-5000:]}"
    return output


def _stages_run(output):
    return {
        line.split("'")[1]
        for line in output.splitlines()
        if line.startswith("Running stage '")
    }


def _make_project(target):
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("Snakefile", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, target / name)
    for name in ("workflow", "config", "tests/configs", "src/cinnflow"):
        shutil.copytree(ROOT / name, target / name, ignore=ignore)
    shutil.copy(ROOT / "tests/configs/tiny.yaml", target / "config/config.yaml")
    _run(["git", "init", "-q"], target)
    _run(["dvc", "init", "-q"], target)
    _run([sys.executable, "-m", "cinnflow.dvc_export", "--output", "dvc.yaml"], target)
    _run(["git", "add", "-A"], target)
    _run(["git", "commit", "-qm", "tiny project"], target)


def test_dvc_yaml_persists_every_output_and_runs_rules_through_dvc_stage():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert stage["cmd"].startswith(f"python -m cinnflow.dvc_stage {name} ")
        for out in stage["outs"]:
            assert next(iter(out.values())) == {"persist": True}, (name, out)


def test_no_rule_or_script_calls_dvc():
    """DVC takes a repository-wide lock: jobs running in parallel must not call it."""
    for path in [*ROOT.glob("workflow/rules/*.smk"), *ROOT.glob("workflow/scripts/*")]:
        text = path.read_text()
        assert "dvc " not in text and '"dvc"' not in text, path


def test_stage_is_forced_only_when_its_recorded_outputs_are_untouched(tmp_path):
    out = tmp_path / "results/metrics/x.json"
    out.parent.mkdir(parents=True)
    out.write_text("{}")
    lock = tmp_path / "dvc.lock"
    assert not outputs_as_recorded("calibrate", lock)  # no dvc.lock yet
    entry = {
        "path": "results/metrics/x.json",
        "md5": "99914b932bd37a50b983c5e7c90ae93b",
    }
    folder = {"path": "results/plots/calibration", "md5": "abc.dir"}
    lock.write_text(
        yaml.safe_dump({"stages": {"calibrate": {"outs": [entry, folder]}}})
    )
    assert outputs_as_recorded("calibrate", lock)  # md5 of "{}"
    assert not outputs_as_recorded("closure", lock)  # stage not recorded
    out.write_text('{"new": 1}')  # Snakemake rewrote it since DVC recorded it
    assert not outputs_as_recorded("calibrate", lock)
    out.unlink()
    assert not outputs_as_recorded("calibrate", lock)

    forced = snakemake_command("train", ["results/models/0"], force=True, cores=2)
    assert forced == [
        "snakemake",
        "--cores",
        "2",
        "--rerun-incomplete",
        "--allowed-rules",
        "train",
        "--forcerun",
        "train",
        "--",
        "results/models/0",
    ]
    assert "--forcerun" not in snakemake_command("train", ["m"], force=False)


@pytest.mark.slow
def test_repro_experiment_push_pull_on_the_tiny_config(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    _make_project(project)

    # From a fresh copy, dvc repro runs the whole chain (one Snakemake run per rule).
    output = _run(["dvc", "repro"], project)
    stages = set(yaml.safe_load((project / "dvc.yaml").read_text())["stages"])
    assert _stages_run(output) == stages
    first = json.loads((project / "results/metrics/calibration.json").read_text())
    assert 0 <= first["calibration_error"]["q1_pt"] <= 1
    _run(["git", "add", "dvc.lock"], project)
    _run(["git", "commit", "-qm", "tiny results"], project)

    # A second dvc repro does nothing.
    output = _run(["dvc", "repro"], project)
    assert _stages_run(output) == set() and "up to date" in output

    # Work Snakemake finished before DVC recorded it is kept, not redone.
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    del lock["stages"]["summarize"]
    (project / "dvc.lock").write_text(yaml.safe_dump(lock))
    # (The rule's log is no DVC output: DVC re-links its outputs, not the log.)
    log = project / "logs/summarize.log"
    stamp = log.stat().st_mtime_ns
    output = _run(["dvc", "repro"], project)
    assert _stages_run(output) == {"summarize"}
    assert "Nothing to be done" in output and log.stat().st_mtime_ns == stamp
    _run(["git", "checkout", "dvc.lock"], project)

    # Push to a local directory remote, pull into another clone.
    remote = tmp_path / "remote"
    _run(["dvc", "remote", "add", "-d", "local", str(remote)], project)
    _run(["git", "commit", "-qam", "remote"], project)
    _run(["dvc", "push"], project)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    _run(["dvc", "pull"], clone)
    pulled = json.loads((clone / "results/metrics/calibration.json").read_text())
    assert pulled == first
    # DVC does not keep timestamps: snakemake --touch orders them along the DAG,
    # after which Snakemake has nothing to re-run.
    _run([str(BIN / "snakemake"), "--touch", "--cores", "1"], clone)
    dry = _run([str(BIN / "snakemake"), "--dry-run", "--cores", "1"], clone)
    assert "Nothing to be done" in dry
    assert "up to date" in _run(["dvc", "status"], clone)

    # An experiment on one training key re-runs training and what follows only. The
    # learning rate changes the weights of every epoch; a longer training need not,
    # because the tiny run may keep the weights of its best (first) epoch.
    output = _run(
        ["dvc", "exp", "run", "-S", "config/config.yaml:training.learning_rate=0.003"],
        project,
    )
    upstream = {"simulate", "prepare", "plot_events"}
    # The injected events do not depend on the training either.
    upstream |= {"simulate_injection", "prepare_injection", "mix_injection"}
    assert _stages_run(output) == stages - upstream
    params = json.loads(_run(["dvc", "params", "diff", "--json"], project))
    change = params["config/config.yaml"]["training.learning_rate"]
    assert (change["old"], change["new"]) == (0.001, 0.003)
    metrics = json.loads(_run(["dvc", "metrics", "diff", "--json"], project))
    changes = metrics["results/metrics/calibration.json"]
    assert any(change["diff"] != 0 for change in changes.values())
    loss = (project / "results/training/loss_0.csv").read_text().splitlines()
    assert len(loss) == 1 + 2  # a fresh 2-epoch training, not a resumed one
