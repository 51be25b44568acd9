"""Maximum-likelihood training of a ``ConditionalINN`` with exact resume.

Every epoch ends with a checkpoint (``tf.train.CheckpointManager``) holding the
weights, the optimiser state, the epoch counter, the early-stopping state and a
copy of the best weights. The shuffle order of epoch ``e`` is drawn from
``numpy.random.default_rng([seed, e])``, so a run resumed from a checkpoint visits
the same batches as an uninterrupted one and, on CPU, ends with the same weights.

SIGTERM and SIGINT (what a SLURM time limit or Ctrl-C sends) are caught while
training runs: the current step finishes, the model goes back to the last
checkpoint (the steps of the unfinished epoch are dropped and redone on resume) and
``TrainingInterrupted`` is raised. A second signal interrupts at once.
"""

import csv
import difflib
import json
import logging
import math
import signal
import threading
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras
from tqdm.auto import tqdm

from cinnflow.errors import ConfigError, TrainingError, TrainingInterrupted
from cinnflow.io.atomic import atomic_path
from cinnflow.training.mmd import DEFAULT_MMD_WIDTHS_GEV, MassMMD

__all__ = ["DEFAULT_TRAINING_CONFIG", "make_train_step", "train"]

logger = logging.getLogger(__name__)

DEFAULT_TRAINING_CONFIG = {
    "batch_size": 1024,
    "learning_rate": 1e-3,
    # Final / initial learning rate of the per-step cosine decay (1 = constant).
    "lr_decay": 0.01,
    "epochs": 60,
    # L2 penalty on the kernels (rank >= 2 weights), added to the loss.
    "weight_decay": 1e-5,
    "patience": 10,
    "max_minutes": 9.0,
    # Gradient global-norm clip; the log-likelihood of a flow has rare spikes.
    "clip_norm": 10.0,
    # XLA for the train and validation steps (see the README for the speed-up).
    "jit_compile": False,
    # Optional MMD of the invariant masses (cinnflow.training.mmd), computed on one
    # draw from the flow per training event; added as mmd_weight * MMD^2.
    "mmd": False,
    "mmd_weight": 1.0,
    "mmd_widths_gev": DEFAULT_MMD_WIDTHS_GEV,
    # Exact symmetries of the process and detector applied to the training events,
    # anew in every epoch (seeded by seed and epoch): "phi_rotation" turns every
    # event (parton and detector phi columns together) by a uniform angle,
    # "eta_reflection" flips the sign of every eta column in half of the events.
    "symmetries": (),
}
SYMMETRIES = ("phi_rotation", "eta_reflection")
# The MMD draws are clipped into the training range widened by this many standard
# deviations per preprocessed column (ConditionalINN.forward_latent): an untrained
# flow's tail draw can overflow exp(log pt), which made the gradient NaN.
MMD_CLIP_MARGIN = 1.0

_HISTORY_FILE = "history.json"
_CSV_COLUMNS = ("epoch", "train_loss", "val_loss", "learning_rate")


def _batches(n_events, batch_size, seed, epoch):
    """Index arrays of the full batches of one epoch (the remainder is dropped)."""
    order = np.random.default_rng([seed, epoch]).permutation(n_events)
    n_batches = n_events // batch_size
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(n_batches)]


def symmetric_copy(x_parton, c_detector, parton_kinds, detector_kinds, symmetries, rng):
    """The events turned in phi and/or reflected in eta, one draw per event.

    Args:
        x_parton, c_detector: float32 arrays (n, d) and (n, k).
        parton_kinds, detector_kinds: column kinds; every ``phi`` column is turned
            by the event's angle (and wrapped into [-pi, pi)), every ``eta``
            column flips sign in the reflected events.
        symmetries: subset of ``SYMMETRIES``.
        rng: ``numpy.random.Generator``.

    Returns:
        tuple of new arrays (the inputs are not changed).
    """
    x, c = x_parton.copy(), c_detector.copy()
    n = len(x)
    if "phi_rotation" in symmetries:
        angle = rng.uniform(-np.pi, np.pi, n).astype(np.float32)
        for array, kinds in ((x, parton_kinds), (c, detector_kinds)):
            for i, kind in enumerate(kinds):
                if kind == "phi":
                    array[:, i] = np.mod(array[:, i] + angle + np.pi, 2 * np.pi) - np.pi
    if "eta_reflection" in symmetries:
        sign = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
        for array, kinds in ((x, parton_kinds), (c, detector_kinds)):
            for i, kind in enumerate(kinds):
                if kind == "eta":
                    array[:, i] *= sign
    return x, c


def _check_cfg(cfg):
    cfg = dict(cfg)
    unknown = sorted(set(cfg) - set(DEFAULT_TRAINING_CONFIG))
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, DEFAULT_TRAINING_CONFIG, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        msg = (
            f"training: unknown key {key!r}{hint} "
            f"(allowed: {', '.join(sorted(DEFAULT_TRAINING_CONFIG))})"
        )
        raise ConfigError(msg)
    merged = {**DEFAULT_TRAINING_CONFIG, **cfg}
    symmetries = merged["symmetries"]
    if isinstance(symmetries, str) or not all(
        s in SYMMETRIES for s in symmetries or ()
    ):
        msg = (
            f"training.symmetries = {symmetries!r}: expected a list out of "
            f"{list(SYMMETRIES)}"
        )
        raise ConfigError(msg)
    merged["symmetries"] = tuple(symmetries or ())
    for key, (allowed, ok) in _RANGES.items():
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            msg = f"training.{key} = {value!r} is not a number; expected {allowed}"
            raise ConfigError(msg)
        if not ok(value):
            msg = f"training.{key} = {value!r} is out of range; expected {allowed}"
            raise ConfigError(msg)
    return merged


_RANGES = {
    "batch_size": ("an integer >= 1", lambda v: v >= 1 and int(v) == v),
    "learning_rate": ("a number > 0", lambda v: v > 0),
    "lr_decay": ("a number in (0, 1]", lambda v: 0 < v <= 1),
    "epochs": ("an integer >= 1", lambda v: v >= 1 and int(v) == v),
    "weight_decay": ("a number >= 0", lambda v: v >= 0),
    "patience": ("an integer >= 1", lambda v: v >= 1 and int(v) == v),
    "max_minutes": ("a number > 0", lambda v: v > 0),
    "clip_norm": ("a number > 0", lambda v: v > 0),
    "mmd_weight": ("a number >= 0", lambda v: v >= 0),
}


def _as_float32(pair, what):
    x_parton, c_detector = (np.asarray(a, np.float32) for a in pair)
    if len(x_parton) != len(c_detector):
        msg = f"{what}: {len(x_parton)} parton rows but {len(c_detector)} detector rows"
        raise TrainingError(msg)
    return x_parton, c_detector


def make_train_step(model, optimizer, cfg, *, seed, mmd=None):
    """The compiled training step: loss, gradients and one optimiser update.

    Args:
        model: a ``ConditionalINN``.
        optimizer: a built ``tf_keras`` optimiser over ``model.trainable_variables``.
        cfg: checked training config (``weight_decay``, ``jit_compile``,
            ``mmd_weight``).
        seed: integer seed of the MMD draws (the draws of step i use the stateless
            seed (seed, i), so a resumed run repeats them).
        mmd: None or a ``MassMMD``; then the loss includes
            ``mmd_weight * mmd(draws, x_parton)`` with one draw from the flow per
            event of the batch, for that event's condition.

    Returns:
        tf.function ``(x_parton, c_detector) -> (nll, mmd2)``; ``mmd2`` is 0 without
        the MMD term.
    """
    variables = list(model.trainable_variables)
    kernels = [v for v in variables if len(v.shape) >= 2]
    decay = float(cfg["weight_decay"])
    mmd_weight = float(cfg["mmd_weight"])

    def train_step(x_parton, c_detector):
        with tf.GradientTape() as tape:
            nll = -tf.reduce_mean(model.log_prob(x_parton, c_detector))
            loss = nll
            mmd2 = tf.zeros([])
            if mmd is not None:
                step = tf.cast(optimizer.iterations, tf.int64)
                z = tf.random.stateless_normal(
                    tf.stack([tf.shape(x_parton)[0], 1, model.dim]),
                    seed=tf.stack([tf.constant(seed, tf.int64), step]),
                )
                generated = model.forward_latent(
                    z, c_detector, clip_margin=MMD_CLIP_MARGIN
                )[:, 0]
                mmd2 = mmd(generated, x_parton)
                loss = loss + mmd_weight * mmd2
            if decay > 0:
                penalty = tf.add_n([tf.reduce_sum(tf.square(k)) for k in kernels])
                loss = loss + decay * penalty
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return nll, mmd2

    return tf.function(train_step, jit_compile=bool(cfg["jit_compile"]))


def train(
    model,
    train,
    val,
    *,
    cfg,
    checkpoint_dir,
    seed,
    loss_csv,
    parton_names=None,
):
    """Train ``model`` by maximum likelihood (mean negative ``log_prob``).

    Resumes from the latest checkpoint in ``checkpoint_dir`` if there is one. Stops at
    ``epochs``, after ``patience`` epochs without a better validation loss, or when
    ``max_minutes`` of wall-clock time are used up (the running epoch is cut short
    and validated). The best-validation weights are restored into ``model``.

    Args:
        model: an adapted ``ConditionalINN``.
        train: tuple (x_parton, c_detector) of arrays (n_train, d), (n_train, k).
        val: tuple (x_parton, c_detector) of the validation set.
        cfg: dict with keys of ``DEFAULT_TRAINING_CONFIG`` (missing keys take those
            values).
        checkpoint_dir: directory of the checkpoints and the loss history.
        seed: integer seed of the shuffle order.
        loss_csv: path of the CSV (epoch, train_loss, val_loss, learning_rate).
        parton_names: names of the parton columns (e.g. ``q1_pt``); needed only
            with ``cfg["mmd"]``, to find the columns of the invariant masses.

    Returns:
        dict with ``best_epoch``, ``best_val_loss``, ``epochs_done``, ``stop_reason``
        and ``history`` (list of per-epoch dicts).

    Raises:
        ConfigError: for unknown or out-of-range config values.
        TrainingError: when the loss becomes NaN or infinite (the model is reset to
            the last checkpoint) or the training set is smaller than one batch.
    """
    cfg = _check_cfg(cfg)
    start_time = time.monotonic()
    x_train, c_train = _as_float32(train, "train")
    x_val, c_val = _as_float32(val, "val")
    batch_size = int(cfg["batch_size"])
    steps_per_epoch = len(x_train) // batch_size
    if steps_per_epoch == 0:
        msg = f"{len(x_train)} training events is less than batch_size {batch_size}"
        raise TrainingError(msg)
    if not bool(model.adapted.numpy()):
        logger.warning("model was not adapted; adapting on the training set now")
        model.adapt(x_train, c_train)

    variables = list(model.trainable_variables)
    state = {
        "epoch": tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch"),
        "best_val": tf.Variable(np.inf, dtype=tf.float64, trainable=False),
        "best_epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
        "wait": tf.Variable(0, dtype=tf.int64, trainable=False),
        # Epochs the learning-rate schedule spans; shortened once, after the first
        # epoch, if cfg epochs cannot fit into max_minutes (see _plan_epochs).
        "planned_epochs": tf.Variable(
            int(cfg["epochs"]), dtype=tf.int64, trainable=False
        ),
        "planned": tf.Variable(False, trainable=False),
    }
    schedule = _CosineSchedule(
        float(cfg["learning_rate"]),
        final_factor=float(cfg["lr_decay"]),
        planned_epochs=state["planned_epochs"],
        steps_per_epoch=steps_per_epoch,
    )
    optimizer = tf_keras.optimizers.Adam(
        learning_rate=schedule, global_clipnorm=float(cfg["clip_norm"])
    )
    optimizer.build(variables)
    best_weights = [
        tf.Variable(v, trainable=False, name=f"best_{i:03d}")
        for i, v in enumerate(variables)
    ]
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, best_weights=best_weights, **state
    )
    checkpoint_dir = Path(checkpoint_dir)
    manager = tf.train.CheckpointManager(checkpoint, str(checkpoint_dir), max_to_keep=2)
    history = []
    if manager.latest_checkpoint:
        try:
            status = checkpoint.restore(manager.latest_checkpoint)
            status.assert_existing_objects_matched()
        # The checkpoint reader raises IndexError or KeyError on damaged files.
        except (
            tf.errors.OpError,
            ValueError,
            AssertionError,
            IndexError,
            KeyError,
        ) as err:
            msg = (
                f"cannot resume from checkpoint {manager.latest_checkpoint!r}: "
                f"{type(err).__name__}: {str(err).splitlines()[0]}; expected a "
                "checkpoint of this model and training config (delete "
                f"{str(checkpoint_dir)!r} to start afresh)"
            )
            raise TrainingError(msg) from err
        history = _read_history(checkpoint_dir)[: int(state["epoch"].numpy())]
        logger.info(
            "resumed from %s after epoch %d", manager.latest_checkpoint, len(history)
        )

    mmd = None
    if cfg["mmd"]:
        if parton_names is None:
            msg = "training.mmd is on; train() needs parton_names to find the masses"
            raise ConfigError(msg)
        mmd = MassMMD(parton_names, cfg["mmd_widths_gev"])
    train_step = make_train_step(model, optimizer, cfg, seed=seed, mmd=mmd)

    def val_step(x_parton, c_detector):
        return tf.reduce_sum(model.log_prob(x_parton, c_detector))

    d, k = x_train.shape[1], c_train.shape[1]
    jit = bool(cfg["jit_compile"])
    val_step = tf.function(
        val_step,
        input_signature=[
            tf.TensorSpec([None, d], tf.float32),
            tf.TensorSpec([None, k], tf.float32),
        ],
        jit_compile=jit,
    )

    def validate():
        total = 0.0
        for i in range(0, len(x_val), batch_size):
            total += float(
                val_step(x_val[i : i + batch_size], c_val[i : i + batch_size])
            )
        return -total / len(x_val)

    logger.info(
        "training %d trainable weights on %d events (%d steps/epoch), validating "
        "on %d; cfg %s",
        sum(int(np.prod(v.shape)) for v in variables),
        len(x_train),
        steps_per_epoch,
        len(x_val),
        cfg,
    )
    budget_s = 60.0 * float(cfg["max_minutes"])
    stop_reason = "epochs"
    epoch = int(state["epoch"].numpy())
    epochs_this_run = 0
    with _StopSignals() as stop:
        while epoch < int(state["planned_epochs"].numpy()):
            epoch_start = time.monotonic()
            losses = []
            mmd_values = []
            out_of_time = False
            # On a terminal only (disable=None); the epoch summary goes to the log.
            x_epoch, c_epoch = x_train, c_train
            if cfg["symmetries"]:
                x_epoch, c_epoch = symmetric_copy(
                    x_train,
                    c_train,
                    model.parton_kinds,
                    model.detector_kinds,
                    cfg["symmetries"],
                    np.random.default_rng([seed, epoch, 1]),
                )
            bar = tqdm(
                _batches(len(x_train), batch_size, seed, epoch),
                total=steps_per_epoch,
                desc=f"epoch {epoch}",
                unit="batch",
                leave=False,
                disable=None,
            )
            for step, idx in enumerate(bar):
                nll, mmd2 = train_step(x_epoch[idx], c_epoch[idx])
                nll = float(nll)
                bar.set_postfix(nll=f"{nll:.3f}", refresh=False)
                if not math.isfinite(nll):
                    _reset(checkpoint, manager)
                    msg = (
                        f"loss is {nll} at epoch {epoch} step {step}; the model is "
                        f"reset to {_last_good(manager)} (try a lower learning_rate "
                        "or clamp)"
                    )
                    raise TrainingError(msg)
                losses.append(nll)
                if mmd is not None:
                    mmd_values.append(float(mmd2))
                if stop.signum is not None:
                    _reset(checkpoint, manager)
                    msg = _interrupted_message(
                        stop.signum, epoch, step + 1, steps_per_epoch, manager
                    )
                    raise TrainingInterrupted(msg)
                if time.monotonic() - start_time > budget_s:
                    out_of_time = True
                    break
            bar.close()
            train_loss = float(np.mean(losses))
            val_loss = validate()
            if not math.isfinite(val_loss):
                _reset(checkpoint, manager)
                msg = (
                    f"validation loss is {val_loss} after epoch {epoch}; the model "
                    f"is reset to {_last_good(manager)}"
                )
                raise TrainingError(msg)
            learning_rate = float(schedule(optimizer.iterations))
            seconds = time.monotonic() - epoch_start
            if val_loss < float(state["best_val"].numpy()):
                state["best_val"].assign(val_loss)
                state["best_epoch"].assign(epoch)
                state["wait"].assign(0)
                for best, v in zip(best_weights, variables, strict=True):
                    best.assign(v)
            else:
                state["wait"].assign_add(1)
            state["epoch"].assign(epoch + 1)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "learning_rate": learning_rate,
                }
            )
            logger.info(
                "epoch %d: train_loss %.4f val_loss %.4f lr %.2e (%.0f s, %.0f "
                "events/s)",
                epoch,
                train_loss,
                val_loss,
                learning_rate,
                seconds,
                len(losses) * batch_size / seconds,
            )
            if mmd_values:
                logger.info(
                    "epoch %d: mean MMD^2 %.4g", epoch, float(np.mean(mmd_values))
                )
            _write_history(checkpoint_dir, history, loss_csv)
            epochs_this_run += 1
            # The first epoch of a run includes graph tracing; time the second one.
            if not bool(state["planned"].numpy()) and epochs_this_run == 2:
                _plan_epochs(state, epoch, seconds, start_time, budget_s)
            manager.save(checkpoint_number=epoch)
            if stop.signum is not None:
                msg = _interrupted_message(
                    stop.signum, epoch + 1, 0, steps_per_epoch, manager
                )
                raise TrainingInterrupted(msg)
            if out_of_time:
                stop_reason = "max_minutes"
                logger.warning(
                    "stopped in epoch %d: max_minutes = %s used up",
                    epoch,
                    cfg["max_minutes"],
                )
                break
            if int(state["wait"].numpy()) >= int(cfg["patience"]):
                stop_reason = "patience"
                logger.info(
                    "early stop after epoch %d (patience %d)", epoch, cfg["patience"]
                )
                break
            epoch += 1
        else:
            if int(state["planned_epochs"].numpy()) < int(cfg["epochs"]):
                stop_reason = "planned_epochs"

    for best, v in zip(best_weights, variables, strict=True):
        v.assign(best)
    # A run resumed from the checkpoint of a finished training runs no epoch; the
    # loss CSV is an output all the same.
    if epochs_this_run == 0:
        _write_history(checkpoint_dir, history, loss_csv)
    result = {
        "best_epoch": int(state["best_epoch"].numpy()),
        "best_val_loss": float(state["best_val"].numpy()),
        "epochs_done": int(state["epoch"].numpy()),
        "stop_reason": stop_reason,
        "history": history,
    }
    logger.info(
        "training done (%s): best val_loss %.4f at epoch %d, %.1f min",
        stop_reason,
        result["best_val_loss"],
        result["best_epoch"],
        (time.monotonic() - start_time) / 60.0,
    )
    return result


class _CosineSchedule(tf_keras.optimizers.schedules.LearningRateSchedule):
    """Per-step cosine decay from ``initial`` to ``initial * final_factor``.

    The decay ends after ``planned_epochs`` (a variable, so that the plan can be
    shortened during training) times ``steps_per_epoch`` steps.
    """

    def __init__(self, initial, *, final_factor, planned_epochs, steps_per_epoch):
        self.initial = initial
        self.final_factor = final_factor
        self.planned_epochs = planned_epochs
        self.steps_per_epoch = steps_per_epoch

    def __call__(self, step):
        total = tf.cast(self.planned_epochs * self.steps_per_epoch, tf.float32)
        progress = tf.minimum(tf.cast(step, tf.float32) / total, 1.0)
        cosine = 0.5 * (1.0 + tf.cos(np.pi * progress))
        return self.initial * (self.final_factor + (1.0 - self.final_factor) * cosine)

    def get_config(self):
        return {"initial": self.initial, "final_factor": self.final_factor}


# Share of the remaining wall-clock budget that planned epochs may use; the rest
# covers validation noise, a slower machine and the final restore.
_BUDGET_SAFETY = 0.9


def _plan_epochs(state, epoch, epoch_seconds, start_time, budget_s):
    """Fit the learning-rate schedule into the time budget, once per training.

    The duration of the second epoch of a run gives the number of epochs that fit
    into the rest of ``max_minutes``. If fewer than planned, the cosine schedule is
    shortened so that the learning rate still reaches its final value. The plan is
    saved in the checkpoint, so a resumed run follows it exactly.
    """
    remaining = budget_s - (time.monotonic() - start_time)
    fit = epoch + 1 + int(_BUDGET_SAFETY * remaining / max(epoch_seconds, 1e-3))
    planned = int(state["planned_epochs"].numpy())
    if fit < planned:
        logger.warning(
            "only about %d of %d epochs fit into max_minutes; the learning-rate "
            "schedule now ends at epoch %d",
            fit,
            planned,
            fit,
        )
        state["planned_epochs"].assign(max(fit, epoch + 1))
    state["planned"].assign(True)


class _StopSignals:
    """Record SIGTERM and SIGINT inside the block instead of dying at once.

    The training loop polls ``signum`` after every step. A second signal raises
    ``KeyboardInterrupt`` at once. Outside the main thread (where Python cannot set
    handlers) the block does nothing.
    """

    _SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self._SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, exc_type, exc, tb):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False


def _last_good(manager):
    if manager.latest_checkpoint:
        return f"the last good checkpoint {manager.latest_checkpoint!r}"
    return "its initial weights (no checkpoint was written yet)"


def _interrupted_message(signum, epoch, steps_done, steps_per_epoch, manager):
    name = signal.Signals(signum).name
    if manager.latest_checkpoint:
        kept = (
            f"checkpoint {manager.latest_checkpoint!r} (end of epoch {epoch - 1}) is "
            "kept and a re-run resumes from it"
        )
    else:
        kept = "no checkpoint was written yet, so a re-run starts from the beginning"
    dropped = (
        f"; the {steps_done} of {steps_per_epoch} steps done in epoch {epoch} are "
        "redone"
        if steps_done
        else ""
    )
    return f"training interrupted by {name} in epoch {epoch}: {kept}{dropped}"


def _reset(checkpoint, manager):
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)


def _read_history(checkpoint_dir):
    path = Path(checkpoint_dir) / _HISTORY_FILE
    return json.loads(path.read_text()) if path.exists() else []


def _write_history(checkpoint_dir, history, loss_csv):
    with atomic_path(Path(checkpoint_dir) / _HISTORY_FILE) as tmp:
        tmp.write_text(json.dumps(history))
    with atomic_path(loss_csv) as tmp, open(tmp, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=_CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(history)
