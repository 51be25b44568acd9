"""Posterior draws from an ensemble of trainings that differ only by their seed.

Each member contributes an equal share of the draws of every event, so the
combined draws sample the equal-weight mixture of the members' posteriors. The
spread between members is the training (seed) uncertainty that a single network
hides; a calibration of the mixture includes it.
"""

import logging

import numpy as np

from cinnflow.errors import ConfigError
from cinnflow.sampling.posterior import sample_posterior

__all__ = ["member_seed", "sample_ensemble"]

logger = logging.getLogger(__name__)

#: Member k of the ensemble trains with ``seed + MEMBER_SEED_STRIDE * k``.
MEMBER_SEED_STRIDE = 1000


def member_seed(seed, member):
    """Training seed of ensemble member ``member`` (member 0 keeps ``seed``)."""
    if int(member) < 0:
        msg = f"ensemble member {member!r} must be >= 0"
        raise ConfigError(msg)
    return int(seed) + MEMBER_SEED_STRIDE * int(member)


def sample_ensemble(models, c_detector, *, n_draws, seed, **kwargs):
    """Draw ``n_draws`` per event, an equal share from each model of the ensemble.

    With one model this is exactly ``sample_posterior(model, ..., seed=seed)``; with
    several, member ``k`` draws ``n_draws // len(models)`` per event from the stream
    ``numpy.random.default_rng([seed, k])`` and the shares are concatenated along
    the draw axis (member 0 first).

    Args:
        models: list of trained ``ConditionalINN`` (at least one).
        c_detector: array (n_events, n_detector) in GeV and radians.
        n_draws: draws per event in total; must be a multiple of ``len(models)``.
        seed: integer seed.
        **kwargs: passed on to ``sample_posterior`` (``batch_size``,
            ``support_margin``, ``max_redraws``).

    Returns:
        numpy float32 array (n_events, n_draws, d).

    Raises:
        ConfigError: for an empty ensemble, or ``n_draws`` that is not a multiple of
            the number of members.
    """
    models = list(models)
    if not models:
        msg = "the ensemble has no members (expected at least one trained model)"
        raise ConfigError(msg)
    if len(models) == 1:
        return sample_posterior(
            models[0], c_detector, n_draws=n_draws, seed=seed, **kwargs
        )
    if n_draws % len(models):
        msg = (
            f"sampling.n_draws = {n_draws} is not a multiple of ensemble.members = "
            f"{len(models)} (each member draws an equal share)"
        )
        raise ConfigError(msg)
    share = n_draws // len(models)
    parts = []
    for member, model in enumerate(models):
        logger.info("ensemble member %d: %d draws per event", member, share)
        parts.append(
            sample_posterior(
                model, c_detector, n_draws=share, seed=[int(seed), member], **kwargs
            )
        )
    return np.concatenate(parts, axis=1)
