"""Same config and seeds, same numbers: trainings in separate processes on CPU.

With TensorFlow's op determinism switched on by ``enable_determinism`` (what the
train and sample scripts call unless ``training.deterministic`` is false), two
trainings of a tiny cINN in two fresh Python processes give bit-identical weights,
and the same sampling seed gives bit-identical posterior draws. (Prepared data:
tests/test_preparation.py compares two preparations byte for byte.)
"""

import subprocess
import sys
import textwrap

import numpy as np

_TRAIN = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    from cinnflow.flows import ConditionalINN
    from cinnflow.sampling import sample_posterior
    from cinnflow.training import enable_determinism, train

    enable_determinism(17)
    assert tf_config.is_op_determinism_enabled()  # not in the public API

    out = sys.argv[1]
    rng = np.random.default_rng(1)
    c = rng.uniform(-1.5, 1.5, (640, 1)).astype(np.float32)
    x = np.concatenate([np.sin(2 * c), 0.5 * c**2], axis=1)
    x = (x + 0.2 * rng.normal(size=x.shape)).astype(np.float32)
    model = ConditionalINN(["other", "other"], ["other"], n_blocks=2,
                           subnet_hidden=[16], condition_hidden=[16],
                           condition_dim=4, clamp=2.0, seed=5)
    model.adapt(x, c)
    train(model, (x[:512], c[:512]), (x[512:], c[512:]),
          cfg=dict(batch_size=64, learning_rate=3e-3, epochs=2, patience=10),
          checkpoint_dir=out + "_checkpoints", seed=17, loss_csv=out + ".csv")
    draws = sample_posterior(model, c[:50], n_draws=8, batch_size=25, seed=3)
    weights = {f"w{i}": v.numpy() for i, v in enumerate(model.trainable_variables)}
    np.savez(out + ".npz", draws=draws, **weights)
    """
)


def _train_in_a_fresh_process(prefix):
    result = subprocess.run(
        [sys.executable, "-c", _TRAIN, str(prefix)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(f"{prefix}.npz") as data:
        return {key: data[key] for key in data.files}


def test_two_cpu_trainings_give_identical_weights_and_draws(tmp_path):
    first = _train_in_a_fresh_process(tmp_path / "a")
    second = _train_in_a_fresh_process(tmp_path / "b")
    assert first.keys() == second.keys() and len(first) > 4
    for key, value in first.items():
        assert value.tobytes() == second[key].tobytes(), key
    assert np.isfinite(first["draws"]).all() and first["draws"].std() > 0
    # Two epochs were trained and the loss changed between them.
    loss = (tmp_path / "a.csv").read_text().splitlines()
    assert len(loss) == 3 and loss[1] != loss[2]
