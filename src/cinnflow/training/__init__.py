"""Maximum-likelihood training of conditional INNs with checkpoints and resume."""

from cinnflow.training.determinism import enable_determinism
from cinnflow.training.trainer import DEFAULT_TRAINING_CONFIG, train

__all__ = ["DEFAULT_TRAINING_CONFIG", "enable_determinism", "train"]
