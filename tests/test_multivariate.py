"""Joint calibration (energy-score ranks) and calibration in detector-level slices."""

import numpy as np
import pytest

from cinnflow.calibration import (
    calibration_error,
    energy_prerank_quantiles,
    jet_multiplicity,
    leading_jet_pt,
    quantile_slices,
    sliced_calibration,
    standardise_posterior,
    truth_quantiles,
)
from cinnflow.errors import ConfigError

N_EVENTS = 2000
N_DRAWS = 100
DIM = 4
LEVELS = np.linspace(0.0, 1.0, 101)
RHO = 0.8


def _correlated_posterior(rng, *, draw_rho, n_events=N_EVENTS):
    """Per event N(mu, Sigma(RHO)); truth from it, draws from Sigma(draw_rho).

    Sigma(rho) has unit variances and correlation rho within the pairs (0, 1) and
    (2, 3): with ``draw_rho = -RHO`` every marginal is right, the correlations
    flipped.
    """

    def cholesky(rho):
        pair = np.linalg.cholesky(np.array([[1.0, rho], [rho, 1.0]]))
        block = np.zeros((DIM, DIM))
        block[:2, :2] = block[2:, 2:] = pair
        return block

    mu = rng.normal(0.0, 3.0, size=(n_events, DIM))
    truth = mu + rng.normal(size=(n_events, DIM)) @ cholesky(RHO).T
    noise = rng.normal(size=(n_events, N_DRAWS, DIM)) @ cholesky(draw_rho).T
    return truth, mu[:, None, :] + noise


def test_correct_posterior_passes_the_joint_check():
    rng = np.random.default_rng(21)
    truth, draws = _correlated_posterior(rng, draw_rho=RHO)
    u = energy_prerank_quantiles(truth, draws, rng=rng)
    assert u.shape == (N_EVENTS,)
    assert np.all((u >= 0) & (u < 1))
    assert calibration_error(u, LEVELS) < 0.03
    # Stored reference number (seed 21): fixed by the generator stream.
    assert calibration_error(u, LEVELS) == pytest.approx(0.0115, abs=5e-4)


def test_flipped_correlations_pass_marginals_and_fail_the_joint_check():
    rng = np.random.default_rng(22)
    truth, draws = _correlated_posterior(rng, draw_rho=-RHO)
    for column in range(DIM):
        u = truth_quantiles(truth[:, column], draws[:, :, column], rng=rng)
        assert calibration_error(u, LEVELS) < 0.04, column
    joint = energy_prerank_quantiles(truth, draws, rng=rng)
    # The truth lies off the draws' correlation axis: far from them, quantile ~ 1.
    assert calibration_error(joint, LEVELS) > 0.3
    assert calibration_error(joint, LEVELS) == pytest.approx(0.535, abs=5e-4)
    assert np.mean(joint) > 0.75


def test_too_wide_posterior_gives_low_quantiles():
    rng = np.random.default_rng(23)
    truth, draws = _correlated_posterior(rng, draw_rho=RHO)
    mean = draws.mean(axis=1, keepdims=True)
    wide = mean + 2.0 * (draws - mean)
    joint = energy_prerank_quantiles(truth, wide, rng=rng)
    assert np.mean(joint) < 0.3


def test_phi_columns_are_rotated_across_the_seam():
    rng = np.random.default_rng(24)
    centre = np.full(500, np.pi - 0.01)
    draws = centre[:, None] + 0.1 * rng.normal(size=(500, 50))
    truth = centre + 0.1 * rng.normal(size=500)
    wrap = lambda a: (a + np.pi) % (2 * np.pi) - np.pi  # noqa: E731
    pool = standardise_posterior(
        wrap(truth)[:, None], wrap(draws)[:, :, None], kinds=["phi"]
    )
    assert pool.shape == (500, 51, 1)
    # Rotated by the circular mean, the seam is gone: every pool has unit spread
    # (not ~ pi / 0.1), and the truth is a typical member.
    np.testing.assert_allclose(np.std(pool, axis=1, ddof=1), 1.0, atol=1e-6)
    assert np.std(pool[:, 0, 0]) == pytest.approx(1.0, abs=0.1)


def test_whitening_gives_unit_covariance():
    rng = np.random.default_rng(27)
    truth, draws = _correlated_posterior(rng, draw_rho=RHO, n_events=50)
    pool = standardise_posterior(truth, draws)
    covariance = np.einsum("ekd,ekf->edf", pool, pool) / (pool.shape[1] - 1)
    np.testing.assert_allclose(
        covariance, np.broadcast_to(np.eye(DIM), covariance.shape), atol=1e-6
    )


def test_joint_check_rejects_bad_shapes():
    with pytest.raises(ConfigError, match="do not match"):
        energy_prerank_quantiles(
            np.zeros((3, 2)), np.zeros((3, 5, 4)), rng=np.random.default_rng(0)
        )
    with pytest.raises(ConfigError, match="at least 2 draws"):
        energy_prerank_quantiles(
            np.zeros((3, 2)), np.zeros((3, 1, 2)), rng=np.random.default_rng(0)
        )


def test_leading_jet_pt_and_multiplicity():
    names = ["j1_pt", "j1_eta", "j2_pt", "j2_eta"]
    c = np.array([[50.0, 0.1, 30.0, 0.2], [40.0, 0.0, 0.0, 0.0], [20.0, 1, 60.0, 1]])
    np.testing.assert_allclose(leading_jet_pt(c, names, ["j1", "j2"]), [50, 40, 60])
    np.testing.assert_array_equal(jet_multiplicity(c, names, ["j1", "j2"]), [2, 1, 2])
    counted = np.column_stack([c, [3, 1, 2]])
    np.testing.assert_array_equal(
        jet_multiplicity(counted, [*names, "n_jets"], ["j1", "j2"]), [3, 1, 2]
    )
    with pytest.raises(ConfigError, match="no jet pt column"):
        leading_jet_pt(c, names, ["b1"])


def test_quantile_slices_are_equally_populated():
    values = np.random.default_rng(25).exponential(50.0, size=1000)
    index, edges = quantile_slices(values, 4)
    assert np.bincount(index).tolist() == [250, 250, 250, 250]
    assert edges.size == 5
    with pytest.raises(ConfigError, match="positive integer"):
        quantile_slices(values, 0)


def test_sliced_calibration_finds_the_miscalibrated_slice():
    rng = np.random.default_rng(26)
    mu = rng.normal(size=2000)
    truth = mu + rng.normal(size=2000)
    width = np.where(np.arange(2000) < 1000, 1.0, 0.5)  # second half too narrow
    draws = mu[:, None] + width[:, None] * rng.normal(size=(2000, N_DRAWS))
    index = (np.arange(2000) >= 1000).astype(int)
    result = sliced_calibration(
        {"x": truth},
        {"x": draws},
        slice_index=index,
        slice_labels={0: "low", 1: "high", 2: "empty"},
        levels=LEVELS,
        rng=rng,
    )
    assert set(result) == {"low", "high"}
    assert result["low"]["n_events"] == 1000
    assert result["low"]["calibration_error"]["x"] < 0.05
    assert result["high"]["calibration_error"]["x"] > 0.1
    assert result["high"]["coverage_68"]["x"] == pytest.approx(0.38, abs=0.05)
