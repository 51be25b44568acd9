"""The Snakemake workflow: lint, dvc.yaml derived from it, a tiny run of every rule."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from cinnflow.dvc_export import STAGE_PARAMS, derive_stages, render

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")


def _copy_workflow(target):
    for name in ("Snakefile", "workflow", "config", "tests/configs"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target / name)


def _run(args, cwd):
    return subprocess.run(
        [SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_snakemake_lint_is_clean():
    result = _run(["--lint"], ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dvc_yaml_is_derived_from_the_workflow():
    """dvc.yaml must be what `make dvc-yaml` derives from the Snakemake DAG."""
    result = subprocess.run(
        [sys.executable, "-m", "cinnflow.dvc_export", "--output", "-"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    committed = (ROOT / "dvc.yaml").read_text()
    assert result.stdout == committed, "dvc.yaml drifted: run `make dvc-yaml`"
    stages = yaml.safe_load(committed)["stages"]
    assert set(stages) == set(STAGE_PARAMS)
    assert "results/prepared/train.npz" in stages["train"]["deps"]


def test_derive_stages_rejects_a_rule_without_params():
    jobs = [{"rule": "new_rule", "input": [], "output": ["x"]}]
    with pytest.raises(KeyError, match="new_rule"):
        derive_stages(jobs)
    assert "stages:" in render({})


@pytest.mark.slow
def test_tiny_run_passes_through_every_rule(tmp_path):
    _copy_workflow(tmp_path)
    result = _run(
        ["all", "--cores", "2", "--configfile", "tests/configs/tiny.yaml"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-5000:]
    for rule in STAGE_PARAMS:
        assert f"rule {rule}:" in result.stderr, f"rule {rule} did not run"

    posterior = np.load(tmp_path / "results/posterior/test.npz", allow_pickle=False)
    assert posterior["draws"].shape == (20, 20, 12)
    assert np.isfinite(posterior["draws"]).all()
    calibration = json.loads(
        (tmp_path / "results/metrics/calibration.json").read_text()
    )
    assert set(calibration["calibration_error"]) >= {"q1_pt", "l2_phi", "m_qq"}
    assert all(0 <= v <= 1 for v in calibration["calibration_error"].values())
    provenance = json.loads((tmp_path / "results/prepared/provenance.json").read_text())
    assert provenance["split_seed"] == 7
    assert sum(provenance["split_sizes"].values()) == provenance["n_selected"]

    report = _run(
        ["--report", "report.html", "--configfile", "tests/configs/tiny.yaml"], tmp_path
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert (tmp_path / "report.html").stat().st_size > 10_000
