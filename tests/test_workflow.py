"""The Snakemake workflow: lint, dvc.yaml derived from it, a tiny run of every rule."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import vector
import yaml
from conftest import REAL_DATA  # noqa: E402

from cinnflow.dvc_export import (
    GRID_RULES,
    STAGE_PARAMS,
    derive_stages,
    parse_jobs,
    render,
)
from cinnflow.io.delphes import read_delphes

ZJETS_LHE = REAL_DATA / "lhe_pp_Zjets_mlm_mg5_10000ev.lhe.gz"

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
    # The default config has no grid: the grid rules are not in its DAG.
    assert set(stages) == set(STAGE_PARAMS) - set(GRID_RULES)
    assert "results/prepared/train.npz" in stages["train"]["deps"]
    assert stages["train"]["outs"] == [
        {"results/models/0": {"persist": True}},
        {"results/training/loss_0.csv": {"persist": True}},
    ]


def test_grid_fans_out_one_training_per_point_and_member(tmp_path):
    """Issue 6: a 2-point grid with 2 seed members is 2 x 2 training jobs."""
    grid = {"members": 2, "grid": {"learning_rate": [1.0e-3, 3.0e-4]}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({"ensemble": grid}))
    result = _run(
        [
            "--dry-run",
            "--forceall",
            "--cores",
            "1",
            "--configfile",
            str(ROOT / "tests/configs/tiny.yaml"),
            str(tmp_path / "grid.yaml"),
        ],
        ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = parse_jobs(result.stdout + result.stderr)
    trainings = sorted(job["output"][0] for job in jobs if job["rule"] == "train_grid")
    points = ("learning_rate=0.0003", "learning_rate=0.001")
    assert trainings == [f"results/models/{p}/{m}" for p in points for m in (0, 1)]
    assert not [job for job in jobs if job["rule"] == "train"]
    (sample,) = [job for job in jobs if job["rule"] == "sample"]
    assert "results/metrics/grid.json" in sample["input"]
    assert set(trainings) < set(sample["input"])
    (select,) = [job for job in jobs if job["rule"] == "select_grid"]
    assert len(select["input"]) == 4 and select["output"] == [
        "results/metrics/grid.json"
    ]

    # The DVC export of the same DAG: one stage for the grid, the metric, 4 curves.
    text = render(derive_stages(jobs))
    document = yaml.safe_load(text)
    assert set(document["stages"]) == set(STAGE_PARAMS) - {"train"}
    assert "results/metrics/grid.json" in document["metrics"]
    curves = [next(iter(plot)) for plot in document["plots"]]
    assert sum(path.startswith("results/training/") for path in curves) == 4


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
    # Pythia's banner and tables go to the rule's log, not the terminal.
    assert "PYTHIA" not in result.stdout + result.stderr
    assert "PYTHIA" in (tmp_path / "logs/simulate/chunk_0.log").read_text()
    for rule in set(STAGE_PARAMS) - set(GRID_RULES):
        assert f"rule {rule}:" in result.stderr, f"rule {rule} did not run"
    # The training switched TensorFlow's op determinism on (training.deterministic).
    assert "op determinism on" in (tmp_path / "logs/train/0.log").read_text()

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


@pytest.mark.skipif(not ZJETS_LHE.is_file(), reason="real LHE files absent")
def test_lhe_input_runs_through_preparation(tmp_path):
    """The Z + jets example: two chunks shower disjoint halves of an LHE file."""
    _copy_workflow(tmp_path)
    config = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    config["process"] = "config/processes/zjets.yaml"
    # As in config/zjets.yaml: the main job's W frame needs two quarks.
    config.setdefault("model", {})["pair_frames"] = []
    config["events"].update(
        source="lhe", lhe_file=str(ZJETS_LHE), n_events=1000, n_chunks=2, isr=True
    )
    (tmp_path / "lhe.yaml").write_text(yaml.safe_dump(config))
    target = "results/prepared/provenance.json"
    result = _run([target, "--cores", "2", "--configfile", "lhe.yaml"], tmp_path)
    assert result.returncode == 0, result.stderr[-5000:]
    assert "PYTHIA" not in result.stdout + result.stderr
    log = (tmp_path / "logs/simulate/chunk_1.log").read_text()
    assert "Beams:nSkipLHEFatInit = 500" in log and "PYTHIA" in log

    numbers = []
    for chunk in range(2):
        path = tmp_path / f"results/events/chunk_{chunk}.root"
        events = read_delphes(path, collections={"Event": ["Number"]})["Event"]
        numbers.append(set(ak.flatten(events.Number).tolist()))
    # MLM matching vetoes about half; the rest keep their index in the LHE file.
    assert numbers[0] <= set(range(500)) and numbers[1] <= set(range(500, 1000))
    assert min(len(n) for n in numbers) > 150

    provenance = json.loads((tmp_path / "results/prepared/provenance.json").read_text())
    assert provenance["process"]["name"] == "zjets"
    assert provenance["n_selected"] >= 10
    train = np.load(tmp_path / "results/prepared/train.npz", allow_pickle=False)
    assert train["parton_names"][:3].tolist() == ["q1_pt", "q1_eta", "q1_phi"]
    assert train["detector_names"].tolist()[:4] == [
        "j1_pt",
        "j1_eta",
        "j1_phi",
        "j1_mass",
    ]
    assert train["c_detector"].shape[1] == 12 and np.isfinite(train["x_parton"]).all()
    # The Z: opposite-sign same-flavour leptons near 91 GeV in most events.
    l1, l2 = train["c_detector"][:, 4:8], train["c_detector"][:, 8:12]
    assert np.median(_pair_mass(l1, l2)) == pytest.approx(91.0, abs=6.0)
    # The leading jet follows the hard parton, the detector leptons the parton ones.
    x = train["x_parton"]
    dphi = np.angle(np.exp(1j * (x[:, 2] - train["c_detector"][:, 2])))
    assert np.median(np.hypot(x[:, 1] - train["c_detector"][:, 1], dphi)) < 0.5
    assert np.median(l1[:, 0] / x[:, 3]) == pytest.approx(1.0, abs=0.1)


def _pair_mass(a, b):
    """Invariant mass of two (pt, eta, phi, m) column blocks."""
    va = vector.array({"pt": a[:, 0], "eta": a[:, 1], "phi": a[:, 2], "mass": a[:, 3]})
    vb = vector.array({"pt": b[:, 0], "eta": b[:, 1], "phi": b[:, 2], "mass": b[:, 3]})
    return (va + vb).mass


def test_cluster_profiles_give_grid_trainings_the_training_resources():
    """A grid point is the same training with other settings: same job size."""
    for name in ("slurm", "htcondor"):
        profile = yaml.safe_load(
            (ROOT / f"workflow/profiles/{name}/config.yaml").read_text()
        )
        resources = profile["set-resources"]
        assert resources["train_grid"] == resources["train"], name
        assert profile["set-threads"]["train_grid"] == profile["set-threads"]["train"]
