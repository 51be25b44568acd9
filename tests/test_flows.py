"""Property tests of the flow bijectors and of ConditionalINN."""

import numpy as np
import pytest
import tensorflow as tf

from cinnflow.errors import CinnflowError, ConfigError
from cinnflow.flows import ConditionalINN
from cinnflow.flows.bijectors import (
    ConditionalAffineCoupling,
    ConditionalShift,
    GlobalAffine,
    make_permutation,
)
from cinnflow.flows.preprocessing import ColumnTransform, StandardScaling

PARTON_KINDS = ["pt", "eta", "phi", "mass", "other"]
DETECTOR_KINDS = ["pt", "eta", "phi", "mass", "other", "pt"]
N_POINTS = 6


def _parton_sample(rng, n):
    return np.stack(
        [
            rng.uniform(20.0, 200.0, n),
            rng.normal(0.0, 1.5, n),
            rng.uniform(-3.1, 3.1, n),
            rng.uniform(1.0, 90.0, n),
            rng.normal(0.0, 1.0, n),
        ],
        axis=1,
    ).astype(np.float32)


def _detector_sample(x_parton, rng):
    noise = rng.normal(0.0, 0.05, x_parton.shape)
    c = x_parton * (1.0 + noise)
    c[:, 2] = np.clip(c[:, 2], -3.14, 3.14)
    extra = rng.uniform(30.0, 60.0, (len(x_parton), 1))
    return np.concatenate([c, extra], axis=1).astype(np.float32)


def _small_model(seed=3, **overrides):
    kwargs = dict(
        n_blocks=3,
        subnet_hidden=[16],
        condition_hidden=[16],
        condition_dim=4,
        clamp=2.0,
        seed=seed,
    )
    kwargs.update(overrides)
    return ConditionalINN(PARTON_KINDS, DETECTOR_KINDS, **kwargs)


def _perturb(variables, seed, scale=0.3):
    """Give zero-initialised weights random values so that no block is the identity."""
    rng = np.random.default_rng(seed)
    for v in variables:
        v.assign(rng.normal(0.0, scale, v.shape).astype(v.dtype.as_numpy_dtype))


@pytest.fixture(scope="module")
def adapted_model():
    rng = np.random.default_rng(0)
    x = _parton_sample(rng, 2000)
    c = _detector_sample(x, rng)
    model = _small_model()
    model.adapt(x, c)
    _perturb(model.trainable_variables, seed=1, scale=0.2)
    return model, x, c


def _check_bijector(bijector, z, kwargs, *, rtol, atol):
    """Round trip and log-det against the autodiff Jacobian, point by point."""
    z = tf.convert_to_tensor(z)
    x = bijector.forward(z, **kwargs)
    np.testing.assert_allclose(
        bijector.inverse(x, **kwargs).numpy(),
        z.numpy(),
        rtol=rtol,
        atol=atol,
        err_msg=f"{bijector.name}: inverse(forward(z)) != z",
    )
    fldj = bijector.forward_log_det_jacobian(z, event_ndims=1, **kwargs).numpy()
    ildj = bijector.inverse_log_det_jacobian(x, event_ndims=1, **kwargs).numpy()
    fldj = np.broadcast_to(fldj, [len(z)])
    np.testing.assert_allclose(
        ildj, -fldj, rtol=rtol, atol=atol, err_msg=f"{bijector.name}: ildj != -fldj"
    )
    # A fresh tensor: TFP caches forward(z) by object and would return an output
    # computed outside the tape.
    z_fresh = tf.identity(z)
    with tf.GradientTape() as tape:
        tape.watch(z_fresh)
        x = bijector.forward(z_fresh, **kwargs)
    jacobian = tape.batch_jacobian(x, z_fresh).numpy().astype(np.float64)
    sign, numeric = np.linalg.slogdet(jacobian)
    assert np.all(sign != 0), f"{bijector.name}: singular Jacobian"
    np.testing.assert_allclose(
        fldj,
        numeric,
        rtol=rtol,
        atol=atol,
        err_msg=f"{bijector.name}: log-det differs from autodiff Jacobian",
    )


def test_column_transform_inverts_with_exact_log_det():
    bijector = ColumnTransform(PARTON_KINDS)
    z = np.random.default_rng(2).normal(0.0, 1.5, (N_POINTS, 5))
    _check_bijector(bijector, z, {}, rtol=1e-10, atol=1e-10)


def test_column_transform_keeps_phi_finite_at_minus_pi():
    bijector = ColumnTransform(["phi", "pt"])
    x = np.array([[-np.pi, 10.0], [np.float32(np.pi), 10.0]], np.float32)
    assert np.all(np.isfinite(bijector.inverse(x).numpy()))
    assert np.all(np.isfinite(bijector.inverse_log_det_jacobian(x, 1).numpy()))


def test_standard_scaling_inverts_with_exact_log_det():
    loc = tf.Variable([1.0, -2.0, 0.5], dtype=tf.float64)
    scale = tf.Variable([0.3, 2.0, 5.0], dtype=tf.float64)
    bijector = StandardScaling(loc, scale, name="standardise_00")
    z = np.random.default_rng(3).normal(size=(N_POINTS, 3))
    _check_bijector(bijector, z, {}, rtol=1e-10, atol=1e-10)


def test_conditional_shift_inverts_with_unit_jacobian():
    rng = np.random.default_rng(4)
    weight = tf.Variable(rng.normal(size=(3, 2)))
    bias = tf.Variable(rng.normal(size=3))
    bijector = ConditionalShift(weight, bias, name="regression_00")
    z = rng.normal(size=(N_POINTS, 3))
    kwargs = {"conditional_input": tf.constant(rng.normal(size=(N_POINTS, 2)))}
    _check_bijector(bijector, z, kwargs, rtol=1e-10, atol=1e-10)


def test_global_affine_inverts_with_exact_log_det():
    bijector = GlobalAffine(4, name="global_affine_00")
    _perturb([bijector.log_scale, bijector.shift], seed=5)
    z = np.random.default_rng(5).normal(size=(N_POINTS, 4)).astype(np.float32)
    _check_bijector(bijector, z, {}, rtol=1e-5, atol=1e-5)


def test_permutation_inverts_with_zero_log_det():
    bijector = make_permutation(5, rng=np.random.default_rng(6), name="permute_00")
    z = np.random.default_rng(6).normal(size=(N_POINTS, 5))
    _check_bijector(bijector, z, {}, rtol=0.0, atol=1e-12)


@pytest.mark.parametrize("dim", [2, 5])
def test_coupling_inverts_with_exact_log_det(dim):
    coupling = ConditionalAffineCoupling(
        dim, subnet_hidden=[8, 8], clamp=2.0, seed=0, name="coupling_00"
    )
    coupling.build_subnets(3)
    _perturb(coupling.trainable_variables, seed=7, scale=0.5)
    rng = np.random.default_rng(7)
    z = rng.normal(size=(N_POINTS, dim)).astype(np.float32)
    cond = tf.constant(rng.normal(size=(N_POINTS, 3)).astype(np.float32))
    _check_bijector(coupling, z, {"conditional_input": cond}, rtol=2e-4, atol=2e-4)


def test_full_chain_inverts_with_exact_log_det(adapted_model):
    model, _, c = adapted_model
    features = model._features(c[:N_POINTS])
    kwargs = model.bijector_kwargs(features, model.condition_encoder(features))
    z = np.random.default_rng(8).normal(size=(N_POINTS, 5)).astype(np.float32)
    # Physics units span 1e-2 to 1e2, hence the relative tolerance.
    _check_bijector(model.bijector, z, kwargs, rtol=1e-3, atol=1e-3)


def test_log_prob_matches_latent_density_plus_log_det(adapted_model):
    model, x, c = adapted_model
    log_prob = model.log_prob(x[:N_POINTS], c[:N_POINTS]).numpy()
    features = model._features(c[:N_POINTS])
    kwargs = model.bijector_kwargs(features, model.condition_encoder(features))
    z = model.bijector.inverse(x[:N_POINTS], **kwargs).numpy().astype(np.float64)
    ildj = model.bijector.inverse_log_det_jacobian(x[:N_POINTS], 1, **kwargs)
    expected = -0.5 * np.sum(z**2, axis=1) - 2.5 * np.log(2 * np.pi) + ildj.numpy()
    np.testing.assert_allclose(log_prob, expected, rtol=1e-4, atol=1e-3)


def test_condition_reaches_every_coupling(adapted_model):
    model, _, c = adapted_model
    features = model._features(c[:N_POINTS])
    embedding = model.condition_encoder(features)
    other = embedding + 1.0
    z = tf.constant(np.random.default_rng(9).normal(size=(N_POINTS, 5)), tf.float32)
    baseline = model.bijector.forward(z, **model.bijector_kwargs(features, embedding))
    for name in model.coupling_names:
        kwargs = model.bijector_kwargs(features, embedding)
        kwargs[name] = {"conditional_input": other}
        changed = model.bijector.forward(z, **kwargs)
        change = np.max(np.abs(changed.numpy() - baseline.numpy()))
        assert change > 1e-3, f"{name} ignores its condition (max change {change})"
    assert len(model.coupling_names) == 3


def test_missing_condition_raises(adapted_model):
    model, _, _ = adapted_model
    z = tf.zeros([2, 5])
    with pytest.raises(ValueError, match="coupling_00"):
        model.bijector.forward(z, coupling_0={"conditional_input": tf.zeros([2, 4])})


def test_save_and_load_give_identical_samples(adapted_model, tmp_path):
    model, _, c = adapted_model
    model.save(tmp_path / "model")
    loaded = ConditionalINN.load(tmp_path / "model")
    first = model.sample(c[:20], 7, seed=11)
    second = loaded.sample(c[:20], 7, seed=11)
    assert first.shape == (20, 7, 5) and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)
    assert np.all(np.isfinite(first))
    assert np.all(first[..., 0] > 0) and np.all(np.abs(first[..., 2]) <= np.pi)


def test_custom_condition_encoder_is_used():
    import tf_keras

    encoder = tf_keras.Sequential([tf_keras.layers.Dense(4)], name="custom")
    model = _small_model(condition_encoder=encoder)
    assert encoder.built
    tracked = {id(v) for v in model.trainable_variables}
    assert all(id(v) in tracked for v in encoder.trainable_variables)
    with pytest.raises(ConfigError, match="condition_dim"):
        _small_model(condition_encoder=tf_keras.Sequential([tf_keras.layers.Dense(3)]))


def test_from_config_rejects_unknown_key():
    cfg = dict(
        n_blocks=2,
        subnet_hidden=[8],
        condition_hidden=[8],
        condition_dim=4,
        clamp=2.0,
        condition_regresion=True,
    )
    with pytest.raises(ConfigError, match="condition_regression"):
        ConditionalINN.from_config(cfg, PARTON_KINDS, DETECTOR_KINDS, seed=1)
    del cfg["condition_regresion"]
    model = ConditionalINN.from_config(cfg, PARTON_KINDS, DETECTOR_KINDS, seed=1)
    assert model.init_args["condition_regression"] is True


def test_unknown_kind_raises():
    with pytest.raises(ConfigError, match="energy"):
        ConditionalINN(
            ["pt", "energy"],
            DETECTOR_KINDS,
            n_blocks=1,
            subnet_hidden=[4],
            condition_hidden=[],
            condition_dim=2,
            clamp=1.0,
            seed=0,
        )


def test_column_transform_with_phi_reference_inverts_with_exact_log_det():
    bijector = ColumnTransform(PARTON_KINDS, phi_reference=True)
    rng = np.random.default_rng(12)
    z = rng.normal(0.0, 1.5, (N_POINTS, 5))
    ref = tf.constant(rng.uniform(-np.pi, np.pi, (N_POINTS, 1)))
    _check_bijector(bijector, z, {"conditional_input": ref}, rtol=1e-9, atol=1e-9)


def test_phi_reference_moves_the_seam_opposite_the_reference():
    bijector = ColumnTransform(["phi"], phi_reference=True)
    # Truth just across the +-pi seam from a reference at 3.1: 0.1 rad apart.
    x = np.array([[-3.12], [3.05]], np.float64)
    ref = tf.constant([[3.1], [3.1]], tf.float64)
    y = bijector.inverse(x, conditional_input=ref).numpy()
    np.testing.assert_allclose(
        y, np.arctanh(np.array([[-3.12 - 3.1 + 2 * np.pi], [-0.05]]) / np.pi), atol=1e-6
    )
    back = bijector.forward(y, conditional_input=ref).numpy()
    np.testing.assert_allclose(back, x, atol=1e-9)
    # Every forward value lands in [-pi, pi).
    far = bijector.forward(
        tf.constant([[5.0], [-5.0]], tf.float64), conditional_input=ref
    )
    assert np.all(np.abs(far.numpy()) <= np.pi)
    with pytest.raises(ValueError, match="reference"):
        bijector.forward(tf.zeros([1, 1], tf.float64))


def test_model_with_phi_reference_round_trips_and_normalises():
    rng = np.random.default_rng(13)
    x = _parton_sample(rng, 500)
    c = _detector_sample(x, rng)
    model = _small_model(phi_reference=True)
    model.adapt(x, c)
    _perturb(model.trainable_variables, seed=2, scale=0.2)
    features = model._features(c[:N_POINTS])
    kwargs = model.bijector_kwargs(
        features, model.condition_encoder(features), model._reference(c[:N_POINTS])
    )
    z = np.random.default_rng(8).normal(size=(N_POINTS, 5)).astype(np.float32)
    _check_bijector(model.bijector, z, kwargs, rtol=1e-3, atol=1e-3)
    draws = model.sample(c[:10], 50, seed=1)
    assert np.all(np.abs(draws[..., 2]) <= np.pi)
    # Relative to the detector phi the preprocessed parton phi is small: the
    # standardisation mean is near 0 (the 5 % smearing of _detector_sample).
    assert abs(float(model.parton_mean.numpy()[2])) < 0.05
    with pytest.raises(ConfigError, match="phi_reference"):
        ConditionalINN(["phi", "pt"], ["pt"], **{**_SMALL, "phi_reference": True})


_SMALL = dict(
    n_blocks=2,
    subnet_hidden=[8],
    condition_hidden=[8],
    condition_dim=2,
    clamp=2.0,
    seed=0,
)


def test_support_is_the_widened_training_range(adapted_model):
    model, x, _ = adapted_model
    low, high = model.support(0.0)
    np.testing.assert_allclose(low[0], x[:, 0].min(), rtol=1e-5)
    np.testing.assert_allclose(high[0], x[:, 0].max(), rtol=1e-5)
    np.testing.assert_allclose(high[1], x[:, 1].max(), rtol=1e-5)
    assert low[2] == -np.inf and high[2] == np.inf  # phi is not truncated
    wide_low, wide_high = model.support(1.0)
    log_std = np.log(x[:, 0]).std()
    np.testing.assert_allclose(wide_high[0], x[:, 0].max() * np.exp(log_std), rtol=1e-3)
    np.testing.assert_allclose(wide_low[1], x[:, 1].min() - x[:, 1].std(), rtol=1e-3)


def test_support_survives_save_and_load(adapted_model, tmp_path):
    model, _, _ = adapted_model
    model.save(tmp_path / "model")
    loaded = ConditionalINN.load(tmp_path / "model")
    for a, b in zip(model.support(0.5), loaded.support(0.5), strict=True):
        np.testing.assert_array_equal(a, b)


# The paper network (config/paper.yaml) with the ZW columns: (pt, eta, phi) of
# q1 q2 l1 l2 at parton level, (pt, eta, phi, mass) of j1 j2 l1 l2 at detector level.
ZW_PARTON_KINDS = ["pt", "eta", "phi"] * 4
ZW_DETECTOR_KINDS = ["pt", "eta", "phi", "mass"] * 4
# condition net 24 -> 1024 -> 256: 288,000; 12 blocks x 2 subnets x
# (262 -> 256 -> 12): 1,689,888; global affine: 24.
PAPER_N_WEIGHTS = 1_977_912


def test_paper_config_builds_the_two_million_weight_network(caplog):
    import logging
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "config" / "paper.yaml").read_text())
    with caplog.at_level(logging.INFO, logger="cinnflow.flows.model"):
        model = ConditionalINN.from_config(
            cfg["model"], ZW_PARTON_KINDS, ZW_DETECTOR_KINDS, seed=cfg["seed"]
        )
    n_weights = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert n_weights == PAPER_N_WEIGHTS
    assert 1_800_000 <= n_weights <= 2_400_000
    assert f"{n_weights} trainable weights" in caplog.text
    assert len(model.coupling_names) == 12  # 24 affine couplings, two per block


def _twin_models(**overrides):
    """The same weights with and without the fused condition projection."""
    rng = np.random.default_rng(20)
    x = _parton_sample(rng, 400)
    c = _detector_sample(x, rng)
    models = []
    for fuse in (True, False):
        model = _small_model(fuse_condition=fuse, subnet_hidden=[16, 8], **overrides)
        model.adapt(x, c)
        _perturb(model.trainable_variables, seed=21, scale=0.2)
        models.append(model)
    return models, x, c


def test_fused_condition_projection_gives_the_unfused_result():
    (fused, plain), x, c = _twin_models()
    np.testing.assert_allclose(
        fused.log_prob(x[:50], c[:50]).numpy(),
        plain.log_prob(x[:50], c[:50]).numpy(),
        rtol=1e-5,
        atol=1e-4,
    )
    # Sampling: the fused path projects once per event and repeats over the draws.
    np.testing.assert_allclose(
        fused.sample(c[:6], 9, seed=3),
        plain.sample(c[:6], 9, seed=3),
        rtol=1e-4,
        atol=1e-4,
    )


def test_xla_sampling_matches_graph_sampling():
    (fused, _), _, c = _twin_models()
    xla = fused.sample(c[:5], 8, seed=4)
    fused.init_args["jit_compile"] = False
    graph = fused.sample(c[:5], 8, seed=4)
    fused.init_args["jit_compile"] = True
    np.testing.assert_allclose(xla, graph, rtol=1e-4, atol=1e-4)


def test_coupling_with_condition_repeats_inverts_with_exact_log_det():
    coupling = ConditionalAffineCoupling(
        4, subnet_hidden=[8], clamp=2.0, seed=1, name="coupling_00"
    )
    coupling.build_subnets(3)
    _perturb(coupling.trainable_variables, seed=22, scale=0.5)
    rng = np.random.default_rng(22)
    z = rng.normal(size=(N_POINTS, 4)).astype(np.float32)
    cond = rng.normal(size=(N_POINTS // 2, 3)).astype(np.float32)
    kwargs = {"conditional_input": tf.constant(cond), "condition_repeats": 2}
    _check_bijector(coupling, z, kwargs, rtol=2e-4, atol=2e-4)
    repeated = {"conditional_input": tf.constant(np.repeat(cond, 2, axis=0))}
    np.testing.assert_allclose(
        coupling.forward(z, **kwargs).numpy(),
        coupling.forward(z, **repeated).numpy(),
        rtol=1e-6,
        atol=1e-6,
    )


# ------------------------------------------------------------- pair masses

PAIR_NAMES = [
    f"{o}_{f}" for o in ("q1", "q2", "l1", "l2") for f in ("pt", "eta", "phi")
]


def _pairs_sample(rng, n):
    x = np.empty((n, 12), np.float32)
    x[:, 0::3] = rng.uniform(20.0, 120.0, (n, 4))
    x[:, 1::3] = rng.normal(0.0, 1.0, (n, 4))
    x[:, 2::3] = rng.uniform(-3.0, 3.0, (n, 4))
    return x


def test_pair_mass_swaps_pt2_for_the_invariant_mass_with_exact_log_det():
    from cinnflow.flows.preprocessing import PairMass

    bijector = PairMass([[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
    x = _pairs_sample(np.random.default_rng(21), 50).astype(np.float64)
    y = bijector.inverse(tf.constant(x)).numpy()
    for pt1, pt2 in ((0, 3), (6, 9)):
        deta, dphi = x[:, pt1 + 1] - x[:, pt2 + 1], x[:, pt1 + 2] - x[:, pt2 + 2]
        mass = np.sqrt(2 * x[:, pt1] * x[:, pt2] * (np.cosh(deta) - np.cos(dphi)))
        np.testing.assert_allclose(y[:, pt2], mass, rtol=1e-10)
    keep = [i for i in range(12) if i not in (3, 9)]
    np.testing.assert_array_equal(y[:, keep], x[:, keep])
    _check_bijector(bijector, y[:N_POINTS], {}, rtol=1e-9, atol=1e-9)
    with pytest.raises(ConfigError, match="mass slot"):
        PairMass([[0, 1, 2, 3, 4, 5], [3, 7, 8, 9, 10, 11]])


def _pair_model(cfg, x, c, seed):
    """A pair-mass model from ``cfg``, adapted, perturbed, its chain checked."""
    cfg = {**_SMALL, **cfg}
    del cfg["seed"]
    kinds = ["pt", "eta", "phi"] * 4
    model = ConditionalINN.from_config(cfg, kinds, kinds, 0, PAIR_NAMES)
    model.adapt(x, c)
    _perturb(model.trainable_variables, seed=seed, scale=0.2)
    features = model._features(c[:N_POINTS])
    kwargs = model.bijector_kwargs(
        features, model.condition_encoder(features), model._reference(c[:N_POINTS])
    )
    z = np.random.default_rng(seed + 5).normal(size=(N_POINTS, 12))
    _check_bijector(model.bijector, z.astype(np.float32), kwargs, rtol=2e-3, atol=2e-3)
    return model


def test_model_with_pair_masses_round_trips_and_keeps_parton_columns():
    rng = np.random.default_rng(22)
    x = _pairs_sample(rng, 800)
    c = (x * (1.0 + rng.normal(0.0, 0.05, x.shape))).astype(np.float32)
    cfg = {"phi_reference": True, "pair_masses": [["q1", "q2"], ["l1", "l2"]]}
    model = _pair_model(cfg, x, c, seed=4)
    assert model.init_args["mass_pairs"] == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    assert [model.flow_kinds[i] for i in (3, 9)] == ["mass", "mass"]
    # The standardisation sees log masses in the pt2 slots: their mean is the mean
    # log pair mass of the sample, not its mean log pt2.
    mass = np.sqrt(
        2 * x[:, 0] * x[:, 3] * (np.cosh(x[:, 1] - x[:, 4]) - np.cos(x[:, 2] - x[:, 5]))
    )
    assert float(model.parton_mean.numpy()[3]) == pytest.approx(
        np.log(mass).mean(), rel=1e-4
    )
    draws = model.sample(c[:20], 10, seed=2)
    assert np.all(draws[..., 0::3] > 0) and np.all(np.isfinite(draws))
    # Also where the column count is unknown while tracing.
    unknown = tf.function(
        model.pair_mass.inverse, input_signature=[tf.TensorSpec([None, None])]
    )
    np.testing.assert_allclose(
        unknown(x[:5]).numpy(), model.pair_mass.inverse(x[:5]).numpy(), rtol=1e-6
    )
    with pytest.raises(ConfigError, match="needs parton columns"):
        _pair_model({**cfg, "pair_masses": [["q1", "j7"]]}, x, c, seed=4)


def test_pt_order_of_a_mass_pair_is_kept_by_support_truncation(tmp_path):
    from cinnflow.sampling import sample_posterior

    rng = np.random.default_rng(23)
    x = _pairs_sample(rng, 800)
    # Quarks pT-ordered as in the prepared data, leptons not.
    x[:, [0, 3]] = np.sort(x[:, [0, 3]], axis=1)[:, ::-1]
    c = (x * (1.0 + rng.normal(0.0, 0.05, x.shape))).astype(np.float32)
    cfg = {**_SMALL, "pair_masses": [["q1", "q2"], ["l1", "l2"]]}
    del cfg["seed"]
    model = ConditionalINN.from_config(
        cfg, ["pt", "eta", "phi"] * 4, ["pt", "eta", "phi"] * 4, 0, PAIR_NAMES
    )
    model.adapt(x, c)
    assert model.support_order == ((0, 3),)
    plain = model.sample(c[:40], 25, seed=3)
    out_of_order = np.mean(plain[..., 3] > plain[..., 0])
    assert out_of_order > 0.05  # nothing in the flow's coordinates keeps the order
    draws, stats = sample_posterior(
        model,
        c[:40],
        n_draws=25,
        batch_size=16,
        seed=3,
        support_margin=5.0,
        return_stats=True,
    )
    assert np.all(draws[..., 0] >= draws[..., 3])
    assert stats["rejected_fraction"] >= out_of_order
    assert (
        stats["clipped_fraction"] < 0.01
    )  # an untrained flow; clipped ones ordered too
    # The lepton pair was not ordered in the training data: no constraint there.
    assert np.mean(draws[..., 9] > draws[..., 6]) > 0.05
    model.save(tmp_path / "model")
    assert ConditionalINN.load(tmp_path / "model").support_order == ((0, 3),)


W_LINE = (80.385, 2.085)


def test_breit_wigner_line_maps_its_masses_onto_a_unit_normal():
    from scipy import stats

    from cinnflow.flows.preprocessing import line_to_mass, mass_to_line

    m = stats.cauchy(W_LINE[0], 0.5 * W_LINE[1]).rvs(50_000, random_state=3)
    m = m[m > 0]  # the line is truncated to positive masses
    u = mass_to_line(tf.constant(m), *W_LINE).numpy()
    assert np.all(np.isfinite(u))
    assert stats.kstest(u, "norm").pvalue > 0.01
    # u is the probit of the Cauchy cumulative distribution truncated to m > 0.
    line = stats.cauchy(W_LINE[0], 0.5 * W_LINE[1])
    cdf = (line.cdf(m[:2000]) - line.cdf(0.0)) / line.sf(0.0)
    np.testing.assert_allclose(u[:2000], stats.norm.ppf(cdf), rtol=1e-7, atol=1e-7)
    back = line_to_mass(tf.constant(u), *W_LINE).numpy()
    np.testing.assert_allclose(back, m, rtol=1e-9)
    # The tails stay on the positive mass axis and keep their order.
    tails = line_to_mass(tf.constant([-8.0, -3.0, 0.0, 3.0, 8.0], tf.float64), *W_LINE)
    assert np.all(np.diff(tails.numpy()) > 0) and tails.numpy()[0] >= 0.0


def test_column_transform_with_a_line_has_the_exact_log_det():
    bijector = ColumnTransform(["pt", "mass", "phi", "mass"], lines={1: W_LINE})
    assert bijector.lines == {1: W_LINE}
    z = np.random.default_rng(31).normal(size=(N_POINTS, 4)).astype(np.float32)
    _check_bijector(bijector, z, {}, rtol=1e-4, atol=1e-4)
    x = bijector.forward(z).numpy()
    np.testing.assert_allclose(x[:, 3], np.exp(z[:, 3]), rtol=1e-5)  # plain log
    assert np.all(np.abs(x[:, 1] - W_LINE[0]) < 20.0)  # |u| < 3.5 stays near the line
    with pytest.raises(ConfigError, match="expected a mass column"):
        ColumnTransform(["pt", "mass"], lines={0: W_LINE})
    with pytest.raises(ConfigError, match="expected both > 0"):
        ColumnTransform(["pt", "mass"], lines={1: (80.0, 0.0)})


def test_model_with_pair_mass_lines_round_trips_and_checks_the_count():
    rng = np.random.default_rng(24)
    x = _pairs_sample(rng, 600)
    c = (x * (1.0 + rng.normal(0.0, 0.05, x.shape))).astype(np.float32)
    cfg = {
        "pair_masses": [["q1", "q2"], ["l1", "l2"]],
        "pair_mass_lines": [list(W_LINE), [91.188, 2.495]],
    }
    model = _pair_model(cfg, x, c, seed=5)
    assert model.column_transform.lines == {3: W_LINE, 9: (91.188, 2.495)}
    # Compiled with XLA; a Cauchy tail of the untrained flow can overflow pt2, which
    # the support truncation redraws.
    from cinnflow.sampling import sample_posterior

    draws = sample_posterior(
        model, c[:20], n_draws=10, batch_size=8, seed=2, support_margin=1.0
    )
    assert np.all(np.isfinite(draws)) and np.all(draws[..., 0::3] > 0)
    with pytest.raises(ConfigError, match="one \\(mass, width\\) in GeV per mass pair"):
        _pair_model({**cfg, "pair_mass_lines": [list(W_LINE)]}, x, c, seed=5)


def test_ordered_pair_masses_give_ordered_draws_with_exact_log_det():
    from cinnflow.flows.preprocessing import PairMass

    rng = np.random.default_rng(25)
    x = _pairs_sample(rng, 600)
    for lead in (0, 6):
        x[:, [lead, lead + 3]] = np.sort(x[:, [lead, lead + 3]], axis=1)[:, ::-1]
    bijector = PairMass([[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]], ordered=True)
    x64 = x[:50].astype(np.float64)
    y = bijector.inverse(tf.constant(x64)).numpy()
    np.testing.assert_allclose(y[:, 0], np.log(x64[:, 0] / x64[:, 3] - 1), rtol=1e-9)
    np.testing.assert_allclose(bijector.forward(y).numpy(), x64, rtol=1e-9)
    _check_bijector(bijector, y, {}, rtol=1e-6, atol=1e-6)
    c = (x * (1.0 + rng.normal(0.0, 0.05, x.shape))).astype(np.float32)
    cfg = {
        "pair_masses": [["q1", "q2"], ["l1", "l2"]],
        "pair_mass_lines": [list(W_LINE), [91.188, 2.495]],
        "pair_masses_ordered": [["q1", "q2"], ["l1", "l2"]],
    }
    model = _pair_model(cfg, x, c, seed=6)
    assert [model.flow_kinds[i] for i in (0, 3)] == ["other", "mass"]
    draws = model.sample(c[:30], 20, seed=4)
    assert np.all(draws[..., 0] > draws[..., 3]) and np.all(
        draws[..., 6] > draws[..., 9]
    )
    # The pair pts get a support box from the training range.
    low, high = model.support(0.0)
    assert low[3] == pytest.approx(x[:, 3].min(), rel=1e-5)
    assert high[0] == pytest.approx(x[:, 0].max(), rel=1e-5)
    with pytest.raises(ConfigError, match="expected a subset of those pairs"):
        _pair_model({**cfg, "pair_masses_ordered": [["q1", "l1"]]}, x, c, seed=6)
    swapped = x.copy()
    swapped[:2, [0, 3]] = swapped[:2, [3, 0]]
    with pytest.raises(CinnflowError, match="2 of 600 events are not ordered"):
        _pair_model(cfg, swapped, c, seed=6)
