"""Training killed by SIGTERM or SIGINT resumes to the same weights (issue 7).

A child process trains the tiny toy model of ``test_training``; the test sends the
signal once the first checkpoint exists, checks the exit status, the message and
the kept checkpoint, re-runs the child and compares its final weights with an
uninterrupted run in this process, bit for bit (CPU).
"""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from test_training import CFG, _run, _toy, _weights

TESTS = Path(__file__).resolve().parent
TIMEOUT_S = 600

# The child sleeps PACE_S per step so that the signal lands inside an epoch; the
# sleep changes no value. 10 steps per epoch, 4 epochs (CFG).
PACE_S = 0.05
CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
import numpy as np
from test_training import CFG, _model, _toy
from cinnflow.logs import setup_logging
from cinnflow.training import trainer

checkpoints, weights, pace = sys.argv[1], sys.argv[2], float(sys.argv[3])
setup_logging(None)
batches = trainer._batches

def paced(*args):
    for batch in batches(*args):
        time.sleep(pace)
        yield batch

trainer._batches = paced
data, val = _toy(640, seed=1), _toy(128, seed=2)
model = _model()
model.adapt(*data)
trainer.train(model, data, val, cfg=CFG, checkpoint_dir=checkpoints, seed=17,
              loss_csv=checkpoints + ".csv")
np.savez(weights, *[v.numpy() for v in model.trainable_variables])
"""


def _child(tmp_path, pace):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(TESTS)))
    return subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(tmp_path / "ckpt"),
            str(tmp_path / "weights.npz"),
            str(pace),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )


def _interrupt(tmp_path, signum):
    """Start the child, signal it after its first checkpoint; return the epoch."""
    child = _child(tmp_path, PACE_S)
    # Generous: on a loaded 2-core machine importing TensorFlow alone takes minutes.
    deadline = time.monotonic() + TIMEOUT_S
    while not (tmp_path / "ckpt" / "checkpoint").exists():
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline, f"no checkpoint after {TIMEOUT_S} s"
        time.sleep(0.01)
    child.send_signal(signum)
    _, stderr = child.communicate(timeout=TIMEOUT_S)

    assert child.returncode == 1, stderr
    found = re.search(rf"interrupted by {signum.name} in epoch (\d+)", stderr)
    assert found, stderr[-3000:]
    epoch = int(found.group(1))
    assert 1 <= epoch < CFG["epochs"]
    assert f"checkpoint '{tmp_path / 'ckpt' / f'ckpt-{epoch - 1}'}'" in stderr
    assert "a re-run resumes from it" in stderr
    assert not (tmp_path / "weights.npz").exists()
    history = json.loads((tmp_path / "ckpt" / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(epoch))
    return epoch


def test_sigint_stops_at_a_clean_point(tmp_path):
    _interrupt(tmp_path, signal.SIGINT)


def test_sigterm_then_resume_matches_an_uninterrupted_run(tmp_path):
    reference, _ = _run(tmp_path, "straight", _toy(640, seed=1), _toy(128, seed=2))
    epoch = _interrupt(tmp_path, signal.SIGTERM)

    child = _child(tmp_path, 0.0)
    _, stderr = child.communicate(timeout=TIMEOUT_S)
    assert child.returncode == 0, stderr[-3000:]
    assert f"after epoch {epoch}" in stderr  # "resumed from ... after epoch N"
    with np.load(tmp_path / "weights.npz", allow_pickle=False) as resumed:
        resumed = [resumed[f"arr_{i}"] for i in range(len(resumed.files))]
    for a, b in zip(_weights(reference), resumed, strict=True):
        np.testing.assert_array_equal(a, b)
