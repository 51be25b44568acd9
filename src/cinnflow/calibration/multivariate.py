"""Joint calibration of the posterior: ranks of an energy-score pre-rank function.

The marginal calibration of every observable does not test the correlations of the
posterior: a posterior with the right marginals but flipped correlations passes every
one-dimensional PIT. The multivariate rank of Gneiting et al. does. For one event,
pool the truth ``x_0`` and the draws ``x_1 .. x_M`` (each the full d-dimensional
parton-level vector, whitened with the pool's own mean and covariance, see
:func:`standardise_posterior`) and give each member the pre-rank

    rho(x_k) = mean_{l != k} || x_k - x_l ||,

its mean Euclidean distance to the other members (the energy-score term of
``x_k`` against the pool). If the truth is one more draw from the posterior, the
members are exchangeable and the rank of ``rho(x_0)`` among the ``M + 1`` values is
uniform; the randomised quantile of :func:`cinnflow.calibration.truth_quantiles`
then is Uniform(0, 1) and its calibration curve is tested like a marginal one. A
truth that is atypical of the draws in the joint space (wrong correlations, too
narrow a posterior) lies far from them: quantiles pile up near 1. Too wide a
posterior piles them up near 0.

Angles (kind ``phi``) are first rotated by the circular mean of each event's pool,
so a posterior across the +-pi seam is not torn apart.

References:
    Gneiting, Stanberry, Grimit, Held, Johnson, "Assessing probabilistic forecasts
    of multivariate quantities", Test 17 (2008) 211,
    https://doi.org/10.1007/s11749-008-0114-x
    Thorarinsdottir, Scheuerer, Heinz, "Assessing the calibration of
    high-dimensional ensemble forecasts using rank histograms", J. Comput. Graph.
    Stat. 25 (2016) 105, https://arxiv.org/abs/1310.0236
"""

import logging

import numpy as np

from cinnflow.calibration.metrics import truth_quantiles
from cinnflow.errors import ConfigError

__all__ = ["energy_prerank_quantiles", "standardise_posterior"]

logger = logging.getLogger(__name__)

#: Events per chunk of the pairwise distances: (chunk, M+1, M+1) float64 in memory,
#: about 20 MB for 100 draws.
CHUNK_EVENTS = 256
#: Floor of a per-event standard deviation (in the column's units), against columns
#: whose draws are all equal.
_MIN_STD = 1e-12
#: Ridge added to the pool covariance, relative to its diagonal: keeps the Cholesky
#: factor defined for (nearly) degenerate draws without changing the rest.
_RIDGE = 1e-9


def _wrap(angle):
    return (angle + np.pi) % (2.0 * np.pi) - np.pi


def standardise_posterior(truth, draws, *, kinds=None):
    """Whiten each event's pool of truth and draws with the pool's own covariance.

    The pool of an event is its truth and its draws, ``n_draws + 1`` points in d
    dimensions. Angles (kind ``phi``) are rotated by the pool's circular mean;
    then the pool is centred on its mean and multiplied by the inverse Cholesky
    factor of its covariance (plus a ridge of ``_RIDGE`` times its diagonal), so
    that it has zero mean and unit covariance. Mean and covariance are functions of
    the whole pool, symmetric in its members: if the truth is exchangeable with
    the draws before, it still is after. Whitening (not a per-column scaling) is
    what makes Euclidean distances sensitive to the correlations: with unit
    variances only, the mean squared distance between two members does not depend
    on the correlations at all.

    Args:
        truth: parton-level truth, shape ``(n_events, d)``.
        draws: posterior draws, shape ``(n_events, n_draws, d)``.
        kinds: the ``d`` column kinds; ``phi`` columns are periodic. None: none.

    Returns:
        np.ndarray: the whitened pools, float64, shape ``(n_events, n_draws + 1,
        d)``, the truth first.

    Raises:
        ConfigError: shapes or kinds that do not match.
    """
    truth = np.asarray(truth, dtype=np.float64)
    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim != 3 or truth.shape != (draws.shape[0], draws.shape[2]):
        msg = (
            f"truth of shape {truth.shape} and draws of shape {draws.shape} do not "
            f"match; expected (n_events, d) and (n_events, n_draws, d)"
        )
        raise ConfigError(msg)
    kinds = ["other"] * truth.shape[1] if kinds is None else [str(k) for k in kinds]
    if len(kinds) != truth.shape[1]:
        msg = f"{len(kinds)} column kinds {kinds!r} for {truth.shape[1]} columns"
        raise ConfigError(msg)
    pool = np.concatenate([truth[:, None, :], draws], axis=1)
    for column, kind in enumerate(kinds):
        if kind == "phi":
            angles = pool[..., column]
            centre = np.arctan2(
                np.sin(angles).mean(axis=1), np.cos(angles).mean(axis=1)
            )
            pool[..., column] = _wrap(angles - centre[:, None])
    pool -= pool.mean(axis=1, keepdims=True)
    covariance = np.einsum("ekd,ekf->edf", pool, pool) / (pool.shape[1] - 1)
    diagonal = np.maximum(np.einsum("edd->ed", covariance), _MIN_STD**2)
    covariance += _RIDGE * diagonal[:, :, None] * np.eye(truth.shape[1])
    inverse = np.linalg.inv(np.linalg.cholesky(covariance))
    return np.einsum("edf,ekf->ekd", inverse, pool)


def energy_prerank_quantiles(truth, draws, *, kinds=None, rng):
    """Randomised quantile of the truth's energy-score pre-rank among the draws'.

    Args:
        truth: parton-level truth, shape ``(n_events, d)``.
        draws: posterior draws, shape ``(n_events, n_draws, d)``, ``n_draws >= 2``.
        kinds: the ``d`` column kinds (``phi`` columns are periodic), or None.
        rng: ``numpy.random.Generator`` for the tie-breaking.

    Returns:
        np.ndarray: quantiles in [0, 1), shape ``(n_events,)``; Uniform(0, 1) for a
        posterior calibrated in all ``d`` dimensions jointly.

    Raises:
        ConfigError: shapes that do not match or fewer than two draws.
    """
    truth = np.asarray(truth)
    draws = np.asarray(draws)
    if draws.ndim == 3 and draws.shape[1] < 2:  # noqa: PLR2004
        msg = (
            f"the energy-score rank needs at least 2 draws per event, got "
            f"{draws.shape[1]}"
        )
        raise ConfigError(msg)
    n_events, n_draws = draws.shape[:2] if draws.ndim == 3 else (0, 0)
    truth_score = np.empty(n_events)
    draw_scores = np.empty((n_events, n_draws))
    for first in range(0, max(n_events, 1), CHUNK_EVENTS):
        rows = slice(first, first + CHUNK_EVENTS)
        pool = standardise_posterior(truth[rows], draws[rows], kinds=kinds)
        # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, clipped against rounding below zero.
        norm2 = np.einsum("ekd,ekd->ek", pool, pool)
        gram = np.einsum("ekd,eld->ekl", pool, pool)
        dist2 = norm2[:, :, None] + norm2[:, None, :] - 2.0 * gram
        distance = np.sqrt(np.clip(dist2, 0.0, None))
        mean_distance = distance.sum(axis=2) / n_draws  # the diagonal is zero
        truth_score[rows] = mean_distance[:, 0]
        draw_scores[rows] = mean_distance[:, 1:]
    quantiles = truth_quantiles(truth_score, draw_scores, rng=rng)
    logger.debug(
        "energy-score ranks of %d events x %d draws: mean quantile %.4f",
        n_events,
        n_draws,
        quantiles.mean(),
    )
    return quantiles
