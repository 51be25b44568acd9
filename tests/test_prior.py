"""Tests of cinnflow.closure.prior: reweighted closure on synthetic posteriors."""

import json

import numpy as np
import pytest
from scipy import stats

from cinnflow.closure.baseline import ibu_unfold
from cinnflow.closure.metrics import bin_index
from cinnflow.closure.prior import (
    ibu_comparison,
    prior_closure,
    prior_weights,
    run_prior,
)
from cinnflow.errors import ConfigError

N_EVENTS = 20000
N_DRAWS = 40
PRIOR_MEAN, PRIOR_SIGMA = 150.0, 40.0
RESOLUTION = 30.0
EXPONENT = 2.0
EDGES = np.linspace(60.0, 260.0, 21)


def _sample(rng):
    """Truth from the training prior, detector level smeared, training posterior."""
    x = rng.normal(PRIOR_MEAN, PRIOR_SIGMA, N_EVENTS)
    c = x + rng.normal(0.0, RESOLUTION, N_EVENTS)
    var = 1.0 / (1.0 / PRIOR_SIGMA**2 + 1.0 / RESOLUTION**2)
    mean = var * (PRIOR_MEAN / PRIOR_SIGMA**2 + c / RESOLUTION**2)
    return x, mean, np.sqrt(var)


def _closure(x, draws, weights, seed=3):
    return prior_closure(
        {"x": x},
        {"x": draws},
        {"x": EDGES},
        weights,
        reweight_observable="x",
        n_bootstrap=30,
        rng=np.random.default_rng(seed),
    )


def test_prior_weights():
    values = np.array([0.0, 100.0, 300.0])
    w = prior_weights(values, exponent=1.5, scale=100.0)
    assert w.mean() == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx(2.0**1.5)
    assert w[2] / w[0] == pytest.approx(4.0**1.5)
    assert np.all(prior_weights(values, exponent=0.0) == 1.0)
    with pytest.raises(ConfigError, match="expected x > -100"):
        prior_weights(np.array([-150.0, 10.0]), exponent=1.0)
    with pytest.raises(ConfigError, match="scale"):
        prior_weights(values, exponent=1.0, scale=0.0)


def test_posterior_of_the_reweighted_prior_closes():
    """Draws from the conditional of the reweighted prior: no bias, chi2/ndf ~ 1."""
    rng = np.random.default_rng(11)
    x, mean, sigma = _sample(rng)
    weights = prior_weights(x, exponent=EXPONENT)
    # p_rw(x | c) ~ p_train(x | c) f(x): importance resampling of candidates.
    n_candidates = 8 * N_DRAWS
    candidates = mean[:, None] + sigma * rng.normal(size=(N_EVENTS, n_candidates))
    factor = (1.0 + candidates / 100.0) ** EXPONENT
    cumulative = np.cumsum(factor, axis=1)
    u = rng.uniform(size=(N_EVENTS, N_DRAWS)) * cumulative[:, -1:]
    pick = np.array([np.searchsorted(c, v) for c, v in zip(cumulative, u, strict=True)])
    draws = np.take_along_axis(candidates, pick, axis=1)

    weighted = _closure(x, draws, weights)["weighted"]["x"]
    assert weighted["chi2_ndf"] < 2.0
    assert abs(weighted["bias_median"]) < 0.02
    assert abs(weighted["bias_tail"]) < 0.04
    assert abs(weighted["bias_tail_integrated"]) < 0.02
    assert len(weighted["tail_bins"]) >= 3


def test_posterior_ignoring_the_condition_shows_the_prior_bias():
    """Draws from the training prior: bias p_train(b) / p_rw(b) - 1 per bin."""
    rng = np.random.default_rng(12)
    x, _, _ = _sample(rng)
    weights = prior_weights(x, exponent=EXPONENT)
    draws = rng.normal(PRIOR_MEAN, PRIOR_SIGMA, (N_EVENTS, N_DRAWS))

    result = _closure(x, draws, weights)
    weighted = result["weighted"]["x"]
    p_train = np.diff(stats.norm.cdf(EDGES, PRIOR_MEAN, PRIOR_SIGMA))
    expected = p_train * weights.sum() / np.asarray(weighted["truth"]) - 1.0
    bias = np.array([np.nan if b is None else b for b in weighted["bias"]])
    used = np.isfinite(bias)
    assert np.count_nonzero(used) >= 10
    # The truth weights rise with x: the unfolded tail falls short, the bulk below
    # the mean is overestimated, by the amount the prior ratio predicts.
    np.testing.assert_allclose(bias[used], expected[used], atol=0.03)
    assert weighted["bias_tail"] < -0.25
    first = np.searchsorted(EDGES[:-1], result["tail_low_edge"])
    p_tail = stats.norm.cdf(EDGES[-1], PRIOR_MEAN, PRIOR_SIGMA) - stats.norm.cdf(
        EDGES[first], PRIOR_MEAN, PRIOR_SIGMA
    )
    t_tail = np.sum(weighted["truth"][first:])
    assert weighted["bias_tail_integrated"] == pytest.approx(
        p_tail * weights.sum() / t_tail - 1.0, abs=0.02
    )
    assert bias[used][0] > 0.3
    assert weighted["chi2_ndf"] > 20.0
    # Unweighted, the same draws close (the training prior is the truth's).
    unweighted = result["unweighted"]["x"]
    assert abs(unweighted["bias_tail"]) < 0.05
    assert unweighted["chi2_ndf"] < 2.5


def test_training_posterior_bias_lies_in_between():
    """The training conditional (the cINN's target): a smaller bias, same sign."""
    rng = np.random.default_rng(13)
    x, mean, sigma = _sample(rng)
    weights = prior_weights(x, exponent=EXPONENT)
    draws = mean[:, None] + sigma * rng.normal(size=(N_EVENTS, N_DRAWS))
    ignoring = rng.normal(PRIOR_MEAN, PRIOR_SIGMA, (N_EVENTS, N_DRAWS))

    tail = _closure(x, draws, weights)["weighted"]["x"]["bias_tail"]
    tail_ignoring = _closure(x, ignoring, weights)["weighted"]["x"]["bias_tail"]
    assert tail_ignoring < tail < -0.05


def test_prior_closure_rejects_unknown_observable():
    with pytest.raises(ConfigError, match="'pt_W' is not among"):
        prior_closure(
            {"x": np.zeros(3)},
            {"x": np.zeros((3, 2))},
            {"x": EDGES},
            np.ones(3),
            reweight_observable="pt_W",
            n_bootstrap=2,
            rng=np.random.default_rng(0),
        )


def test_run_prior(tmp_path):
    rng = np.random.default_rng(5)
    n, k = 3000, 20
    names = [f"{o}_{c}" for o in ("q1", "q2", "l1", "l2") for c in ("pt", "eta", "phi")]
    kinds = [c for _ in range(4) for c in ("pt", "eta", "phi")]
    centre = np.empty((n, 12))
    centre[:, 0::3] = 20.0 + rng.exponential(50.0, (n, 4))
    centre[:, 1::3] = rng.normal(0.0, 1.5, (n, 4))
    centre[:, 2::3] = rng.uniform(-np.pi, np.pi, (n, 4))
    scale = np.where(np.array(kinds) == "pt", 0.02 * centre, 0.01)
    x = centre + scale * rng.normal(size=centre.shape)
    draws = centre[:, None] + scale[:, None] * rng.normal(size=(n, k, 12))
    path = tmp_path / "posterior.npz"
    np.savez(
        path,
        x_parton=x.astype(np.float32),
        draws=draws.astype(np.float32),
        parton_names=np.array(names),
        parton_kinds=np.array(kinds),
    )
    metrics_path = tmp_path / "metrics" / "prior.json"
    plots_dir = tmp_path / "plots" / "prior"
    derived = {"pt_W": {"kind": "pt", "of": ["q1", "q2"]}}
    metrics = run_prior(
        path,
        metrics_path=metrics_path,
        plots_dir=plots_dir,
        derived=derived,
        exponent=1.0,
        n_bootstrap=10,
        seed=1,
    )
    assert json.loads(metrics_path.read_text())["n_events"] == n
    assert sorted(p.name for p in plots_dir.iterdir()) == [
        "prior_pt_W.png",
        "prior_q1_pt.png",
    ]
    assert set(metrics["chi2_ndf"]) == {*names, "pt_W"}
    assert (
        1.0
        < metrics["reweighting"]["weight_max"] / metrics["reweighting"]["weight_min"]
    )
    assert metrics["reweighting"]["effective_events"] < n
    assert metrics["bias_tail_shift"] == pytest.approx(
        metrics["bias_tail"] - metrics["unweighted"]["bias_tail"]
    )
    # A narrow posterior barely depends on the prior: small bias after reweighting.
    assert abs(metrics["bias_median"]["pt_W"]) < 0.03
    assert abs(metrics["bias_median"]["q1_eta"]) < 0.03
    # The reweighting hardens the spectrum: the weighted truth holds a larger share
    # in the last bin than the unweighted one.
    bins = metrics["bins"]["pt_W"]
    share = {
        sample: bins[sample]["truth"][-1] / np.sum(bins[sample]["truth"])
        for sample in ("weighted", "unweighted")
    }
    assert share["weighted"] > 1.3 * share["unweighted"]
    with pytest.raises(ConfigError, match="'m_zz'"):
        run_prior(
            path,
            metrics_path=metrics_path,
            plots_dir=plots_dir,
            derived=derived,
            plots=("m_zz",),
            n_bootstrap=2,
        )


def _ibu_under_reweighting(train_x, train_c, test_x, test_c, weights):
    """IBU of the weighted test detector level, the weighted truth, the comparison."""
    result = ibu_unfold(
        train_x,
        train_c,
        test_c,
        parton_edges=EDGES,
        detector_edges=EDGES,
        n_iterations=4,
        test_weights=weights,
    )
    truth = np.bincount(
        bin_index(test_x, EDGES), weights=weights, minlength=EDGES.size + 1
    )
    used = truth[1:-1] > 0.01 * weights.sum()
    return result, truth, ibu_comparison(result, truth, np.ones_like(truth), used)


def test_ibu_under_reweighting_perfect_detector_gives_the_weighted_truth():
    """Detector = parton: IBU returns the weighted data histogram, bias zero."""
    rng = np.random.default_rng(31)
    train = rng.normal(PRIOR_MEAN, PRIOR_SIGMA, N_EVENTS)
    test = rng.normal(PRIOR_MEAN, PRIOR_SIGMA, N_EVENTS // 2)
    weights = prior_weights(test, exponent=EXPONENT)
    result, truth, comparison = _ibu_under_reweighting(
        train, train, test, test, weights
    )
    np.testing.assert_allclose(result.unfolded, truth, rtol=1e-9, atol=1e-9)
    assert comparison["bias_median"] == pytest.approx(0.0, abs=1e-9)
    assert comparison["bias_max_abs"] == pytest.approx(0.0, abs=1e-9)
    assert result.unfolded.sum() == pytest.approx(weights.sum())


def test_ibu_under_reweighting_blind_detector_returns_the_training_prior():
    """Detector level independent of the parton level: IBU returns its start prior."""
    rng = np.random.default_rng(32)
    train = rng.normal(PRIOR_MEAN, PRIOR_SIGMA, N_EVENTS)
    test = rng.normal(PRIOR_MEAN, PRIOR_SIGMA, N_EVENTS // 2)
    weights = prior_weights(test, exponent=EXPONENT)
    # Every event in one detector bin: a response with identical columns.
    blind_train = np.full(train.size, PRIOR_MEAN)
    blind_test = np.full(test.size, PRIOR_MEAN)
    result, truth, comparison = _ibu_under_reweighting(
        train, blind_train, test, blind_test, weights
    )
    prior = np.bincount(bin_index(train, EDGES), minlength=EDGES.size + 1)
    expected = prior / prior.sum() * weights.sum()
    np.testing.assert_allclose(result.unfolded, expected, rtol=1e-9)
    # The known bias: p_train(b) / p_rw(b) - 1, negative in the reweighted tail.
    bias = np.array([np.nan if b is None else b for b in comparison["bias"]])
    used = np.isfinite(bias)
    np.testing.assert_allclose(bias[used], expected[1:-1][used] / truth[1:-1][used] - 1)
    assert bias[used][-1] < -0.3
