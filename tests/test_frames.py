"""Rest-frame coordinates of resonance pairs (model.pair_frames)."""

import numpy as np
import pytest
import tensorflow as tf

from cinnflow.config import check_pair_frames
from cinnflow.errors import ConfigError
from cinnflow.flows import ConditionalINN
from cinnflow.flows.frames import PairFrame, frame_coordinates

NAMES = [f"{o}_{f}" for o in ("q1", "q2", "l1", "l2") for f in ("pt", "eta", "phi")]
KINDS = ["pt", "eta", "phi"] * 4
W_LINE = [80.385, 2.085]
SMALL = dict(n_blocks=2, subnet_hidden=[8], condition_hidden=[8], condition_dim=2)
# The W's quarks in a direction frame against the leptons, as in the main job.
DIRECTION_FRAME = {
    "pair": ["q1", "q2"],
    "line": W_LINE,
    "recoil": ["l1", "l2"],
    "directions": True,
}


def _events(rng, n):
    """Massless objects q1, q2, l1, l2 with the quarks pT-ordered."""
    x = np.empty((n, 12))
    x[:, 0::3] = rng.uniform(20.0, 150.0, (n, 4))
    x[:, 1::3] = rng.normal(0.0, 1.2, (n, 4))
    x[:, 2::3] = rng.uniform(-3.0, 3.0, (n, 4))
    x[:, [0, 3]] = np.sort(x[:, [0, 3]], axis=1)[:, ::-1]
    return x


def _four_vectors(x, obj):
    pt, eta, phi = x[:, 3 * obj], x[:, 3 * obj + 1], x[:, 3 * obj + 2]
    return np.stack(
        [pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], 1
    )


def _pair(p1, p2):
    """Four-momentum and invariant mass of two four-vectors (E, px, py, pz)."""
    pair = p1 + p2
    return pair, np.sqrt(pair[:, 0] ** 2 - np.sum(pair[:, 1:] ** 2, axis=1))


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("recoil", [(), ((6, 8), (9, 11))])
def test_pair_frame_round_trips_with_the_exact_log_det(recoil, reference, ordered):
    x = _events(np.random.default_rng(1), 40)
    if not ordered:  # labelled otherwise: half the events with pt1 < pt2
        x[::2, 0:3], x[::2, 3:6] = x[::2, 3:6].copy(), x[::2, 0:3].copy()
    kwargs = {}
    if reference:
        pole = np.random.default_rng(2).normal(size=(40, 3))
        kwargs = {"conditional_input": tf.constant(pole / 2.0)}  # any length

    def frame():  # a fresh bijector each time: TFP caches its results
        return PairFrame(
            (0, 1, 2, 3, 4, 5), recoil=recoil, reference=reference, ordered=ordered
        )

    flow = tf.constant(frame().inverse(tf.constant(x), **kwargs).numpy())
    back = frame().forward(flow, **kwargs).numpy()
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9)
    with tf.GradientTape() as tape:
        tape.watch(flow)
        out = frame().forward(flow, **kwargs)
    jacobian = tape.batch_jacobian(out, flow).numpy()
    sign, autodiff = np.linalg.slogdet(jacobian)
    assert np.all(sign != 0)
    fldj = frame().forward_log_det_jacobian(flow, event_ndims=1, **kwargs).numpy()
    np.testing.assert_allclose(fldj, autodiff, rtol=1e-9, atol=1e-9)
    ildj = frame().inverse_log_det_jacobian(x, event_ndims=1, **kwargs).numpy()
    np.testing.assert_allclose(ildj, -autodiff, rtol=1e-9, atol=1e-9)
    # float32 columns (as in the flow) keep float32 and agree to float32 precision.
    flow32 = frame().inverse(tf.constant(x, tf.float32), **kwargs)
    assert flow32.dtype == tf.float32
    np.testing.assert_allclose(flow32.numpy(), flow.numpy(), rtol=2e-4, atol=2e-4)
    if reference:
        with pytest.raises(ValueError, match="needs the reference directions"):
            frame().forward(flow)


def test_a_reference_pole_puts_the_measured_decay_at_the_origin():
    from cinnflow.flows.frames import detector_reference

    x = _events(np.random.default_rng(4), 300)
    pole = detector_reference(x, [0, 1, 2, 3, 4, 5])
    flow = PairFrame((0, 1, 2, 3, 4, 5), reference=True).inverse(
        x, conditional_input=pole
    )
    # The pair's own direction as the pole: a = b = 0 exactly.
    np.testing.assert_allclose(flow.numpy()[:, 4:6], 0.0, atol=1e-4)
    # A slightly different (measured) direction: small (a, b).
    noisy = x * (1.0 + np.random.default_rng(5).normal(0.0, 0.02, x.shape))
    near = PairFrame((0, 1, 2, 3, 4, 5), reference=True).inverse(
        x, conditional_input=detector_reference(noisy, [0, 1, 2, 3, 4, 5])
    )
    assert np.median(np.hypot(near.numpy()[:, 4], near.numpy()[:, 5])) < 0.1


def test_frame_coordinates_are_the_pair_and_event_kinematics():
    x = _events(np.random.default_rng(2), 200)
    flow = PairFrame((0, 1, 2, 3, 4, 5), recoil=((6, 8), (9, 11))).inverse(x).numpy()
    q1, q2, l1, l2 = (_four_vectors(x, i) for i in range(4))
    pair, mass = _pair(q1, q2)
    np.testing.assert_allclose(flow[:, 3], mass, rtol=1e-6)
    rapidity = 0.5 * np.log((pair[:, 0] + pair[:, 3]) / (pair[:, 0] - pair[:, 3]))
    np.testing.assert_allclose(flow[:, 1], rapidity, rtol=1e-7, atol=1e-7)
    # kx, ky: transverse momentum of all four objects together.
    total = q1 + q2 + l1 + l2
    np.testing.assert_allclose(flow[:, [0, 2]], total[:, 1:3], rtol=1e-9, atol=1e-9)
    # (a, b) is the equal-area image of the rest-frame direction of the quark that
    # goes forwards along the pair's pT: n_par = exp(-(a^2 + b^2) / 2) = |n1_par|.
    s = flow[:, 4] ** 2 + flow[:, 5] ** 2
    boost = pair[:, 1:] / pair[:, :1]
    gamma = pair[:, 0] / mass
    along = np.sum(q1[:, 1:] * boost, axis=1) / np.sum(boost**2, axis=1)
    rest = q1[:, 1:] + ((gamma - 1.0) * along - gamma * q1[:, 0])[:, None] * boost
    n = rest / np.linalg.norm(rest, axis=1, keepdims=True)
    transverse = pair[:, 1:3] / np.linalg.norm(pair[:, 1:3], axis=1, keepdims=True)
    n_par = np.sum(n[:, :2] * transverse, axis=1)
    np.testing.assert_allclose(np.exp(-0.5 * s), np.abs(n_par), rtol=1e-7, atol=1e-7)
    assert 0.1 < np.mean(n_par < 0) < 0.9  # the leading quark can go backwards


def test_isotropic_decays_give_unit_normal_direction_coordinates():
    from scipy import stats

    rng = np.random.default_rng(8)
    n = 20_000
    cos_t, phi = rng.uniform(-1, 1, n), rng.uniform(-np.pi, np.pi, n)
    direction = np.stack(
        [
            np.sqrt(1 - cos_t**2) * np.cos(phi),
            np.sqrt(1 - cos_t**2) * np.sin(phi),
            cos_t,
        ]
    )
    flow = np.zeros((n, 6))
    flow[:, 0] = 60.0  # pair pT along x; rest-frame direction as drawn
    flow[:, 3] = 80.0
    x = PairFrame((0, 1, 2, 3, 4, 5)).forward(
        np.concatenate([flow[:, :4], _equal_area_np(direction)], axis=1)
    )
    back = PairFrame((0, 1, 2, 3, 4, 5)).inverse(tf.constant(x.numpy())).numpy()
    for column in (4, 5):
        assert stats.kstest(back[:, column], "norm").pvalue > 0.01
    # The leading quark comes first in every event.
    assert np.all(x.numpy()[:, 0] >= x.numpy()[:, 3])


def test_isotropic_labelled_decays_cover_the_sphere_with_unit_normal_coordinates():
    from scipy import stats

    rng = np.random.default_rng(9)
    z = rng.normal(size=(20_000, 2))
    flow = np.zeros((len(z), 6))
    flow[:, 0], flow[:, 3], flow[:, 4:] = 60.0, 80.0, z
    x = PairFrame((0, 1, 2, 3, 4, 5), ordered=False).forward(flow).numpy()
    # Object 1 keeps its label: it is the softer one in about half the events...
    assert 0.3 < np.mean(x[:, 0] < x[:, 3]) < 0.7
    # ... and its rest-frame direction is isotropic: n_par uniform on (-1, 1).
    _, _, _, _, _, _, n_par = frame_coordinates(
        *(tf.constant(x[:, i]) for i in range(6)), ordered=False
    )
    assert stats.kstest((n_par.numpy() + 1.0) / 2.0, "uniform").pvalue > 0.01
    back = PairFrame((0, 1, 2, 3, 4, 5), ordered=False).inverse(x).numpy()
    np.testing.assert_allclose(back[:, 4:], z, rtol=1e-6, atol=1e-6)


def test_an_ordered_frame_on_unordered_data_says_to_set_ordered_false():
    from cinnflow.errors import CinnflowError

    rng = np.random.default_rng(10)
    with pytest.raises(CinnflowError, match=r"pair frame on \['l1', 'l2'\] is ordered"):
        _frame_model(rng, pair_frames=[{"pair": ["l1", "l2"]}])
    with pytest.raises(CinnflowError, match="set ordered: false"):
        _frame_model(rng, pair_frames=[{"pair": ["l1", "l2"]}])
    model, _, _ = _frame_model(
        rng, pair_frames=[{"pair": ["l1", "l2"], "ordered": False}]
    )
    assert model.support_order == ()


def _equal_area_np(direction):
    """(a, b) of isotropic directions (n_par along x), forward hemisphere."""
    d = direction * np.where(direction[0] < 0, -1.0, 1.0)
    r = np.sqrt(-2.0 * np.log(d[0]))
    t = np.hypot(d[1], d[2])
    return np.stack([r * d[1] / t, r * d[2] / t], axis=1)


def test_a_balanced_event_has_zero_recoil_and_a_forward_leading_quark():
    # A W of pT 100 GeV along x decaying along its flight direction, a Z against it.
    m, pt = 80.0, 100.0
    flow = np.array([[0.0, 0.0, 0.0, m, 0.0, 0.0, 0, 0, 0, 0, 0, 0]])
    flow[0, 6:] = [60.0, 0.3, np.pi, 40.0, -0.2, np.pi]  # leptons: pT 100 along -x
    x = PairFrame((0, 1, 2, 3, 4, 5), recoil=((6, 8), (9, 11))).forward(flow).numpy()
    energy = np.hypot(m, pt)
    # Along the boost: q1 = (E + p)/2 forward, q2 = (E - p)/2 backwards.
    np.testing.assert_allclose(x[0, [0, 3]], [(energy + pt) / 2, (energy - pt) / 2])
    np.testing.assert_allclose(x[0, [1, 4]], 0.0, atol=1e-12)
    np.testing.assert_allclose(x[0, 2], 0.0, atol=1e-12)
    np.testing.assert_allclose(abs(x[0, 5]), np.pi, atol=1e-12)
    coords = frame_coordinates(*(tf.constant(x[:, i]) for i in range(6)), -100.0, 0.0)
    np.testing.assert_allclose(
        [c.numpy()[0] for c in coords[:6]], flow[0, :6], atol=1e-9
    )


def _frame_model(rng, n=600, **extra):
    x = _events(rng, n).astype(np.float32)
    c = (x * (1.0 + rng.normal(0.0, 0.05, x.shape))).astype(np.float32)
    cfg = {
        **SMALL,
        "clamp": 2.0,
        "phi_reference": True,
        "pair_frames": [
            {
                "pair": ["q1", "q2"],
                "line": W_LINE,
                "recoil": ["l1", "l2"],
                "reference": True,
            }
        ],
        **extra,
    }
    model = ConditionalINN.from_config(cfg, KINDS, KINDS, 0, NAMES)
    model.adapt(x, c)
    return model, x, c


def test_model_with_a_pair_frame_samples_ordered_lab_quarks(tmp_path):
    from cinnflow.sampling import sample_posterior

    model, x, c = _frame_model(np.random.default_rng(3))
    assert model.flow_kinds[:6] == ["other", "eta", "other", "mass", "other", "other"]
    # phi reference only for the lepton phi columns the flow still models.
    assert model.phi_reference_index.tolist() == [8, 11]
    assert model.column_transform.lines == {3: tuple(W_LINE)}
    assert model.support_order == ((0, 3),)
    assert model.n_features == 8 + 4 * 3 + 13  # pt, eta; 3 per phi; frame
    lp = model.log_prob(x[:50], c[:50]).numpy()
    assert np.all(np.isfinite(lp))
    draws = sample_posterior(
        model, c[:30], n_draws=20, batch_size=200, seed=4, support_margin=1.0
    )
    assert np.all(np.isfinite(draws)) and np.all(draws[..., 0] >= draws[..., 3])
    # Inside the support box (clipped draws sit on its float32-rounded edge).
    low, high = (b.astype(np.float32) for b in model.support(1.0))
    assert np.all((draws >= low) & (draws <= high))
    model.save(tmp_path / "m")
    again = ConditionalINN.load(tmp_path / "m")
    np.testing.assert_allclose(again.log_prob(x[:50], c[:50]).numpy(), lp, rtol=1e-6)
    assert again.pair_pt_box == model.pair_pt_box
    same = ConditionalINN.load(tmp_path / "m").sample(c[:5], 3, seed=1)
    np.testing.assert_array_equal(same, model.sample(c[:5], 3, seed=1))


def test_model_frame_config_errors_name_the_problem():
    rng = np.random.default_rng(5)
    with pytest.raises(ConfigError, match="share columns"):
        _frame_model(rng, pair_masses=[["q1", "q2"]])
    with pytest.raises(ConfigError, match=r"needs parton columns \['w_pt'"):
        _frame_model(rng, pair_frames=[{"pair": ["w", "q2"]}])
    with pytest.raises(ConfigError, match="expected a mapping with 'pair'"):
        _frame_model(rng, pair_frames=[["q1", "q2"]])
    with pytest.raises(ConfigError, match="recoil columns"):
        _frame_model(rng, pair_frames=[{"pair": ["q1", "q2"], "recoil": ["q1"]}])
    with pytest.raises(ConfigError, match="cycle"):
        _frame_model(
            rng,
            pair_frames=[
                {"pair": ["q1", "q2"], "recoil": ["l1"]},
                {"pair": ["l1", "l2"], "recoil": ["q1"]},
            ],
        )
    kinds = ["pt", "other"] + KINDS[2:]
    with pytest.raises(ConfigError, match=r"pair frame columns \[0, 1, 2, 3, 4, 5\]"):
        ConditionalINN.from_config(
            {**SMALL, "clamp": 2.0, "pair_frames": [{"pair": ["q1", "q2"]}]},
            kinds,
            KINDS,
            0,
            NAMES,
        )
    with pytest.raises(ConfigError, match="expected \\(mass, width\\)"):
        _frame_model(rng, pair_frames=[{"pair": ["q1", "q2"], "line": [80.0, -1.0]}])


def test_two_frames_recoiling_one_way_round_trip():
    model, x, c = _frame_model(
        np.random.default_rng(6),
        pair_frames=[
            {"pair": ["q1", "q2"], "line": W_LINE, "recoil": ["l1", "l2"]},
            {"pair": ["l1", "l2"], "line": [91.188, 2.495], "ordered": False},
        ],
    )
    # The lepton frame comes first in the forward direction (the W reads its lab
    # leptons).
    assert [f.pair for f in model.frames] == [(6, 7, 8, 9, 10, 11), (0, 1, 2, 3, 4, 5)]
    assert model.phi_reference_index is None
    assert model.n_features == 8 + 4 * 3 + 13 + 7
    lp = model.log_prob(x[:20], c[:20]).numpy()
    assert np.all(np.isfinite(lp))
    draws = model.sample(c[:10], 5, seed=2)
    assert np.all(np.isfinite(draws))


@pytest.mark.parametrize("mode", ["anchor", "directions"])
@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("recoil", [(), ((6, 8), (9, 11))])
def test_anchored_frame_round_trips_with_the_exact_log_det(recoil, ordered, mode):
    rng = np.random.default_rng(11)
    x = _events(rng, 60)
    kwargs = {}
    if ordered:
        # Detector directions near the trailing quark in 2 of 3 events.
        near = np.where((np.arange(60) % 3 == 0)[:, None], x[:, 1:3], x[:, 4:6])
        label = near + rng.normal(0.0, 0.03, near.shape)
        kwargs = {"conditional_input": tf.constant(label)}
    else:
        x[::2, 0:3], x[::2, 3:6] = x[::2, 3:6].copy(), x[::2, 0:3].copy()

    def frame():
        return PairFrame(
            (0, 1, 2, 3, 4, 5), recoil=recoil, ordered=ordered, **{mode: True}
        )

    flow = tf.constant(frame().inverse(tf.constant(x), **kwargs).numpy())
    # The anchor keeps its lab direction: the matched quark's (the first one's for
    # a pair labelled otherwise).
    anchor = np.where((np.arange(60) % 3 == 0)[:, None], x[:, 1:3], x[:, 4:6])
    if not ordered:
        anchor = x[:, 1:3]
    np.testing.assert_allclose(flow.numpy()[:, 1:3], anchor, rtol=1e-12, atol=1e-12)
    if mode == "directions":  # the partner keeps its lab direction too
        partner = np.where(np.isin(x[:, 1:3], anchor), x[:, 4:6], x[:, 1:3])
        np.testing.assert_allclose(flow.numpy()[:, 4:6], partner, rtol=1e-12)
    back = frame().forward(flow).numpy()
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9)
    with tf.GradientTape() as tape:
        tape.watch(flow)
        out = frame().forward(flow)
    _, autodiff = np.linalg.slogdet(tape.batch_jacobian(out, flow).numpy())
    fldj = frame().forward_log_det_jacobian(flow, event_ndims=1).numpy()
    np.testing.assert_allclose(fldj, autodiff, rtol=1e-9, atol=1e-9)
    ildj = frame().inverse_log_det_jacobian(x, event_ndims=1, **kwargs).numpy()
    np.testing.assert_allclose(ildj, -autodiff, rtol=1e-9, atol=1e-9)
    if ordered:
        with pytest.raises(ValueError, match=r"\(eta, phi\) \(n, 2\)"):
            frame().inverse(tf.constant(x))


def test_anchored_frame_coordinates_are_the_pair_kinematics():
    x = _events(np.random.default_rng(12), 200)
    frame = PairFrame((0, 1, 2, 3, 4, 5), recoil=((6, 8), (9, 11)), anchor=True)
    flow = frame.inverse(x, conditional_input=x[:, 1:3]).numpy()
    q1, q2, l1, l2 = (_four_vectors(x, i) for i in range(4))
    pair, mass = _pair(q1, q2)
    np.testing.assert_allclose(flow[:, 3], mass, rtol=1e-6)
    rapidity = 0.5 * np.log((pair[:, 0] + pair[:, 3]) / (pair[:, 0] - pair[:, 3]))
    # w = 2 y - eta_a: the partner's eta for a pair at rest in the transverse plane.
    np.testing.assert_allclose(flow[:, 4], 2 * rapidity - x[:, 1], rtol=1e-7, atol=1e-7)
    total = q1 + q2 + l1 + l2
    np.testing.assert_allclose(flow[:, [0, 5]], total[:, 1:3], rtol=1e-9, atol=1e-9)
    # The anchor's energy from the pair alone: E1 = m^2 / (2 (E - P.d1)).
    d1 = q1[:, 1:] / q1[:, :1]
    energy = mass**2 / (2.0 * (pair[:, 0] - np.sum(pair[:, 1:] * d1, axis=1)))
    np.testing.assert_allclose(energy, q1[:, 0], rtol=1e-9)
    assert frame.flow_kinds == ("other", "eta", "phi", "mass", "eta", "other")
    with pytest.raises(ConfigError, match="anchor=True, directions=True; an"):
        PairFrame((0, 1, 2, 3, 4, 5), anchor=True, directions=True)


def test_direction_frame_coordinates_are_mass_and_balance():
    x = _events(np.random.default_rng(16), 200)
    frame = PairFrame((0, 1, 2, 3, 4, 5), recoil=((6, 8), (9, 11)), directions=True)
    flow = frame.inverse(x, conditional_input=x[:, 1:3]).numpy()
    q1, q2, l1, l2 = (_four_vectors(x, i) for i in range(4))
    pair, mass = _pair(q1, q2)
    np.testing.assert_allclose(flow[:, 3], mass, rtol=1e-9)
    # u: the whole event's transverse momentum along (t1 - t2) / |t1 - t2|.
    axis = q1[:, 1:3] / x[:, :1] - q2[:, 1:3] / x[:, 3:4]
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    total = (q1 + q2 + l1 + l2)[:, 1:3]
    np.testing.assert_allclose(flow[:, 0], np.sum(total * axis, axis=1), atol=1e-9)
    np.testing.assert_allclose(flow[:, [1, 2, 4, 5]], x[:, [1, 2, 4, 5]], atol=0)
    assert frame.flow_kinds == ("other", "eta", "phi", "mass", "eta", "phi")
    # A balanced detector event on the line: u = 0, the solved pTs are the
    # measured ones and nothing is left across the axis.
    from cinnflow.flows.frames import detector_frame_features

    c = x.copy()
    c[:, 6:9] = [0.0, 0.0, 0.0]
    c[:, 9], c[:, 11] = np.hypot(*pair[:, 1:3].T), np.arctan2(-pair[:, 2], -pair[:, 1])
    features = detector_frame_features(
        c, (0, 1, 2, 3, 4, 5), ((6, 8), (9, 11)), ordered=False, directions=True
    ).numpy()
    assert features.shape == (200, 17)
    np.testing.assert_allclose(features[:, 7], 0.0, atol=1e-3)
    np.testing.assert_allclose(np.exp(features[:, 8:10]), x[:, [0, 3]], rtol=1e-4)
    np.testing.assert_allclose(features[:, 10], 0.0, atol=1e-3)


@pytest.mark.parametrize(
    ("mode", "last_kind", "phi_columns"),
    # The anchor's phi (and with directions the partner's) is measured from the
    # matched jet's, as a lab quark's is.
    [("anchor", "other", [2, 8, 11]), ("directions", "phi", [2, 5, 8, 11])],
)
def test_model_with_a_lab_direction_frame_samples_ordered_quarks(
    mode, last_kind, phi_columns, tmp_path
):
    from cinnflow.sampling import sample_posterior
    from cinnflow.training.grid import point_name

    frame = {"pair": ["q1", "q2"], "line": W_LINE, "recoil": ["l1", "l2"], mode: True}
    model, x, c = _frame_model(np.random.default_rng(13), pair_frames=[frame])
    kinds = ["other", "eta", "phi", "mass", "eta", last_kind]
    assert model.flow_kinds[:6] == kinds
    assert model.phi_reference_index.tolist() == phi_columns
    assert model.n_features == 8 + 4 * 3 + 17  # 4 frame features more
    lp = model.log_prob(x[:50], c[:50]).numpy()
    assert np.all(np.isfinite(lp))
    draws = sample_posterior(
        model, c[:30], n_draws=20, batch_size=200, seed=4, support_margin=1.0
    )
    assert np.all(np.isfinite(draws)) and np.all(draws[..., 0] >= draws[..., 3])
    model.save(tmp_path / "m")
    again = ConditionalINN.load(tmp_path / "m")
    assert (again.frames[0].anchor, again.frames[0].directions) == (
        mode == "anchor",
        mode == "directions",
    )
    np.testing.assert_allclose(again.log_prob(x[:50], c[:50]).numpy(), lp, rtol=1e-6)
    name = point_name({"pair_frames": [frame]})
    assert name == f"pair_frames=q1xq2-recoil-l1xl2-line-{mode}"


def test_pair_features_add_the_measured_pair_mass_to_the_condition():
    rng = np.random.default_rng(14)
    x = _events(rng, 300).astype(np.float32)
    c = (x * (1.0 + rng.normal(0.0, 0.05, x.shape))).astype(np.float32)
    cfg = {**SMALL, "clamp": 2.0, "pair_features": [["l1", "l2"]]}
    model = ConditionalINN.from_config(cfg, KINDS, KINDS, 0, NAMES)
    assert model.n_features == 8 + 4 * 3 + 7
    model.adapt(x, c)
    raw = model._raw_features(c).numpy()
    l1, l2 = (_four_vectors(c.astype(np.float64), i) for i in (2, 3))
    pair, mass = _pair(l1, l2)
    # Features: kx, ky, y, log(m + 1 GeV), a, b, n_par of the detector leptons.
    np.testing.assert_allclose(raw[:, 20 + 3], np.log(mass + 1.0), rtol=1e-5)
    np.testing.assert_allclose(raw[:, 20:22], pair[:, 1:3], rtol=1e-4, atol=1e-3)
    assert np.all(np.isfinite(model.log_prob(x[:20], c[:20]).numpy()))
    with pytest.raises(ConfigError, match=r"model.pair_features entry \['l1', 'z'\]"):
        ConditionalINN.from_config(
            {**cfg, "pair_features": [["l1", "z"]]}, KINDS, KINDS, 0, NAMES
        )


def test_partner_rapidity_finds_the_pair_rapidity_of_a_balanced_pair():
    from cinnflow.flows.frames import partner_rapidity

    rng = np.random.default_rng(15)
    n = 400
    # Balanced events: the pair's pT is minus the recoil's, the pair on 80 GeV.
    rx, ry = rng.normal(0.0, 60.0, n), rng.normal(0.0, 60.0, n)
    y, m = rng.normal(0.0, 1.0, n), np.full(n, 80.0)
    eta_a, phi_a = rng.normal(0.0, 1.2, n), rng.uniform(-3.0, 3.0, n)
    w = 2.0 * y - eta_a
    flow = np.stack([np.zeros(n), eta_a, phi_a, m, w, np.zeros(n)], axis=1)
    x = np.concatenate([flow, np.zeros((n, 6))], axis=1)
    x[:, 6], x[:, 8] = np.hypot(rx, ry), np.arctan2(ry, rx)
    lab = PairFrame((0, 1, 2, 3, 4, 5), recoil=((6, 8),), anchor=True, ordered=False)
    lab = lab.forward(tf.constant(x)).numpy()
    found, deta, dphi = (
        v.numpy()
        for v in partner_rapidity(
            *(tf.constant(lab[:, i]) for i in (1, 2, 4, 5)),
            tf.constant(rx),
            tf.constant(ry),
            tf.constant(m),
            tf.constant(y + rng.uniform(-1.0, 1.0, n)),
        )
    )
    # Within the fine grid's step (3 / 47 / 3 = 0.02) and the offset near zero.
    assert np.quantile(np.abs(found - y), 0.9) < 0.02
    assert np.quantile(np.hypot(deta, dphi), 0.9) < 0.03


PROCESS = {
    "name": "zw",
    "parton": {
        "fields": ["pt", "eta", "phi"],
        "objects": [{"name": n} for n in ("q1", "q2", "l1", "l2")],
    },
}


def test_parse_time_check_of_pair_frames():
    check_pair_frames(
        [{"pair": ["q1", "q2"], "recoil": ["l1", "l2"]}], PROCESS, pair_masses=None
    )
    with pytest.raises(ConfigError, match=r"\['x'\] are not parton objects"):
        check_pair_frames([{"pair": ["q1", "x"]}], PROCESS)
    with pytest.raises(ConfigError, match=r"use \['q1', 'q2'\] more than once"):
        check_pair_frames([{"pair": ["q1", "q2"]}], PROCESS, pair_masses=[["q1", "q2"]])
    with pytest.raises(ConfigError, match="recoil objects"):
        check_pair_frames([{"pair": ["q1", "q2"], "recoil": ["q2"]}], PROCESS)
    with pytest.raises(ConfigError, match="recoil objects"):
        check_pair_frames([{"pair": ["q1", "q2"], "recoil": ["j7"]}], PROCESS)
    with pytest.raises(ConfigError, match=r"pair_frames\[0\] .* reference and anchor"):
        check_pair_frames(
            [{"pair": ["q1", "q2"], "anchor": True, "reference": True}], PROCESS
        )


def test_conditional_reflection_turns_the_direction_onto_the_last_slot():
    from cinnflow.flows.bijectors import ConditionalReflection

    rng = np.random.default_rng(21)
    x = rng.normal(size=(64, 7)).astype(np.float32)
    g = rng.normal(size=(64, 4)).astype(np.float32)
    g[0] = 0.0  # no direction: identity
    g[1] = [0.0, 0.0, 0.0, 3.0]  # already the axis: identity
    g[2] = [0.0, 0.0, 0.0, -2.0]  # the opposite axis: a sign flip of that slot
    slots = [1, 2, 4, 6]
    reflection = ConditionalReflection(slots, name="align_00")
    y = reflection.inverse(x, conditional_input=g).numpy()
    unit = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-30)
    # The latent side's last slot is the physics side's component along g.
    np.testing.assert_allclose(
        y[3:, 6], np.sum(unit[3:] * x[3:, slots], axis=1), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(y[:2], x[:2], atol=1e-6)
    np.testing.assert_allclose(y[2, 6], -x[2, 6], atol=1e-6)
    # Untouched columns, lengths kept, its own inverse, unit Jacobian.
    np.testing.assert_array_equal(y[:, [0, 3, 5]], x[:, [0, 3, 5]])
    np.testing.assert_allclose(
        np.linalg.norm(y[:, slots], axis=1), np.linalg.norm(x[:, slots], axis=1), 1e-5
    )
    np.testing.assert_allclose(
        reflection.forward(y, conditional_input=g).numpy(), x, atol=1e-5
    )
    ldj = reflection.inverse_log_det_jacobian(y, event_ndims=1, conditional_input=g)
    np.testing.assert_array_equal(ldj.numpy(), 0.0)


def test_balance_gradient_is_the_derivative_of_the_balance_across_the_axis():
    from cinnflow.flows.frames import _across_balance, balance_gradient

    rng = np.random.default_rng(22)
    c = _events(rng, 200)
    columns = [tf.constant(c[:, i]) for i in range(12)]
    rx = columns[6] * tf.cos(columns[8]) + columns[9] * tf.cos(columns[11])
    ry = columns[6] * tf.sin(columns[8]) + columns[9] * tf.sin(columns[11])
    angles = [tf.Variable(columns[i]) for i in (1, 2, 4, 5)]
    mass = tf.fill([200], tf.constant(80.385, tf.float64))
    with tf.GradientTape() as tape:
        across = _across_balance(*angles, rx, ry, mass)[0]
    expected = np.stack([g.numpy() for g in tape.gradient(across, angles)], axis=1)
    found = balance_gradient(c, (0, 1, 2, 3, 4, 5), ((6, 8), (9, 11)), 80.385)
    np.testing.assert_allclose(found.numpy(), expected, rtol=1e-4, atol=1e-4)
    # It moves the angles: a gradient of about pT per radian, not a constant.
    assert np.median(np.linalg.norm(expected, axis=1)) > 10.0


def test_an_aligned_direction_frame_is_the_same_density_before_training(tmp_path):
    from cinnflow.sampling import sample_posterior

    frame = DIRECTION_FRAME
    plain, x, c = _frame_model(np.random.default_rng(23), pair_frames=[frame])
    aligned, _, _ = _frame_model(
        np.random.default_rng(23), pair_frames=[{**frame, "align": True}]
    )
    assert [b.name for b in aligned.reflections] == ["align_00"]
    assert aligned.reflections[0].slots == (1, 2, 4, 5)
    assert aligned.n_features == plain.n_features
    # Untrained couplings are the identity: the latent is a standard normal,
    # which an orthogonal map leaves as it is, so the densities agree.
    lp = aligned.log_prob(x[:50], c[:50]).numpy()
    np.testing.assert_allclose(lp, plain.log_prob(x[:50], c[:50]).numpy(), atol=1e-3)
    axis = aligned._frame_references(c[:50])[-1].numpy()
    assert axis.shape == (50, 4) and np.all(np.isfinite(axis))
    assert np.all(np.linalg.norm(axis, axis=1) > 0.0)
    draws = sample_posterior(
        aligned, c[:30], n_draws=20, batch_size=200, seed=4, support_margin=1.0
    )
    assert np.all(np.isfinite(draws)) and np.all(draws[..., 0] >= draws[..., 3])
    aligned.save(tmp_path / "m")
    again = ConditionalINN.load(tmp_path / "m")
    assert again.frames[0].align
    np.testing.assert_allclose(again.log_prob(x[:50], c[:50]).numpy(), lp, rtol=1e-6)
    with pytest.raises(ConfigError, match=r"pair_frames\[0\] .* sets align"):
        check_pair_frames([{"pair": ["q1", "q2"], "align": True}], PROCESS)


def test_balance_quantile_keeps_the_hard_process_pt_in_the_training_range(tmp_path):
    from cinnflow.sampling import sample_posterior

    frame = DIRECTION_FRAME
    model, x, c = _frame_model(np.random.default_rng(24), pair_frames=[frame])
    # The balance is the pT of the four objects' vector sum.
    px = sum(x[:, 3 * k] * np.cos(x[:, 3 * k + 2]) for k in range(4))
    py = sum(x[:, 3 * k] * np.sin(x[:, 3 * k + 2]) for k in range(4))
    np.testing.assert_allclose(model.balance(x)[0], np.hypot(px, py), rtol=1e-5)
    limits = model.balance_limits(0.9)
    assert set(limits) == {0}
    assert limits[0] == pytest.approx(np.quantile(np.hypot(px, py), 0.9), rel=1e-4)
    common = dict(n_draws=30, batch_size=100, seed=5, support_margin=1.0)
    free = sample_posterior(model, c[:40], **common)
    assert np.mean(model.balance(free)[0] > limits[0]) > 0.05
    draws, stats = sample_posterior(
        model, c[:40], **common, balance_quantile=0.9, return_stats=True
    )
    above = model.balance(draws)[0] > limits[0]
    assert stats["rejected_fraction"] > 0.05
    # Still above after the re-draws: kept as drawn, or clipped into the box.
    assert stats["balance_kept_fraction"] > 0
    assert np.mean(above) <= (
        stats["balance_kept_fraction"] + stats["clipped_fraction"] + 1e-12
    )
    assert np.mean(above) < 0.5 * np.mean(model.balance(free)[0] > limits[0])
    model.save(tmp_path / "m")
    again = ConditionalINN.load(tmp_path / "m")
    assert again.balance_limits(0.9) == pytest.approx(limits)
    with pytest.raises(ConfigError, match="balance quantile 0.5 is out of range"):
        model.balance_limits(0.5)
