"""Tests of cinnflow.calibration against Gaussian posteriors and reference numbers."""

import csv
import json

import numpy as np
import pytest

from cinnflow.calibration import (
    binomial_band,
    calibration_curve,
    calibration_error,
    calibration_metrics,
    interval_coverage,
    run_calibration,
    truth_quantiles,
)
from cinnflow.errors import ConfigError, InputFileError
from cinnflow.physics import DEFAULT_DEFINITIONS

N_EVENTS = 2000
N_DRAWS = 100
LEVELS = np.linspace(0.0, 1.0, 101)
NAMES = [f"{o}_{c}" for o in ("q1", "q2", "l1", "l2") for c in ("pt", "eta", "phi")]
KINDS = [c for _ in range(4) for c in ("pt", "eta", "phi")]


def _gaussian_posterior(rng, *, width_factor=1.0, shift=0.0, n_events=N_EVENTS):
    """Posterior N(mu, 1) per event with truth drawn from it; draws rescaled."""
    mu = rng.normal(0.0, 3.0, size=n_events)
    truth = mu + rng.normal(size=n_events)
    draws = mu[:, None] + shift + width_factor * rng.normal(size=(n_events, N_DRAWS))
    return truth, draws


def test_calibrated_gaussian():
    rng = np.random.default_rng(11)
    truth, draws = _gaussian_posterior(rng)
    u = truth_quantiles(truth, draws, rng=rng)
    assert u.shape == (N_EVENTS,)
    assert np.all((u >= 0) & (u < 1))
    assert calibration_error(u, LEVELS) < 0.03
    assert interval_coverage(u, 0.68) == pytest.approx(0.68, abs=0.025)
    assert interval_coverage(u, 0.95) == pytest.approx(0.95, abs=0.012)


def test_too_narrow_gaussian():
    rng = np.random.default_rng(12)
    truth, draws = _gaussian_posterior(rng, width_factor=0.5)
    u = truth_quantiles(truth, draws, rng=rng)
    # Expected: max_z |Phi(z / 2) - Phi(z)| = 0.161 for a width factor 0.5.
    assert calibration_error(u, LEVELS) > 0.1
    assert interval_coverage(u, 0.68) == pytest.approx(0.38, abs=0.04)
    assert interval_coverage(u, 0.95) == pytest.approx(0.66, abs=0.04)


def test_too_wide_and_biased_gaussian():
    rng = np.random.default_rng(13)
    truth, draws = _gaussian_posterior(rng, width_factor=2.0)
    u = truth_quantiles(truth, draws, rng=rng)
    assert calibration_error(u, LEVELS) > 0.1
    assert interval_coverage(u, 0.68) > 0.9
    truth, draws = _gaussian_posterior(rng, shift=1.0)
    u = truth_quantiles(truth, draws, rng=rng)
    assert calibration_error(u, LEVELS) > 0.3


def test_ties_are_broken_at_random():
    # Every draw equals the truth: the quantile must still be uniform.
    truth = np.zeros(20000)
    draws = np.zeros((20000, 9))
    u = truth_quantiles(truth, draws, rng=np.random.default_rng(0))
    assert calibration_error(u, LEVELS) < 0.02


def test_quantiles_are_reproducible_and_exact():
    truth = np.array([0.5, 5.0, -1.0])
    draws = np.tile(np.arange(4.0), (3, 1))
    first = truth_quantiles(truth, draws, rng=np.random.default_rng(5))
    second = truth_quantiles(truth, draws, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(first, second)
    # 1, 4 and 0 draws below: u in [1/5, 2/5), [4/5, 1), [0, 1/5).
    np.testing.assert_array_equal(np.floor(first * 5), [1, 4, 0])


def test_reference_numbers():
    quantiles = np.array([0.1, 0.2, 0.3, 0.4])
    levels = np.array([0.0, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(calibration_curve(quantiles, levels), [0, 0.5, 1, 1])
    assert calibration_error(quantiles, levels) == pytest.approx(0.5)
    assert interval_coverage(np.array([0.1, 0.2, 0.5, 0.9]), 0.68) == 0.5
    low, high = binomial_band(np.array([0.0, 0.5, 1.0]), 100)
    np.testing.assert_allclose(low, [0.0, 0.40, 1.0])
    np.testing.assert_allclose(high, [0.0, 0.60, 1.0])


def test_invalid_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="do not match"):
        truth_quantiles(np.zeros(3), np.zeros((4, 2)), rng=rng)
    with pytest.raises(ConfigError, match=r"in \(0, 1\)"):
        interval_coverage(np.zeros(3), 1.5)


def test_calibration_metrics_max():
    rng = np.random.default_rng(14)
    good, good_draws = _gaussian_posterior(rng)
    bad, bad_draws = _gaussian_posterior(rng, width_factor=0.5)
    metrics, curves, quantiles = calibration_metrics(
        {"good": good, "bad": bad},
        {"good": good_draws, "bad": bad_draws},
        levels=LEVELS,
        rng=rng,
    )
    assert metrics["max_calibration_error"] == metrics["calibration_error"]["bad"]
    assert set(curves) == set(quantiles) == {"good", "bad"}


def _write_posterior(path, rng, *, width_factor=1.0):
    mu = rng.normal(size=(N_EVENTS, 1, 12))
    scale = np.where(np.array(KINDS) == "pt", 5.0, 0.2)
    offset = np.where(np.array(KINDS) == "pt", 40.0, 0.0)
    x = offset + scale * (mu[:, 0] + rng.normal(size=(N_EVENTS, 12)))
    draws = offset + scale * (
        mu + width_factor * rng.normal(size=(N_EVENTS, N_DRAWS, 12))
    )
    # Detector level: a function of mu (plus noise independent of the truth), so the
    # posterior N(mu, scale) stays calibrated in every detector-level slice.
    c_detector = (offset + scale * mu[:, 0])[:, :6] + rng.normal(size=(N_EVENTS, 6))
    np.savez(
        path,
        x_parton=x.astype(np.float32),
        draws=draws.astype(np.float32),
        parton_names=np.array(NAMES),
        parton_kinds=np.array(KINDS),
        c_detector=c_detector.astype(np.float32),
        detector_names=np.array([n.replace("q", "j") for n in NAMES[:6]]),
    )


def test_run_calibration(tmp_path):
    posterior = tmp_path / "posterior.npz"
    _write_posterior(posterior, np.random.default_rng(15))
    metrics_path = tmp_path / "metrics" / "calibration.json"
    curves_csv = tmp_path / "plots" / "calibration.csv"
    plots_dir = tmp_path / "plots" / "calibration"

    metrics = run_calibration(
        posterior,
        metrics_path=metrics_path,
        curves_csv=curves_csv,
        plots_dir=plots_dir,
        derived=DEFAULT_DEFINITIONS,
        n_levels=51,
        seed=3,
        slices_path=tmp_path / "metrics" / "slices.json",
        slices_csv=tmp_path / "plots" / "slices.csv",
        jets=["j1", "j2"],
        n_slices=4,
    )

    written = json.loads(metrics_path.read_text())
    assert written == metrics
    assert set(written) == {
        "calibration_error",
        "coverage_68",
        "coverage_95",
        "max_calibration_error",
        "multivariate",
        "n_events",
        "n_draws",
    }
    # Independent Gaussian columns drawn from the right posterior: jointly calibrated.
    assert written["multivariate"]["n_dimensions"] == 12
    assert written["multivariate"]["calibration_error"] < 0.04
    assert written["multivariate"]["ks_p_value"] > 0.01
    slices = json.loads((tmp_path / "metrics" / "slices.json").read_text())
    # Two jets in every event: one multiplicity, so only the leading-jet-pT slicing.
    assert list(slices) == ["leading_jet_pt"]
    assert [s["n_events"] for s in slices["leading_jet_pt"].values()] == [500] * 4
    for entry in slices["leading_jet_pt"].values():
        assert max(entry["calibration_error"].values()) < 0.09
    observables = NAMES + list(DEFAULT_DEFINITIONS)
    assert list(written["calibration_error"]) == observables
    assert (written["n_events"], written["n_draws"]) == (N_EVENTS, N_DRAWS)
    assert written["max_calibration_error"] < 0.05
    for name in observables:
        assert written["coverage_68"][name] == pytest.approx(0.68, abs=0.04), name
        assert written["coverage_95"][name] == pytest.approx(0.95, abs=0.02), name

    with open(curves_csv, newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["nominal", *observables, "energy_score"]
    assert len(rows) == 52
    assert float(rows[-1][0]) == 1.0

    pngs = sorted(p.name for p in plots_dir.iterdir())
    groups = ["derived", "joint", "l1", "l2", "q1", "q2"]
    assert pngs == sorted(
        [f"calibration_{g}.png" for g in groups]
        + [f"pit_{g}.png" for g in groups]
        + ["slices_leading_jet_pt.png"]
    )
    leftovers = [p for p in tmp_path.rglob(".*tmp*")]
    assert leftovers == []


def test_run_calibration_too_narrow(tmp_path):
    posterior = tmp_path / "posterior.npz"
    _write_posterior(posterior, np.random.default_rng(16), width_factor=0.5)
    metrics = run_calibration(
        posterior,
        metrics_path=tmp_path / "m.json",
        curves_csv=tmp_path / "c.csv",
        plots_dir=tmp_path / "plots",
    )
    assert min(metrics["calibration_error"].values()) > 0.1
    assert list(metrics["calibration_error"]) == NAMES


def test_run_calibration_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="n_levels"):
        run_calibration(
            tmp_path / "x.npz",
            metrics_path=tmp_path / "m.json",
            curves_csv=tmp_path / "c.csv",
            plots_dir=tmp_path / "plots",
            n_levels=2,
        )
    with pytest.raises(InputFileError):
        run_calibration(
            tmp_path / "x.npz",
            metrics_path=tmp_path / "m.json",
            curves_csv=tmp_path / "c.csv",
            plots_dir=tmp_path / "plots",
        )
    assert not (tmp_path / "m.json").exists()
