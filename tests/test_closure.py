"""Tests of cinnflow.closure: histograms, chi2, deviations and the mass-peak finder."""

import csv
import json

import numpy as np
import pytest
import vector

from cinnflow.closure import (
    PEAK_TARGETS,
    automatic_edges,
    bin_index,
    bootstrap_replicas,
    closure_chi2,
    closure_histograms,
    ibu_unfold,
    median_abs_deviation,
    peak_position,
    run_closure,
)
from cinnflow.errors import ConfigError
from cinnflow.physics import DEFAULT_DEFINITIONS

N_EVENTS = 4000
N_DRAWS = 50
NAMES = [f"{o}_{c}" for o in ("q1", "q2", "l1", "l2") for c in ("pt", "eta", "phi")]
KINDS = [c for _ in range(4) for c in ("pt", "eta", "phi")]


def _breit_wigner_masses(rng, n, mass, width, half_range=30.0):
    """Relativistic Breit-Wigner masses: m**2 is Cauchy(mass**2, mass * width)."""
    limits = np.arctan(
        ((mass + np.array([-half_range, half_range])) ** 2 - mass**2) / (mass * width)
    )
    return np.sqrt(mass**2 + mass * width * np.tan(rng.uniform(*limits, size=n)))


def _decays(rng, n, mass, width):
    """Two massless daughters of isotropic decays of boosted Breit-Wigner parents."""
    m = _breit_wigner_masses(rng, n, mass, width)
    pt = rng.exponential(40.0, n)
    y = rng.normal(0.0, 1.2, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    mt = np.hypot(pt, m)
    parent = vector.array(
        {
            "px": pt * np.cos(phi),
            "py": pt * np.sin(phi),
            "pz": mt * np.sinh(y),
            "E": mt * np.cosh(y),
        }
    )
    cos = rng.uniform(-1.0, 1.0, n)
    sin = np.sqrt(1.0 - cos**2)
    azimuth = rng.uniform(-np.pi, np.pi, n)
    p = 0.5 * m
    px, py, pz = p * sin * np.cos(azimuth), p * sin * np.sin(azimuth), p * cos
    first = vector.array({"px": px, "py": py, "pz": pz, "E": p}).boost_p4(parent)
    second = vector.array({"px": -px, "py": -py, "pz": -pz, "E": p}).boost_p4(parent)
    return first, second


def _zw_posterior(rng, n_events, n_draws):
    """Calibrated Gaussian posteriors around ZW -> (q q)(l l) parton-level events."""
    columns = []
    for mass, width in ((80.4, 2.09), (91.19, 2.50)):
        for daughter in _decays(rng, n_events, mass, width):
            columns += [daughter.pt, daughter.eta, daughter.phi]
    centre = np.stack(columns, axis=-1)
    scale = np.where(np.array(KINDS) == "pt", 0.02 * centre, 0.01)
    x = centre + scale * rng.normal(size=centre.shape)
    draws = centre[:, None] + scale[:, None] * rng.normal(size=(n_events, n_draws, 12))
    for array in (x, draws):
        array[..., 2::3] = (array[..., 2::3] + np.pi) % (2 * np.pi) - np.pi
    return x.astype(np.float32), draws.astype(np.float32)


def _gaussian_posterior(rng, *, shift=0.0):
    mu = rng.normal(0.0, 2.0, size=N_EVENTS)
    truth = mu + rng.normal(size=N_EVENTS)
    draws = mu[:, None] + shift + rng.normal(size=(N_EVENTS, N_DRAWS))
    return truth, draws


def test_variances_against_explicit_loop():
    rng = np.random.default_rng(1)
    truth, draws = _gaussian_posterior(rng)
    truth, draws = truth[:30], draws[:30, :7]
    edges = np.linspace(-3.0, 3.0, 7)
    histograms = closure_histograms(truth, draws, edges, name="x")

    n_flow = edges.size + 1
    per_event = np.zeros((30, n_flow))
    in_truth = np.zeros((30, n_flow))
    for i in range(30):
        for value in draws[i]:
            per_event[i, np.searchsorted(edges, value, side="right")] += 1 / 7
        in_truth[i, np.searchsorted(edges, truth[i], side="right")] = 1.0
    np.testing.assert_allclose(
        histograms.unfolded.values(flow=True), per_event.sum(0), atol=1e-12
    )
    np.testing.assert_allclose(
        histograms.unfolded.variances(flow=True), (per_event**2).sum(0), atol=1e-12
    )
    np.testing.assert_array_equal(histograms.truth.values(flow=True), in_truth.sum(0))
    np.testing.assert_allclose(
        histograms.diff_variance, ((per_event - in_truth) ** 2).sum(0), atol=1e-12
    )
    assert histograms.unfolded.values(flow=True).sum() == pytest.approx(30.0)


def test_identical_distributions_close():
    rng = np.random.default_rng(2)
    truth, draws = _gaussian_posterior(rng)
    edges = automatic_edges(truth, "other")
    histograms = closure_histograms(truth, draws, edges, name="x")
    chi2_ndf, ndf, p_value = closure_chi2(
        histograms.unfolded.values(flow=True),
        histograms.truth.values(flow=True),
        histograms.diff_variance,
    )
    assert ndf == 42
    assert 0.6 < chi2_ndf < 1.5
    assert p_value > 0.01
    deviation = median_abs_deviation(
        histograms.unfolded.values(), histograms.truth.values(), n_events=N_EVENTS
    )
    assert deviation < 0.1


def test_shifted_distribution_fails():
    rng = np.random.default_rng(3)
    truth, draws = _gaussian_posterior(rng, shift=0.5)
    edges = automatic_edges(truth, "other")
    histograms = closure_histograms(truth, draws, edges, name="x")
    chi2_ndf, _, p_value = closure_chi2(
        histograms.unfolded.values(flow=True),
        histograms.truth.values(flow=True),
        histograms.diff_variance,
    )
    assert chi2_ndf > 5.0
    assert p_value < 1e-6


def test_reference_numbers():
    chi2_ndf, ndf, p_value = closure_chi2([10, 12, 5], [10, 10, 7], [4, 4, 0])
    assert (chi2_ndf, ndf) == (pytest.approx(0.5), 2)
    assert p_value == pytest.approx(np.exp(-0.5))
    assert np.isnan(closure_chi2([1], [1], [0])[0])
    deviation = median_abs_deviation([11, 9, 30, 0], [10, 10, 20, 1], n_events=200)
    # The last bin holds 1 event (< 1% of 200) and is left out: median(.1, .1, .5).
    assert deviation == pytest.approx(0.1)


def test_automatic_edges():
    rng = np.random.default_rng(4)
    values = rng.normal(size=10000)
    edges = automatic_edges(values, "eta", n_bins=20)
    assert edges.size == 21
    assert edges[0] == pytest.approx(np.quantile(values, 0.005))
    assert edges[-1] == pytest.approx(np.quantile(values, 0.995))
    np.testing.assert_allclose(automatic_edges(values, "phi")[[0, -1]], [-np.pi, np.pi])
    np.testing.assert_allclose(
        automatic_edges(values, "mass", name="m_qq")[[0, -1]], [65.4, 95.4]
    )
    np.testing.assert_allclose(
        automatic_edges(np.ones(5), "pt", n_bins=2), [0.5, 1.0, 1.5]
    )


@pytest.mark.parametrize(("name", "width"), [("m_qq", 2.09), ("m_ll", 2.50)])
def test_peak_of_breit_wigner(name, width):
    rng = np.random.default_rng(5)
    target = PEAK_TARGETS[name]
    masses = _breit_wigner_masses(rng, 30000, target, width)
    assert peak_position(masses, target=target) == pytest.approx(target, abs=0.2)
    # Off-centre window and weights: still the same peak.
    shifted = peak_position(
        masses + 3.0, target=target, weights=np.full(masses.size, 0.01)
    )
    assert shifted == pytest.approx(target + 3.0, abs=0.2)


def test_peak_of_smeared_breit_wigner():
    rng = np.random.default_rng(6)
    masses = _breit_wigner_masses(rng, 30000, 80.4, 2.09)
    smeared = masses[:, None] + rng.normal(0.0, 3.0, size=(30000, 20))
    assert peak_position(smeared, target=80.4) == pytest.approx(80.4, abs=0.2)
    assert np.isnan(peak_position(np.array([1.0, 2.0]), target=80.4))


def test_run_closure(tmp_path):
    rng = np.random.default_rng(7)
    x, draws = _zw_posterior(rng, N_EVENTS, N_DRAWS)
    detector_names = [
        f"{o}_{c}" for o in ("j1", "j2", "lm", "lp") for c in ("pt", "eta", "phi", "m")
    ]
    c_detector = np.zeros((N_EVENTS, 16), dtype=np.float32)
    for i in range(4):
        c_detector[:, 4 * i : 4 * i + 3] = x[:, 3 * i : 3 * i + 3]
    posterior = tmp_path / "posterior.npz"
    np.savez(
        posterior,
        x_parton=x,
        draws=draws,
        parton_names=np.array(NAMES),
        parton_kinds=np.array(KINDS),
        c_detector=c_detector,
        detector_names=np.array(detector_names),
    )
    metrics_path = tmp_path / "metrics" / "closure.json"
    histograms_csv = tmp_path / "plots" / "closure.csv"
    plots_dir = tmp_path / "plots" / "closure"

    # Training sample for the IBU response: independent events, same generator.
    x_train, _ = _zw_posterior(rng, N_EVENTS, 1)
    c_train = np.zeros((N_EVENTS, 16), dtype=np.float32)
    for i in range(4):
        c_train[:, 4 * i : 4 * i + 3] = x_train[:, 3 * i : 3 * i + 3]
    train = tmp_path / "train.npz"
    np.savez(
        train,
        x_parton=x_train,
        c_detector=c_train,
        parton_names=np.array(NAMES),
        parton_kinds=np.array(KINDS),
        detector_names=np.array(detector_names),
        detector_kinds=np.array(["pt", "eta", "phi", "mass"] * 4),
    )

    metrics = run_closure(
        posterior,
        metrics_path=metrics_path,
        histograms_csv=histograms_csv,
        plots_dir=plots_dir,
        derived=DEFAULT_DEFINITIONS,
        n_bins=30,
        train_path=train,
        n_bootstrap=40,
        seed=5,
    )

    written = json.loads(metrics_path.read_text())
    assert written == metrics
    assert set(written) == {
        "chi2_ndf",
        "p_value",
        "chi2_ndf_paired",
        "p_value_paired",
        "chi2_ndf_analytic",
        "p_value_analytic",
        "chi2_ndf_paired_analytic",
        "bootstrap_variance_ratio",
        "median_abs_deviation",
        "max_abs_deviation",
        "peak",
        "baseline",
        "n_events",
        "n_draws",
        "n_bootstrap",
    }
    assert written["n_bootstrap"] == 40
    for name in NAMES + list(DEFAULT_DEFINITIONS):
        # 40 replicas: a variance to sqrt(2 / 40) = 22%; the median over bins is
        # much closer to the exact (analytic) Poisson-bootstrap variance.
        assert 0.8 < written["bootstrap_variance_ratio"][name] < 1.2, name
        assert (
            written["max_abs_deviation"][name]
            >= (written["median_abs_deviation"][name])
        )
        # Detector level = parton level here: IBU of an identity response closes.
        assert written["baseline"]["chi2_ndf"][name] < 1.5, name
    observables = NAMES + list(DEFAULT_DEFINITIONS)
    assert list(written["chi2_ndf"]) == observables
    for name in observables:
        # Narrow posteriors of the same events: the unpaired chi2 (independent
        # uncertainties of both histograms) is far below 1, the paired one near 1.
        assert written["chi2_ndf"][name] < 1.0, name
        assert 0.4 < written["chi2_ndf_paired"][name] < 2.0, name
        assert written["chi2_ndf_analytic"][name] < 1.0, name
        assert written["chi2_ndf"][name] < written["chi2_ndf_paired"][name], name
        assert written["median_abs_deviation"][name] < 0.1, name
    assert set(written["peak"]) == {"m_qq", "m_ll"}
    for name, peak in written["peak"].items():
        assert peak["truth"] == pytest.approx(PEAK_TARGETS[name], abs=0.5), name
        assert abs(peak["shift"]) < 1.0, name
        assert peak["shift"] == pytest.approx(peak["unfolded"] - peak["truth"])

    with open(histograms_csv, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 30 * len(observables)
    assert {row["observable"] for row in rows} == set(observables)
    # Detector-level counterparts are matched by object position (q1 -> j1, ...).
    assert all(row["detector"] != "" for row in rows)
    m_qq = [row for row in rows if row["observable"] == "m_qq"]
    assert float(m_qq[0]["bin_low"]) == pytest.approx(65.4)

    pngs = sorted(p.name for p in plots_dir.iterdir())
    assert pngs == sorted(f"closure_{name}.png" for name in observables)


def test_run_closure_unknown_peak(tmp_path):
    rng = np.random.default_rng(8)
    x, draws = _zw_posterior(rng, 50, 4)
    posterior = tmp_path / "posterior.npz"
    np.savez(posterior, x_parton=x, draws=draws, parton_names=np.array(NAMES))
    # Peaks named explicitly must exist; the default ones (m_qq, m_ll) are kept
    # only where the process defines them, as for Z + jets without m_qq.
    with pytest.raises(ConfigError, match="m_qq"):
        run_closure(
            posterior,
            metrics_path=tmp_path / "m.json",
            histograms_csv=tmp_path / "h.csv",
            plots_dir=tmp_path / "plots",
            peaks={"m_qq": 80.4},
        )
    assert not (tmp_path / "m.json").exists()


def test_bootstrap_matches_the_analytic_variances():
    rng = np.random.default_rng(31)
    truth, draws = _gaussian_posterior(rng)
    edges = np.linspace(-6.0, 6.0, 13)
    analytic = closure_histograms(truth, draws, edges)
    replicas = bootstrap_replicas(
        {"x": bin_index(truth, edges)},
        {"x": bin_index(draws, edges)},
        {"x": edges.size + 1},
        n_replicas=200,
        rng=np.random.default_rng(32),
    )
    truth_rep, unfolded_rep = replicas["x"]
    assert truth_rep.shape == unfolded_rep.shape == (200, 14)
    # Every replica resamples events: its mean is the nominal histogram.
    np.testing.assert_allclose(
        truth_rep.mean(axis=0), analytic.truth.values(flow=True), rtol=0.05, atol=3
    )
    ratio = (
        np.var(unfolded_rep, axis=0, ddof=1)[3:-3]
        / (analytic.unfolded.variances(flow=True)[3:-3])
    )
    # The draw resampling adds the Monte Carlo variance of the n_draws = 50 draws:
    # about 10% on top of the analytic (event-only) variance here.
    assert np.median(ratio) == pytest.approx(1.0, abs=0.15)
    assert np.median(ratio) == pytest.approx(1.1129, abs=1e-3)
    paired = np.var(unfolded_rep - truth_rep, axis=0, ddof=1)[3:-3]
    assert np.median(paired / analytic.diff_variance[3:-3]) == pytest.approx(
        1.0, abs=0.2
    )
    with pytest.raises(ConfigError, match="n_replicas"):
        bootstrap_replicas({}, {}, {}, n_replicas=1, rng=rng)


def test_ibu_unfolds_a_smeared_spectrum():
    rng = np.random.default_rng(33)
    edges = np.linspace(0.0, 10.0, 21)

    def sample(n, slope):
        parton = rng.exponential(slope, n)
        return parton, parton + rng.normal(0.0, 0.6, n)

    train_parton, train_detector = sample(200_000, 3.0)
    test_parton, test_detector = sample(20_000, 3.0)
    result = ibu_unfold(
        train_parton,
        train_detector,
        test_detector,
        parton_edges=edges,
        detector_edges=edges,
    )
    truth = np.bincount(bin_index(test_parton, edges), minlength=22)
    detector = np.bincount(bin_index(test_detector, edges), minlength=22)
    assert result.n_iterations == 4
    assert result.unfolded.sum() == pytest.approx(20_000, rel=1e-6)
    chi2_ibu, _, _ = closure_chi2(result.unfolded, truth, truth + result.variance)
    chi2_detector, _, _ = closure_chi2(detector, truth, 2.0 * truth)
    assert chi2_ibu < 2.0
    assert chi2_detector > 5.0 * chi2_ibu
    with pytest.raises(ConfigError, match="n_iterations"):
        ibu_unfold(
            train_parton,
            train_detector,
            test_detector,
            parton_edges=edges,
            detector_edges=edges,
            n_iterations=0,
        )
