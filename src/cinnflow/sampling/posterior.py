"""Draw posterior samples p(x_parton | c_detector) event batch by event batch."""

import logging
import time

import numpy as np

from cinnflow.errors import ConfigError

__all__ = ["sample_posterior"]

logger = logging.getLogger(__name__)


def sample_posterior(model, c_detector, *, n_draws, batch_size, seed):
    """Sample ``n_draws`` parton-level events for every detector-level event.

    The latent draws come from one ``numpy.random.default_rng(seed)`` stream in
    event order, so the result does not depend on ``batch_size``.

    Args:
        model: a trained ``ConditionalINN``.
        c_detector: array (n_events, n_detector) in GeV and radians.
        n_draws: draws per event.
        batch_size: events per batch; the flow sees ``batch_size * n_draws`` rows at
            once, which bounds the memory.
        seed: integer seed.

    Returns:
        numpy float32 array (n_events, n_draws, d) in GeV and radians.

    Raises:
        ConfigError: if ``n_draws`` or ``batch_size`` is below 1.
    """
    if n_draws < 1 or batch_size < 1:
        msg = f"n_draws = {n_draws!r} and batch_size = {batch_size!r} must be >= 1"
        raise ConfigError(msg)
    c_detector = np.asarray(c_detector, np.float32)
    n_events = len(c_detector)
    draws = np.empty((n_events, n_draws, model.dim), np.float32)
    rng = np.random.default_rng(seed)
    start = time.monotonic()
    for first in range(0, n_events, batch_size):
        last = min(first + batch_size, n_events)
        draws[first:last] = model.sample(c_detector[first:last], n_draws, seed=rng)
        logger.debug("sampled events %d to %d", first, last)
    n_bad = int(np.sum(~np.isfinite(draws).all(axis=(1, 2))))
    if n_bad:
        logger.warning("%d of %d events have non-finite draws", n_bad, n_events)
    logger.info(
        "sampled %d draws for %d events in %.1f s",
        n_draws,
        n_events,
        time.monotonic() - start,
    )
    return draws
