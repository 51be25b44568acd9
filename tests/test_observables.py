"""Tests of cinnflow.physics: derived observables, labels and the posterior reader."""

import numpy as np
import pytest

from cinnflow.errors import ConfigError, InputFileError
from cinnflow.physics import (
    DEFAULT_DEFINITIONS,
    all_observables,
    derived_observables,
    load_posterior,
    observable_kinds,
    observable_label,
    observable_unit,
)

NAMES = [f"{o}_{c}" for o in ("q1", "q2", "l1", "l2") for c in ("pt", "eta", "phi")]
KINDS = [c for _ in range(4) for c in ("pt", "eta", "phi")]


def _random_columns(rng, shape):
    x = rng.normal(size=(*shape, 12))
    x[..., 0::3] = rng.uniform(10.0, 100.0, size=(*shape, 4))
    x[..., 1::3] *= 1.5
    x[..., 2::3] = rng.uniform(-np.pi, np.pi, size=(*shape, 4))
    return x


def test_back_to_back_pair():
    # q1 and q2 back to back at eta = 0: m = 2 pt, zero pair pt, |dphi| = pi.
    x = np.zeros((1, 12))
    x[0, [0, 3, 6, 9]] = 40.0
    x[0, 5] = np.pi - 1e-12
    definitions = {
        **DEFAULT_DEFINITIONS,
        "y_qq": {"kind": "rapidity", "of": ["q1", "q2"]},
        "dr_qq": {"kind": "dr", "of": ["q1", "q2"]},
    }
    result = derived_observables(x, NAMES, definitions)
    assert result["m_qq"][0] == pytest.approx(80.0, rel=1e-9)
    assert result["pt_W"][0] == pytest.approx(0.0, abs=1e-9)
    assert abs(result["dphi_qq"][0]) == pytest.approx(np.pi, rel=1e-9)
    assert result["dr_qq"][0] == pytest.approx(np.pi, rel=1e-9)
    assert result["y_qq"][0] == pytest.approx(0.0, abs=1e-12)
    # l1 and l2 are collinear: zero mass, pt = 80.
    assert result["m_ll"][0] == pytest.approx(0.0, abs=1e-6)
    assert result["pt_Z"][0] == pytest.approx(80.0, rel=1e-9)


def test_against_closed_formulas():
    rng = np.random.default_rng(1)
    x = _random_columns(rng, (50,))
    definitions = {
        "m": {"kind": "mass", "of": ["q1", "q2"]},
        "pt": {"kind": "pt", "of": ["q1", "q2"]},
        "y": {"kind": "rapidity", "of": ["q1", "q2"]},
        "dphi": {"kind": "dphi", "of": ["q1", "q2"]},
        "dr": {"kind": "dr", "of": ["q1", "q2"]},
    }
    result = derived_observables(x, NAMES, definitions)
    pt1, eta1, phi1, pt2, eta2, phi2 = (x[:, i] for i in range(6))
    dphi = np.angle(np.exp(1j * (phi1 - phi2)))
    mass = np.sqrt(2 * pt1 * pt2 * (np.cosh(eta1 - eta2) - np.cos(dphi)))
    px = pt1 * np.cos(phi1) + pt2 * np.cos(phi2)
    py = pt1 * np.sin(phi1) + pt2 * np.sin(phi2)
    pz = pt1 * np.sinh(eta1) + pt2 * np.sinh(eta2)
    energy = pt1 * np.cosh(eta1) + pt2 * np.cosh(eta2)
    np.testing.assert_allclose(result["m"], mass, rtol=1e-8)
    np.testing.assert_allclose(result["pt"], np.hypot(px, py), rtol=1e-8)
    np.testing.assert_allclose(
        result["y"], 0.5 * np.log((energy + pz) / (energy - pz)), rtol=1e-7, atol=1e-9
    )
    np.testing.assert_allclose(result["dphi"], dphi, atol=1e-12)
    np.testing.assert_allclose(result["dr"], np.hypot(eta1 - eta2, dphi), atol=1e-12)
    assert np.all((result["dphi"] >= -np.pi) & (result["dphi"] < np.pi))


def test_draw_shape_matches_flattened_events():
    rng = np.random.default_rng(2)
    draws = _random_columns(rng, (6, 5)).astype(np.float32)
    batched = derived_observables(draws, NAMES, DEFAULT_DEFINITIONS)
    flat = derived_observables(draws.reshape(30, 12), NAMES, DEFAULT_DEFINITIONS)
    for name, values in batched.items():
        assert values.shape == (6, 5), name
        assert values.dtype == np.float64, name
        np.testing.assert_allclose(values.reshape(30), flat[name], rtol=1e-12)


def test_mass_column_is_used():
    names = ["j1_pt", "j1_eta", "j1_phi", "j1_m", "j2_pt", "j2_eta", "j2_phi", "j2_m"]
    x = np.array([[30.0, 0.0, 0.0, 10.0, 30.0, 0.0, np.pi / 2, 10.0]])
    m = derived_observables(x, names, {"m_jj": {"kind": "mass", "of": ["j1", "j2"]}})
    e = np.hypot(30.0, 10.0)
    assert m["m_jj"][0] == pytest.approx(np.sqrt(4 * e**2 - 2 * 30.0**2), rel=1e-9)


def test_all_observables_order_and_views():
    x = _random_columns(np.random.default_rng(3), (4,))
    result = all_observables(x, NAMES, DEFAULT_DEFINITIONS)
    assert list(result) == NAMES + list(DEFAULT_DEFINITIONS)
    np.testing.assert_array_equal(result["l2_phi"], x[:, 11])
    assert list(all_observables(x, NAMES)) == NAMES


@pytest.mark.parametrize(
    ("definitions", "expected"),
    [
        ({"a": {"kind": "massive", "of": ["q1", "q2"]}}, "valid kinds are"),
        ({"a": {"kind": "mass", "of": ["q1", "b7"]}}, "valid objects"),
        ({"a": {"kind": "dphi", "of": ["q1"]}}, "exactly 2 objects"),
        ({"a": {"kind": "mass", "of": "q1"}}, "non-empty list"),
        ({"a": {"kind": "mass", "of": ["q1"], "colour": 1}}, "unknown keys"),
        ({"q1_pt": {"kind": "pt", "of": ["q1"]}}, "same name as a column"),
        ([("a", "mass")], "must be a mapping"),
    ],
)
def test_invalid_definitions(definitions, expected):
    x = np.zeros((2, 12))
    with pytest.raises(ConfigError, match=expected):
        derived_observables(x, NAMES, definitions)


def test_unknown_object_lists_valid_ones():
    with pytest.raises(ConfigError) as info:
        derived_observables(
            np.zeros((1, 12)), NAMES, {"a": {"kind": "pt", "of": ["z"]}}
        )
    assert "['l1', 'l2', 'q1', 'q2']" in str(info.value)


def test_shape_mismatch():
    with pytest.raises(ConfigError, match=r"expected shape \(\.\.\., 12\)"):
        derived_observables(np.zeros((3, 11)), NAMES, DEFAULT_DEFINITIONS)


def test_labels_units_kinds():
    assert observable_label("q1_pt") == "$p_{T}^{q_{1}}$ [GeV]"
    assert observable_label("l1_eta") == r"$\eta^{\ell^{-}}$"
    assert observable_label("m_ll", DEFAULT_DEFINITIONS) == (
        r"$m_{\ell^{-} \ell^{+}}$ [GeV]"
    )
    assert observable_label("m_qq", DEFAULT_DEFINITIONS, with_unit=False) == (
        "$m_{q_{1} q_{2}}$"
    )
    custom = {"x": {"kind": "dphi", "of": ["q1", "q2"], "label": "$X$"}}
    assert observable_label("x", custom) == "$X$ [rad]"
    assert observable_unit("l2_phi") == "rad"
    assert observable_unit("dphi_qq", DEFAULT_DEFINITIONS) == "rad"
    assert observable_unit("q2_eta") == ""
    kinds = observable_kinds(NAMES, KINDS, DEFAULT_DEFINITIONS)
    assert kinds["q1_phi"] == "phi"
    assert kinds["m_qq"] == "mass"


def test_load_posterior(tmp_path):
    rng = np.random.default_rng(4)
    x = _random_columns(rng, (3,)).astype(np.float32)
    draws = _random_columns(rng, (3, 4)).astype(np.float32)
    path = tmp_path / "posterior.npz"
    np.savez(
        path,
        x_parton=x,
        draws=draws,
        parton_names=np.array(NAMES),
        parton_kinds=np.array(KINDS),
    )
    posterior = load_posterior(path)
    assert (posterior.n_events, posterior.n_draws) == (3, 4)
    truth, sampled = posterior.observables(DEFAULT_DEFINITIONS)
    assert truth["m_qq"].shape == (3,)
    assert sampled["m_qq"].shape == (3, 4)
    assert posterior.c_detector is None

    np.savez(path, x_parton=x, parton_names=np.array(NAMES))
    with pytest.raises(InputFileError, match="lacks the key 'draws'"):
        load_posterior(path)
    np.savez(path, x_parton=x, draws=draws[:, :, :5], parton_names=np.array(NAMES))
    with pytest.raises(InputFileError, match="'draws' has shape"):
        load_posterior(path)
    draws[1, 2, 3] = np.nan
    np.savez(path, x_parton=x, draws=draws, parton_names=np.array(NAMES))
    posterior = load_posterior(path)
    assert posterior.n_events == 2
    np.testing.assert_array_equal(posterior.x_parton, x[[0, 2]])
    with pytest.raises(InputFileError, match="missing.npz' does not exist"):
        load_posterior(tmp_path / "missing.npz")
