"""TensorFlow's op determinism and the global seeds, for reproducible trainings.

With op determinism on, TensorFlow picks deterministic kernels (or raises
``UnimplementedError`` for an op that has none) and stateful random ops without a
seed raise an error instead of drawing from an unseeded stream. Together with the
seeds set here, two trainings with the same config and seed in separate processes
on the same CPU build and thread count give bit-identical weights
(``tests/test_reproducibility.py``). The switch is process-wide and cannot be undone
within a process, so only entry-point scripts call it, never a library function.
"""

import logging

import tensorflow as tf
import tf_keras

__all__ = ["enable_determinism"]

logger = logging.getLogger(__name__)


def enable_determinism(seed):
    """Switch op determinism on and seed Python's, NumPy's and TensorFlow's RNGs.

    Args:
        seed: integer seed (the training seed of the ensemble member).
    """
    tf_keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()
    logger.info(
        "TensorFlow op determinism on; Python, NumPy and TensorFlow seeded with %d "
        "(%d intra-op threads)",
        int(seed),
        tf.config.threading.get_intra_op_parallelism_threads(),
    )
