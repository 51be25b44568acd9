"""Calibration of posterior draws: truth quantiles, calibration curves, coverage.

If the posterior is calibrated, the parton-level truth is one more draw from it, so
its quantile within the draws is uniform on [0, 1] over the test events (the
probability integral transform, PIT; simulation-based calibration). Every function
here works on one observable at a time, vectorised over events and draws.

References:
    Talts et al., "Validating Bayesian inference algorithms with simulation-based
    calibration", https://arxiv.org/abs/1804.06788
"""

import logging

import numpy as np
from scipy import stats

from cinnflow.errors import ConfigError

__all__ = [
    "COVERAGE_LEVELS",
    "binomial_band",
    "calibration_curve",
    "calibration_error",
    "interval_coverage",
    "truth_quantiles",
]

logger = logging.getLogger(__name__)

#: Nominal probability of the central posterior intervals, by metrics key.
COVERAGE_LEVELS = {"coverage_68": 0.68, "coverage_95": 0.95}


def truth_quantiles(truth, draws, *, rng):
    """Quantile of each event's truth within its posterior draws.

    With ``n_below`` draws strictly below the truth and ``n_tied`` equal to it, the
    truth is put at a uniformly random position among the ``n_draws + 1`` values
    that its ties allow, and a uniform jitter spreads it over that slot::

        u = (n_below + U * (n_tied + 1)) / (n_draws + 1),   U ~ Uniform(0, 1)

    For a calibrated posterior ``u`` is then exactly Uniform(0, 1), without the
    1 / n_draws discreteness of the plain fraction of draws below the truth, and ties
    (e.g. clipped or discrete values) do not bias it. ``floor(u * (n_draws + 1))`` is
    the usual rank in ``{0, ..., n_draws}``.

    Args:
        truth: parton-level truth, shape ``(n_events,)``.
        draws: posterior draws, shape ``(n_events, n_draws)``.
        rng: ``numpy.random.Generator`` for the tie-breaking.

    Returns:
        np.ndarray: float64 quantiles in [0, 1), shape ``(n_events,)``.

    Raises:
        ConfigError: shapes that do not match.
    """
    truth = np.asarray(truth)
    draws = np.asarray(draws)
    if draws.ndim != 2 or truth.shape != draws.shape[:1]:
        msg = (
            f"truth of shape {truth.shape} and draws of shape {draws.shape} do not "
            f"match; expected (n_events,) and (n_events, n_draws)"
        )
        raise ConfigError(msg)
    n_draws = draws.shape[1]
    column = truth[:, None]
    n_below = np.count_nonzero(draws < column, axis=1)
    n_tied = np.count_nonzero(draws == column, axis=1)
    jitter = rng.random(truth.shape[0])
    return (n_below + jitter * (n_tied + 1)) / (n_draws + 1)


def calibration_curve(quantiles, levels):
    """Observed fraction of events whose truth quantile is at most each level.

    Args:
        quantiles: truth quantiles, shape ``(n_events,)``.
        levels: nominal quantile levels in [0, 1], shape ``(n_levels,)``.

    Returns:
        np.ndarray: observed fractions, shape ``(n_levels,)``; equal to ``levels``
        for a calibrated posterior up to binomial noise. Below the diagonal in the
        middle and above it at the ends means too narrow a posterior (over-
        confident); the reverse means too wide.
    """
    ordered = np.sort(np.asarray(quantiles, dtype=np.float64))
    return np.searchsorted(ordered, levels, side="right") / ordered.size


def calibration_error(quantiles, levels):
    """Largest absolute deviation of the calibration curve from the diagonal.

    Args:
        quantiles: truth quantiles, shape ``(n_events,)``.
        levels: nominal levels, shape ``(n_levels,)``.

    Returns:
        float: ``max |observed(q) - q|`` over the levels (a Kolmogorov-Smirnov
        distance evaluated on the grid).
    """
    levels = np.asarray(levels, dtype=np.float64)
    return float(np.max(np.abs(calibration_curve(quantiles, levels) - levels)))


def interval_coverage(quantiles, probability):
    """Fraction of events whose truth lies in the central posterior interval.

    Args:
        quantiles: truth quantiles, shape ``(n_events,)``.
        probability: content of the central interval, in (0, 1).

    Returns:
        float: the observed coverage; ``probability`` for a calibrated posterior.

    Raises:
        ConfigError: ``probability`` outside (0, 1).
    """
    if not 0.0 < probability < 1.0:
        msg = f"interval probability must be in (0, 1), got {probability!r}"
        raise ConfigError(msg)
    quantiles = np.asarray(quantiles)
    half = 0.5 * probability
    return float(np.mean(np.abs(quantiles - 0.5) <= half))


def binomial_band(levels, n_events, *, confidence=0.95):
    """Pointwise band of the calibration curve expected for a calibrated posterior.

    For a calibrated posterior the number of events with quantile <= q follows a
    Binomial(n_events, q); the band holds its central ``confidence`` interval divided
    by ``n_events``. It is pointwise: the whole curve leaves it somewhere more often
    than ``1 - confidence``.

    Args:
        levels: nominal levels, shape ``(n_levels,)``.
        n_events: number of test events.
        confidence: content of the band.

    Returns:
        tuple[np.ndarray, np.ndarray]: lower and upper edges, shape ``(n_levels,)``.
    """
    levels = np.asarray(levels, dtype=np.float64)
    low, high = stats.binom.interval(confidence, n_events, levels)
    return low / n_events, high / n_events
