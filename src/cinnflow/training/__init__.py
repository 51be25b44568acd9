"""Maximum-likelihood training of conditional INNs with checkpoints and resume.

The names load lazily: ``cinnflow.training.grid`` is imported by the Snakefile while
it parses, and importing the trainer there would load TensorFlow (seconds, and its
start-up lines on the terminal) before a mistyped key is reported.
"""

import importlib

_LAZY = {
    "DEFAULT_TRAINING_CONFIG": "cinnflow.training.trainer",
    "enable_determinism": "cinnflow.training.determinism",
    "train": "cinnflow.training.trainer",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module 'cinnflow.training' has no attribute {name!r}"
    raise AttributeError(msg)
