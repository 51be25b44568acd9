"""Draw posterior samples p(x_parton | c_detector) event batch by event batch.

Optionally the draws are truncated to the support of the training data
(``ConditionalINN.support``): a draw outside it, or a non-finite one, is rejected
and re-drawn from fresh latent values. The true posterior has no mass outside the
physical phase space the training set covers, so truncation only removes the
flow's spurious extreme tails (e.g. pt of several TeV, where exp() can overflow);
sampling the flow conditioned on the support box is exact rejection sampling of
the truncated flow density. The rejected fraction is logged: it should be tiny.

With ``balance_quantile`` the support also bounds the transverse momentum of
each pair frame with recoil plus its recoil (``ConditionalINN.balance``: for the
W's quarks with the Z's leptons, the hard process's pT, the beams' primordial kT)
by that quantile of the training events. The true posterior follows the prior
there, since the detector measures that sum only to the jet resolution; a flow
that spreads it puts a few per cent of its draws tens of GeV out, far beyond
where the training events have any (README, Sampling).
"""

import logging
import time

import numpy as np

from cinnflow.config import check_sampling
from cinnflow.errors import ConfigError

__all__ = ["sample_posterior"]

logger = logging.getLogger(__name__)


def sample_posterior(
    model,
    c_detector,
    *,
    n_draws,
    batch_size,
    seed,
    support_margin=None,
    max_redraws=20,
    balance_quantile=None,
    return_stats=False,
):
    """Sample ``n_draws`` parton-level events for every detector-level event.

    The latent draws come from one ``numpy.random.default_rng(seed)`` stream in
    event order, so the result does not depend on ``batch_size``. Re-draws take
    further values from the same stream, all rejected draws of one round at once in
    (event, draw) order, so they do not depend on ``batch_size`` either.

    Args:
        model: a trained ``ConditionalINN``.
        c_detector: array (n_events, n_detector) in GeV and radians.
        n_draws: draws per event.
        batch_size: events per batch; the flow sees ``batch_size * n_draws`` rows at
            once, which bounds the memory.
        seed: integer seed.
        support_margin: None (no truncation) or the margin of
            ``model.support(margin)``: draws outside that box or non-finite are
            re-drawn.
        max_redraws: rounds of re-drawing; draws still outside the box after them
            are clipped into it (and counted).
        balance_quantile: None, or the quantile of the training events above
            which a recoil frame's balance (``model.balance``) counts as outside
            the support (with ``support_margin`` only); draws still above it
            after ``max_redraws`` rounds are kept (and counted).
        return_stats: also return a dict with ``rejected_fraction`` (draws rejected
            in the first round / all draws), ``redraw_rounds``,
            ``clipped_fraction`` and ``balance_kept_fraction``.

    Returns:
        numpy float32 array (n_events, n_draws, d) in GeV and radians, and the
        stats dict if ``return_stats``.

    Raises:
        ConfigError: if ``n_draws`` or ``batch_size`` is below 1, ``support_margin``
            is negative or ``max_redraws`` is negative.
    """
    if n_draws < 1 or batch_size < 1:
        msg = f"n_draws = {n_draws!r} and batch_size = {batch_size!r} must be >= 1"
        raise ConfigError(msg)
    if support_margin is not None and support_margin < 0:
        msg = f"support_margin = {support_margin!r} must be >= 0 or None"
        raise ConfigError(msg)
    check_sampling(
        {"support_margin": support_margin, "balance_quantile": balance_quantile}
    )
    if max_redraws < 0:
        msg = f"max_redraws = {max_redraws!r} must be >= 0"
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
    stats = {
        "rejected_fraction": 0.0,
        "redraw_rounds": 0,
        "clipped_fraction": 0.0,
        "balance_kept_fraction": 0.0,
    }
    support = None if support_margin is None else model.support(support_margin)
    if support_margin is not None and support is None:
        logger.warning("model has no recorded training support; draws not truncated")
    if support is not None:
        limits = {}
        if balance_quantile is not None:
            limits = model.balance_limits(balance_quantile)
            if limits:
                logger.info(
                    "balance bound: hard-process pT at the training events' %s "
                    "quantile, %s GeV (per pair frame)",
                    balance_quantile,
                    ", ".join(f"{v:.1f}" for v in limits.values()),
                )
            else:
                logger.warning(
                    "balance_quantile %s: the model records no recoil frame "
                    "balance; not truncated there",
                    balance_quantile,
                )
        stats = _truncate(
            model,
            c_detector,
            draws,
            support,
            rng,
            batch_size,
            max_redraws,
            order=model.support_order,
            balance=(model.balance, limits) if limits else None,
        )
    n_bad = int(np.sum(~np.isfinite(draws).all(axis=(1, 2))))
    if n_bad:
        logger.warning("%d of %d events have non-finite draws", n_bad, n_events)
    logger.info(
        "sampled %d draws for %d events in %.1f s",
        n_draws,
        n_events,
        time.monotonic() - start,
    )
    return (draws, stats) if return_stats else draws


def _outside(x, low, high, order=(), balance=None):
    """Rows of ``x`` (..., d) non-finite, outside [low, high] or out of ``order``.

    ``order`` holds column pairs (i, j) with x_i >= x_j on the support (the pt of
    a pT-ordered pair, ``ConditionalINN.support_order``); ``balance`` is None or
    ``(function, limits)``: ``function(x)`` maps frame index to the balance and
    rows above ``limits[frame]`` are outside.
    """
    with np.errstate(invalid="ignore"):
        inside = (np.isfinite(x) & (x >= low) & (x <= high)).all(axis=-1)
        for i, j in order:
            inside &= x[..., i] >= x[..., j]
        if balance is not None:
            function, limits = balance
            for frame, value in function(x).items():
                inside &= value <= limits[frame]
    return ~inside


def _truncate(
    model,
    c_detector,
    draws,
    support,
    rng,
    batch_size,
    max_redraws,
    *,
    order=(),
    balance=None,
):
    """Re-draw, in place, the draws outside ``support`` or out of ``order``.

    Returns the stats dict.
    """
    low, high = (np.asarray(b, np.float64) for b in support)
    n_events, n_draws, dim = draws.shape
    bad = np.flatnonzero(_outside(draws, low, high, order, balance).ravel())
    total = n_events * n_draws
    stats = {"rejected_fraction": bad.size / total, "redraw_rounds": 0}
    rows = draws.reshape(total, dim)
    rounds = 0
    chunk = batch_size * n_draws
    while bad.size and rounds < max_redraws:
        rounds += 1
        z = rng.standard_normal((bad.size, 1, dim), np.float32)
        new = np.empty((bad.size, dim), np.float32)
        for i in range(0, bad.size, chunk):
            idx = bad[i : i + chunk]
            c = c_detector[idx // n_draws]
            new[i : i + chunk] = model.forward_latent(z[i : i + chunk], c).numpy()[:, 0]
        rows[bad] = new
        bad = bad[_outside(new, low, high, order, balance)]
    stats["redraw_rounds"] = rounds
    # Draws only above a balance limit stay as drawn: no box clips a sum of pTs.
    kept = 0
    if bad.size and balance is not None:
        boxed = _outside(rows[bad], low, high, order)
        kept = int(np.sum(~boxed))
        bad = bad[boxed]
    stats["balance_kept_fraction"] = kept / total
    stats["clipped_fraction"] = bad.size / total
    if bad.size:
        with np.errstate(invalid="ignore"):
            clipped = np.clip(np.nan_to_num(rows[bad], nan=0.0), low, high)
        for i, j in order:
            clipped[:, j] = np.minimum(clipped[:, j], clipped[:, i])
        rows[bad] = clipped.astype(np.float32)
    logger.info(
        "support truncation: %.2e of the draws rejected and re-drawn (%d rounds), "
        "%.2e clipped into the support, %.2e kept above a balance limit",
        stats["rejected_fraction"],
        rounds,
        stats["clipped_fraction"],
        stats["balance_kept_fraction"],
    )
    return stats
