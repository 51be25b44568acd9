"""Training, resume, NaN handling, sampling and a posterior value test."""

import csv

import numpy as np
import pytest

from cinnflow.errors import TrainingError
from cinnflow.flows import ConditionalINN
from cinnflow.sampling import sample_posterior
from cinnflow.training import trainer
from cinnflow.training.trainer import train

PARTON_KINDS = ["other", "other"]
DETECTOR_KINDS = ["other"]


def _toy(n, seed):
    """x | c ~ N(mu(c), diag(sigma(c)^2)), nonlinear mean and varying width."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1.5, 1.5, (n, 1))
    mu, sigma = _toy_truth(c[:, 0])
    x = mu + sigma * rng.normal(size=(n, 2))
    return x.astype(np.float32), c.astype(np.float32)


def _toy_truth(c):
    mu = np.stack([np.sin(2.0 * c), 0.5 * c**2], axis=-1)
    sigma = np.stack([np.full_like(c, 0.2), 0.1 + 0.1 * np.abs(c)], axis=-1)
    return mu, sigma


def _model(seed=5, **overrides):
    kwargs = dict(
        n_blocks=2,
        subnet_hidden=[16],
        condition_hidden=[16],
        condition_dim=4,
        clamp=2.0,
        seed=seed,
    )
    kwargs.update(overrides)
    return ConditionalINN(PARTON_KINDS, DETECTOR_KINDS, **kwargs)


def _weights(model):
    return [v.numpy().copy() for v in model.trainable_variables]


CFG = dict(batch_size=64, learning_rate=3e-3, lr_decay=0.1, epochs=4, patience=10)


def _run(tmp_path, name, data, val, cfg=CFG):
    model = _model()
    model.adapt(*data)
    result = train(
        model,
        data,
        val,
        cfg=cfg,
        checkpoint_dir=tmp_path / name,
        seed=17,
        loss_csv=tmp_path / f"{name}.csv",
    )
    return model, result


def test_resume_after_interruption_gives_identical_weights(tmp_path, monkeypatch):
    data, val = _toy(640, seed=1), _toy(128, seed=2)
    reference, ref_result = _run(tmp_path, "straight", data, val)

    original = trainer._batches

    def interrupted(n_events, batch_size, seed, epoch):
        batches = original(n_events, batch_size, seed, epoch)
        if epoch == 2:
            # Simulates a killed job in the middle of epoch 2.
            def generator():
                yield from batches[:3]
                raise KeyboardInterrupt

            return generator()
        return batches

    monkeypatch.setattr(trainer, "_batches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "resumed", data, val)
    monkeypatch.setattr(trainer, "_batches", original)
    resumed, result = _run(tmp_path, "resumed", data, val)

    for a, b in zip(_weights(reference), _weights(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert result["history"] == ref_result["history"]
    with open(tmp_path / "resumed.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert list(rows[0]) == ["epoch", "train_loss", "val_loss", "learning_rate"]


def test_resuming_a_finished_training_still_writes_the_loss_csv(tmp_path):
    # A rerun after the model output was removed resumes the finished checkpoint and
    # runs no epoch; the workflow still needs its loss CSV (it used to be missing).
    data, val = _toy(640, seed=1), _toy(128, seed=2)
    first, _ = _run(tmp_path, "done", data, val)
    (tmp_path / "done.csv").unlink()
    again, result = _run(tmp_path, "done", data, val)
    with open(tmp_path / "done.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(r["epoch"]) for r in rows] == list(range(result["epochs_done"]))
    for a, b in zip(_weights(first), _weights(again), strict=True):
        np.testing.assert_array_equal(a, b)


def test_best_validation_weights_are_restored(tmp_path):
    data, val = _toy(640, seed=1), _toy(128, seed=2)
    model, result = _run(tmp_path, "best", data, val)
    val_loss = -float(np.mean(model.log_prob(*val).numpy()))
    assert val_loss == pytest.approx(result["best_val_loss"], rel=1e-5, abs=1e-5)


def test_nan_loss_raises_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    x, c = _toy(640, seed=1)
    model = _model()
    model.adapt(x, c)
    x[-1] = np.nan
    original = trainer._batches

    def with_nan(n_events, batch_size, seed, epoch):
        batches = original(n_events - 1, batch_size, seed, epoch)
        if epoch == 1:
            batches[2] = np.append(batches[2][1:], n_events - 1)
        return batches

    monkeypatch.setattr(trainer, "_batches", with_nan)
    with pytest.raises(TrainingError, match="epoch 1 step 2") as info:
        train(
            model,
            (x, c),
            _toy(128, seed=2),
            cfg=CFG,
            checkpoint_dir=tmp_path / "nan",
            seed=3,
            loss_csv=tmp_path / "nan.csv",
        )
    assert f"last good checkpoint '{tmp_path / 'nan' / 'ckpt-0'}'" in str(info.value)
    assert all(np.all(np.isfinite(w)) for w in _weights(model))
    assert (tmp_path / "nan" / "checkpoint").exists()
    assert not (tmp_path / "nan" / "ckpt-1.index").exists()


def test_nan_loss_before_any_checkpoint_never_saves_a_model(tmp_path):
    x, c = _toy(640, seed=1)
    model = _model()
    model.adapt(x, c)
    x[:] = np.nan  # every batch diverges, the first one included
    with pytest.raises(TrainingError, match="epoch 0 step 0") as info:
        _run_model(model, (x, c), tmp_path)
    assert "no checkpoint was written yet" in str(info.value)
    with pytest.raises(TrainingError, match="refusing to save the model"):
        model.save(tmp_path / "model")
    assert not (tmp_path / "model").exists()
    assert not list(tmp_path.glob(".model.tmp*"))


def _run_model(model, data, tmp_path):
    return train(
        model,
        data,
        _toy(128, seed=2),
        cfg=CFG,
        checkpoint_dir=tmp_path / "ckpt",
        seed=3,
        loss_csv=tmp_path / "loss.csv",
    )


def test_sample_posterior_is_batch_independent():
    model = _model()
    _, c = _toy(30, seed=4)
    model.adapt(*_toy(200, seed=3))
    small = sample_posterior(model, c, n_draws=5, batch_size=7, seed=9)
    whole = sample_posterior(model, c, n_draws=5, batch_size=100, seed=9)
    assert small.shape == (30, 5, 2) and small.dtype == np.float32
    np.testing.assert_allclose(small, whole, rtol=1e-6, atol=1e-6)


# Posterior value test. Tolerances: the mean within 0.05 (a quarter of the narrowest
# width, about 4 standard errors of the 2000-draw mean at sigma 0.2 plus training
# error) and the width within 20 %.
MEAN_TOL = 0.05
WIDTH_RTOL = 0.2


def test_short_training_recovers_posterior_mean_and_width(tmp_path):
    data, val = _toy(6000, seed=11), _toy(1000, seed=12)
    model = _model(
        seed=1,
        n_blocks=4,
        subnet_hidden=[48, 48],
        condition_hidden=[32],
        condition_dim=8,
    )
    model.adapt(*data)
    cfg = dict(batch_size=200, learning_rate=3e-3, lr_decay=0.05, epochs=12, patience=5)
    train(
        model,
        data,
        val,
        cfg=cfg,
        checkpoint_dir=tmp_path / "toy",
        seed=1,
        loss_csv=tmp_path / "toy.csv",
    )
    c_test = np.array([[-1.0], [0.0], [0.7]], np.float32)
    draws = sample_posterior(model, c_test, n_draws=2000, batch_size=3, seed=2)
    mu, sigma = _toy_truth(c_test[:, 0])
    mean, width = draws.mean(axis=1), draws.std(axis=1)
    np.testing.assert_allclose(mean, mu, atol=MEAN_TOL, err_msg="posterior mean")
    np.testing.assert_allclose(width, sigma, rtol=WIDTH_RTOL, err_msg="posterior width")


def test_max_minutes_stops_cleanly_with_best_weights(tmp_path):
    data, val = _toy(640, seed=1), _toy(128, seed=2)
    cfg = {**CFG, "max_minutes": 1e-4}
    model, result = _run(tmp_path, "budget", data, val, cfg=cfg)
    assert result["stop_reason"] == "max_minutes"
    assert result["epochs_done"] == 1
    assert (tmp_path / "budget.csv").read_text().count("\n") == 2
    assert all(np.all(np.isfinite(w)) for w in _weights(model))


def test_support_truncation_redraws_outside_draws():
    model = _model()
    x, c = _toy(400, seed=3)
    model.adapt(x, c)
    _, c_test = _toy(40, seed=4)
    plain = sample_posterior(model, c_test, n_draws=50, batch_size=16, seed=9)
    low, high = model.support(0.0)
    outside = ((plain < low) | (plain > high)).any(axis=-1)
    assert outside.mean() > 0.005  # an untrained flow overshoots the training box
    draws, stats = sample_posterior(
        model,
        c_test,
        n_draws=50,
        batch_size=16,
        seed=9,
        support_margin=0.0,
        return_stats=True,
    )
    assert np.all((draws >= low) & (draws <= high))
    assert stats["rejected_fraction"] == pytest.approx(outside.mean())
    assert stats["clipped_fraction"] == 0.0 and stats["redraw_rounds"] >= 1
    # Draws inside the box are kept as they are.
    np.testing.assert_array_equal(draws[~outside], plain[~outside])
    # Re-draws are batch independent too.
    other = sample_posterior(
        model, c_test, n_draws=50, batch_size=7, seed=9, support_margin=0.0
    )
    np.testing.assert_allclose(draws, other, rtol=1e-6, atol=1e-6)


def test_support_truncation_clips_when_redraws_run_out():
    model = _model()
    x, c = _toy(400, seed=3)
    model.adapt(x, c)
    _, c_test = _toy(20, seed=4)
    draws, stats = sample_posterior(
        model,
        c_test,
        n_draws=30,
        batch_size=16,
        seed=9,
        support_margin=0.0,
        max_redraws=0,
        return_stats=True,
    )
    low, high = model.support(0.0)
    assert np.all((draws >= low - 1e-6) & (draws <= high + 1e-6))
    assert stats["clipped_fraction"] == stats["rejected_fraction"] > 0


# ---------------------------------------------------------------- MMD term

MMD_NAMES = [f"{o}_{f}" for o in ("q1", "q2", "l1", "l2") for f in ("pt", "eta", "phi")]


def _zw_toy(n, seed):
    """Parton (pt, eta, phi) of q1 q2 l1 l2 and a smeared copy as the condition."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, 12), np.float32)
    x[:, 0::3] = rng.uniform(20.0, 120.0, (n, 4))
    x[:, 1::3] = rng.normal(0.0, 1.0, (n, 4))
    x[:, 2::3] = rng.uniform(-3.0, 3.0, (n, 4))
    c = x * (1.0 + rng.normal(0.0, 0.05, x.shape))
    return x, c.astype(np.float32)


def _zw_model():
    return ConditionalINN(
        ["pt", "eta", "phi"] * 4,
        ["pt", "eta", "phi"] * 4,
        n_blocks=2,
        subnet_hidden=[16],
        condition_hidden=[16],
        condition_dim=4,
        clamp=2.0,
        seed=3,
    )


def _one_step(x, c, mmd_cfg, spy=None):
    import tensorflow as tf
    import tf_keras

    from cinnflow.training.mmd import MassMMD

    model = _zw_model()
    model.adapt(x, c)
    cfg = trainer._check_cfg({"jit_compile": False, **mmd_cfg})
    optimizer = tf_keras.optimizers.Adam(learning_rate=1e-2)
    optimizer.build(model.trainable_variables)
    mmd = None
    if cfg["mmd"]:
        mmd = MassMMD(MMD_NAMES, cfg["mmd_widths_gev"])
        if spy is not None:
            spy["mmd"] = mmd
            mmd = spy["wrap"](mmd)
    step = trainer.make_train_step(model, optimizer, cfg, seed=7, mmd=mmd)
    tf.config.run_functions_eagerly(True)
    try:
        nll, mmd2 = step(tf.constant(x), tf.constant(c))
    finally:
        tf.config.run_functions_eagerly(False)
    return model, float(nll), float(mmd2)


def test_mmd_term_changes_the_loss_and_its_gradient_reaches_the_flow():
    import tensorflow as tf

    from cinnflow.training.mmd import MassMMD, pair_mass

    x, c = _zw_toy(256, seed=1)
    # The term: positive, and its gradient reaches the coupling weights.
    model = _zw_model()
    model.adapt(x, c)
    z = tf.random.stateless_normal([256, 1, 12], seed=[7, 0])
    mmd = MassMMD(MMD_NAMES, {"m_qq": [5.0], "m_ll": [5.0]})
    with tf.GradientTape() as tape:
        draws = model.forward_latent(z, c, clip_margin=trainer.MMD_CLIP_MARGIN)
        value = mmd(draws[:, 0], tf.constant(x))
    grads = tape.gradient(value, model.trainable_variables)
    assert float(value) > 1e-3
    coupling_vars = {id(v) for v in model.couplings[0].trainable_variables}
    moved = [
        float(tf.reduce_max(tf.abs(g)))
        for g, v in zip(grads, model.trainable_variables, strict=True)
        if id(v) in coupling_vars and g is not None
    ]
    assert moved and max(moved) > 0.0
    # The masses are those of massless pairs: m^2 = 2 pt1 pt2 (cosh deta - cos dphi).
    m = pair_mass(tf.constant(x), [0, 1, 2, 3, 4, 5]).numpy()
    expected = np.sqrt(
        2 * x[:, 0] * x[:, 3] * (np.cosh(x[:, 1] - x[:, 4]) - np.cos(x[:, 2] - x[:, 5]))
    )
    np.testing.assert_allclose(m, expected, rtol=1e-4)

    # One training step: the NLL is the same, the update is not; weight 0 = off.
    widths = {"mmd_widths_gev": {"m_qq": [5.0], "m_ll": [5.0]}}
    off, nll_off, mmd_off = _one_step(x, c, {"mmd": False})
    on, nll_on, mmd_on = _one_step(x, c, {"mmd": True, "mmd_weight": 10.0, **widths})
    zero, _, _ = _one_step(x, c, {"mmd": True, "mmd_weight": 0.0, **widths})
    assert nll_on == pytest.approx(nll_off, rel=1e-6)
    assert mmd_off == 0.0 and mmd_on == pytest.approx(float(value), rel=1e-5)
    diff_on = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(_weights(on), _weights(off), strict=True)
    )
    assert diff_on > 1e-6
    for a, b in zip(_weights(zero), _weights(off), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_mmd_uses_draws_from_the_model_for_the_batch_conditions():
    import tensorflow as tf

    x, c = _zw_toy(128, seed=2)
    seen = {}

    def wrap(mmd):
        def spy(generated, x_parton):
            seen["generated"] = generated.numpy()
            seen["x_parton"] = x_parton.numpy()
            return mmd(generated, x_parton)

        return spy

    reference = _zw_model()
    reference.adapt(x, c)
    # Step 0 draws z from the stateless seed (seed=7, step 0), before the update.
    z = tf.random.stateless_normal([128, 1, 12], seed=tf.constant([7, 0], tf.int64))
    expected = reference.forward_latent(z, c, clip_margin=trainer.MMD_CLIP_MARGIN)
    expected = expected[:, 0].numpy()
    _one_step(x, c, {"mmd": True}, spy={"wrap": wrap})
    np.testing.assert_allclose(seen["generated"], expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(seen["x_parton"], x)
    # Other conditions give other draws: the draws follow the batch's conditions.
    other = reference.forward_latent(z, c[::-1].copy())[:, 0].numpy()
    assert np.max(np.abs(other - seen["generated"])) > 1.0


def test_clipped_draws_keep_the_mmd_gradient_finite_in_the_far_tail():
    import tensorflow as tf

    from cinnflow.training.mmd import MassMMD

    x, c = _zw_toy(64, seed=5)
    model = _zw_model()
    model.adapt(x, c)
    mmd = MassMMD(MMD_NAMES, {"m_qq": [5.0], "m_ll": [5.0]})
    # Inside the training range the clipped map is the map.
    z = tf.random.stateless_normal([64, 1, 12], seed=[3, 0]) * 0.1
    np.testing.assert_allclose(
        model.forward_latent(z, c, clip_margin=1.0).numpy(),
        model.forward_latent(z, c).numpy(),
        rtol=1e-5,
    )
    # A latent point far in the tail: log pt overflows without the clip, and the
    # gradient of the MMD is NaN; with the clip every pt stays inside the widened
    # training range and every gradient is finite.
    far = tf.fill([64, 1, 12], 2000.0)
    assert not np.all(np.isfinite(model.forward_latent(far, c).numpy()))
    with tf.GradientTape() as tape:
        draws = model.forward_latent(far, c, clip_margin=1.0)[:, 0]
        value = mmd(draws, tf.constant(x))
    grads = tape.gradient(value, model.trainable_variables)
    assert np.isfinite(float(value))
    assert all(np.all(np.isfinite(g.numpy())) for g in grads if g is not None)
    log_pt = np.log(draws.numpy()[:, 0::3])
    std = model.parton_std.numpy()[0::3]
    assert np.all(log_pt <= model.support_max[0::3] + std + 1e-4)
    assert np.all(log_pt >= model.support_min[0::3] - std - 1e-4)


def test_train_with_mmd_needs_parton_names_and_runs(tmp_path):
    from cinnflow.errors import ConfigError

    data, val = _zw_toy(256, seed=3), _zw_toy(64, seed=4)
    model = _zw_model()
    model.adapt(*data)
    cfg = {**CFG, "epochs": 1, "mmd": True}
    kwargs = dict(cfg=cfg, checkpoint_dir=tmp_path / "mmd", seed=1)
    with pytest.raises(ConfigError, match="parton_names"):
        train(model, data, val, loss_csv=tmp_path / "a.csv", **kwargs)
    result = train(
        model,
        data,
        val,
        loss_csv=tmp_path / "b.csv",
        parton_names=MMD_NAMES,
        **kwargs,
    )
    assert result["epochs_done"] == 1 and np.isfinite(result["best_val_loss"])
    with pytest.raises(ConfigError, match="m_ww"):
        train(
            model,
            data,
            val,
            loss_csv=tmp_path / "c.csv",
            parton_names=MMD_NAMES,
            **{**kwargs, "cfg": {**cfg, "mmd_widths_gev": {"m_ww": [1.0]}}},
        )


def test_xla_training_matches_graph_training(tmp_path):
    data, val = _toy(320, seed=5), _toy(64, seed=6)
    cfg = {**CFG, "epochs": 1}
    _, graph = _run(tmp_path, "graph", data, val, cfg={**cfg, "jit_compile": False})
    _, xla = _run(tmp_path, "xla", data, val, cfg={**cfg, "jit_compile": True})
    assert xla["history"][0]["train_loss"] == pytest.approx(
        graph["history"][0]["train_loss"], rel=1e-4, abs=1e-4
    )
    assert xla["best_val_loss"] == pytest.approx(
        graph["best_val_loss"], rel=1e-4, abs=1e-4
    )


def test_symmetric_copy_turns_and_reflects_whole_events():
    from cinnflow.training.trainer import symmetric_copy

    rng = np.random.default_rng(3)
    kinds = ["pt", "eta", "phi", "pt", "eta", "phi"]
    x = np.stack(
        [
            rng.uniform(20, 100, 500),
            rng.normal(0, 1, 500),
            rng.uniform(-np.pi, np.pi, 500),
            rng.uniform(20, 100, 500),
            rng.normal(0, 1, 500),
            rng.uniform(-np.pi, np.pi, 500),
        ],
        axis=1,
    ).astype(np.float32)
    c = x[:, :3] + rng.normal(0, 0.05, (500, 3)).astype(np.float32)
    before = (x.copy(), c.copy())
    sym = ("phi_rotation", "eta_reflection")
    xs, cs = symmetric_copy(x, c, kinds, kinds[:3], sym, np.random.default_rng(1))
    np.testing.assert_array_equal(x, before[0])  # the inputs are untouched
    np.testing.assert_array_equal(c, before[1])
    np.testing.assert_array_equal(xs[:, [0, 3]], x[:, [0, 3]])  # pT unchanged
    # One angle per event for all phi columns, parton and detector: differences
    # are kept (mod 2 pi) and the angles stay in [-pi, pi).
    turn = np.angle(np.exp(1j * (xs[:, 2] - x[:, 2])))
    for a, b in ((xs[:, 5], x[:, 5]), (cs[:, 2], c[:, 2])):
        np.testing.assert_allclose(np.angle(np.exp(1j * (a - b))), turn, atol=1e-5)
    assert np.all(np.abs(xs[:, [2, 5]]) <= np.pi)
    assert np.std(turn) > 1.5  # uniform on (-pi, pi): std 1.81
    # One reflection per event for all eta columns.
    flip = np.sign(xs[:, 1] * x[:, 1])
    np.testing.assert_array_equal(np.sign(xs[:, 4] * x[:, 4]), flip)
    np.testing.assert_array_equal(np.sign(cs[:, 1] * c[:, 1]), flip)
    assert 0.4 < np.mean(flip < 0) < 0.6
    # Seeded: the same generator seed gives the same copy.
    again = symmetric_copy(x, c, kinds, kinds[:3], sym, np.random.default_rng(1))
    np.testing.assert_array_equal(again[0], xs)


def test_unknown_symmetry_is_refused(tmp_path):
    from cinnflow.errors import ConfigError

    data, val = _toy(256, 1), _toy(64, 2)
    with pytest.raises(ConfigError, match=r"training.symmetries = \['phi'\]"):
        _run(tmp_path, "m", data, val, cfg={**CFG, "symmetries": ["phi"]})
