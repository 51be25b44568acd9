"""Closure of the unfolded distributions: histograms, chi2, deviations, mass peaks.

The unfolded distribution of an observable is the histogram of all posterior draws,
each weighted 1 / n_draws, so every test event contributes a total weight of one,
spread over the bins its posterior covers. The truth is the histogram of the
parton-level truth of the same events.

Statistical uncertainties (all per bin, flow bins included):

- truth: Poisson, variance = number of events in the bin;
- unfolded: Poisson bootstrap over events. Event ``i`` puts the weight
  ``c_ib = (draws of i in bin b) / n_draws`` into bin ``b``; resampling events with
  Poisson(1) multiplicities gives the variance ``sum_i c_ib**2`` exactly (the
  sum-of-squared-weights of the events, not of the individual draws, whose weights
  are correlated within an event);
- closure difference ``unfolded - truth``: both histograms come from the same events,
  so the difference has variance ``sum_i (c_ib - t_ib)**2`` with ``t_ib`` = 1 if the
  truth of event ``i`` is in bin ``b``, 0 otherwise. For a calibrated posterior each
  term has mean zero, so this is unbiased; for an uninformative posterior it is
  conservative (too large).
"""

import dataclasses
import logging

import hist
import numpy as np
from scipy import stats

from cinnflow.errors import ConfigError

__all__ = [
    "DEFAULT_BINS",
    "MASS_WINDOW_HALF_WIDTH",
    "PEAK_BIN_WIDTH",
    "PEAK_HALF_WINDOW",
    "PEAK_TARGETS",
    "ClosureHistograms",
    "automatic_edges",
    "bin_index",
    "bootstrap_replicas",
    "closure_chi2",
    "closure_histograms",
    "max_abs_deviation",
    "median_abs_deviation",
    "peak_position",
    "wrap_phi",
]

logger = logging.getLogger(__name__)

#: Number of bins of the closure histograms.
DEFAULT_BINS = 40
#: Truth quantiles that bound the automatic range; trims the 0.5% tails per side.
RANGE_QUANTILES = (0.005, 0.995)
#: Nominal peaks (GeV): PDG W and Z masses, rounded to the precision we test.
PEAK_TARGETS = {"m_qq": 80.4, "m_ll": 91.2}
#: Half width (GeV) of the closure-histogram range around a mass peak.
MASS_WINDOW_HALF_WIDTH = 15.0
#: Half width (GeV) of the window searched for a mass peak; several widths of the
#: W (2.1 GeV) and Z (2.5 GeV) plus detector-level smearing left in the posterior.
PEAK_HALF_WINDOW = 10.0
#: Bin width (GeV) of the peak-finding histogram: ~10 bins over the W full width.
PEAK_BIN_WIDTH = 0.2
#: Fraction of the test events a bin must hold to enter the median deviation.
MIN_BIN_FRACTION = 0.01
_PERIODIC_KINDS = ("phi", "dphi")
_MIN_CORE_BINS = 3


@dataclasses.dataclass(frozen=True)
class ClosureHistograms:
    """Truth and unfolded histograms of one observable.

    Attributes:
        name: observable name.
        truth: ``hist.Hist`` of the truth, Weight storage (variance = Poisson).
        unfolded: ``hist.Hist`` of the draws weighted 1 / n_draws; variance from
            the Poisson bootstrap over events.
        diff_variance: variance of ``unfolded - truth`` per bin, flow bins included
            (underflow first, overflow last), shape ``(n_bins + 2,)``.
        n_events: number of test events.
    """

    name: str
    truth: hist.Hist
    unfolded: hist.Hist
    diff_variance: np.ndarray
    n_events: int

    @property
    def edges(self):
        """np.ndarray: bin edges, shape ``(n_bins + 1,)``."""
        return self.truth.axes[0].edges


def wrap_phi(values):
    """Map angles (radians) into [-pi, pi), in float64."""
    values = np.asarray(values, dtype=np.float64)
    return (values + np.pi) % (2.0 * np.pi) - np.pi


def automatic_edges(truth, kind, *, name=None, n_bins=DEFAULT_BINS, peaks=None):
    """Choose bin edges of an observable from its truth.

    Mass-peak observables (names in ``peaks``) get a window of
    ``MASS_WINDOW_HALF_WIDTH`` around the peak; angles (kinds ``phi``, ``dphi``) get
    [-pi, pi]; everything else spans the 0.5% to 99.5% truth quantiles.

    Args:
        truth: truth values, shape ``(n_events,)``.
        kind: observable kind (``pt``, ``eta``, ``phi``, ``mass``, ``dphi``, ...).
        name: observable name, looked up in ``peaks``.
        n_bins: number of bins.
        peaks: observable name -> nominal peak (GeV), or None for PEAK_TARGETS.

    Returns:
        np.ndarray: ``n_bins + 1`` increasing edges.
    """
    peaks = PEAK_TARGETS if peaks is None else peaks
    if name in peaks:
        low = peaks[name] - MASS_WINDOW_HALF_WIDTH
        high = peaks[name] + MASS_WINDOW_HALF_WIDTH
    elif kind in _PERIODIC_KINDS:
        low, high = -np.pi, np.pi
    else:
        low, high = np.quantile(truth, RANGE_QUANTILES)
        if not high > low:
            # A (nearly) constant observable: give it a unit-wide range.
            low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, n_bins + 1)


def bin_index(values, edges):
    """Flow-inclusive bin index: 0 underflow, 1..n_bins regular, n_bins + 1 overflow.

    Same convention as boost-histogram: bins are [low, high), the last edge itself
    goes to the overflow.
    """
    return np.searchsorted(edges, values, side="right")


def closure_histograms(truth, draws, edges, *, name=""):
    """Fill the truth and unfolded histograms of one observable.

    Args:
        truth: truth values, shape ``(n_events,)``.
        draws: posterior draws, shape ``(n_events, n_draws)``.
        edges: bin edges, shape ``(n_bins + 1,)``.
        name: observable name (axis name and label).

    Returns:
        ClosureHistograms: the histograms and the variance of their difference.

    Raises:
        ConfigError: shapes that do not match.
    """
    truth = np.asarray(truth)
    draws = np.asarray(draws)
    if draws.ndim != 2 or truth.shape != draws.shape[:1]:
        msg = (
            f"{name!r}: truth of shape {truth.shape} and draws of shape "
            f"{draws.shape} do not match; expected (n_events,) and "
            f"(n_events, n_draws)"
        )
        raise ConfigError(msg)
    n_events, n_draws = draws.shape
    edges = np.asarray(edges, dtype=np.float64)
    n_flow = edges.size + 1

    def new_hist():
        axis = hist.axis.Variable(edges, name=name or "x", label=name)
        return hist.Hist(axis, storage=hist.storage.Weight())

    h_truth = new_hist().fill(truth)
    h_unfolded = new_hist().fill(
        draws.ravel(), weight=np.full(draws.size, 1.0 / n_draws)
    )

    # Per-event weights c_ib, shape (n_events, n_bins + 2); see the module docstring.
    truth_bin = bin_index(truth, edges)
    event_bin = np.arange(n_events)[:, None] * n_flow + bin_index(draws, edges)
    per_event = np.bincount(event_bin.ravel(), minlength=n_events * n_flow)
    per_event = per_event.reshape(n_events, n_flow) / n_draws
    var_unfolded = np.einsum("ib,ib->b", per_event, per_event)
    in_truth_bin = per_event[np.arange(n_events), truth_bin]
    cross = np.bincount(truth_bin, weights=in_truth_bin, minlength=n_flow)
    n_truth = np.bincount(truth_bin, minlength=n_flow)
    diff_variance = var_unfolded - 2.0 * cross + n_truth

    h_unfolded.view(flow=True).variance = var_unfolded
    return ClosureHistograms(
        name=name,
        truth=h_truth,
        unfolded=h_unfolded,
        diff_variance=np.clip(diff_variance, 0.0, None),
        n_events=n_events,
    )


def bootstrap_replicas(
    truth_bins, draw_bins, n_flow, *, n_replicas, rng, event_weights=None
):
    """Bootstrap replicas of the truth and unfolded histograms of many observables.

    Each replica resamples the test events and, within each event, its posterior
    draws: event ``i`` gets the weight ``W_i * w_i`` with ``W_i ~ Poisson(1)`` (the
    Poisson bootstrap of the events) and ``w_i`` the optional ``event_weights``,
    and its draws the weights ``V_ij ~ Poisson(1)`` normalised to sum to one per
    event (a resampling of the draws that keeps every event's total weight). The
    same weights serve every observable, so the replicas keep the correlations
    between observables and between the truth and unfolded histograms (the same
    events enter both).

    Args:
        truth_bins: observable -> flow-inclusive bin index of each event's truth
            (``bin_index``), int, shape ``(n_events,)``.
        draw_bins: observable -> bin index of each draw, shape
            ``(n_events, n_draws)``.
        n_flow: observable -> number of bins including both flow bins.
        n_replicas: number of replicas, >= 2.
        rng: ``numpy.random.Generator``.
        event_weights: weight per event, shape ``(n_events,)``, or None.

    Returns:
        dict: observable -> ``(truth, unfolded)`` replica contents, each of shape
        ``(n_replicas, n_flow)``.

    Raises:
        ConfigError: fewer than two replicas or shapes that do not match.
    """
    if int(n_replicas) != n_replicas or n_replicas < 2:  # noqa: PLR2004
        msg = f"n_replicas must be an integer >= 2, got {n_replicas!r}"
        raise ConfigError(msg)
    names = list(truth_bins)
    if not names:
        return {}
    n_events, n_draws = np.shape(draw_bins[names[0]])
    for name in names:
        if np.shape(truth_bins[name]) != (n_events,) or np.shape(draw_bins[name]) != (
            n_events,
            n_draws,
        ):
            msg = (
                f"{name!r}: truth bins of shape {np.shape(truth_bins[name])} and "
                f"draw bins of shape {np.shape(draw_bins[name])}; expected "
                f"({n_events},) and ({n_events}, {n_draws})"
            )
            raise ConfigError(msg)
    base = (
        np.ones(n_events)
        if event_weights is None
        else np.asarray(event_weights, dtype=np.float64)
    )
    result = {
        name: (
            np.empty((n_replicas, n_flow[name])),
            np.empty((n_replicas, n_flow[name])),
        )
        for name in names
    }
    for replica in range(int(n_replicas)):
        event_weight = base * rng.poisson(1.0, size=n_events)
        draw_weight = rng.poisson(1.0, size=(n_events, n_draws)).astype(np.float64)
        total = np.maximum(draw_weight.sum(axis=1, keepdims=True), 1.0)
        draw_weight *= event_weight[:, None] / total
        flat_weight = draw_weight.ravel()
        for name in names:
            truth_rep, unfolded_rep = result[name]
            truth_rep[replica] = np.bincount(
                truth_bins[name], weights=event_weight, minlength=n_flow[name]
            )
            unfolded_rep[replica] = np.bincount(
                np.ravel(draw_bins[name]), weights=flat_weight, minlength=n_flow[name]
            )
    return result


def closure_chi2(unfolded, truth, variance):
    """Chi2 per degree of freedom between two histograms, and its p-value.

    ``chi2 = sum_b (unfolded_b - truth_b)**2 / variance_b`` over bins with positive
    variance; ``ndf`` is the number of those bins. The bins are treated as
    independent (diagonal approximation): the expectation of chi2 / ndf is then 1
    for a perfect closure whatever the bin-to-bin correlations, but the p-value from
    the chi2(ndf) distribution is approximate.

    Args:
        unfolded: bin contents, shape ``(n_bins,)`` (flow bins may be included).
        truth: bin contents, same shape.
        variance: variance of ``unfolded - truth`` per bin (e.g.
            ``ClosureHistograms.diff_variance``, or the sum of both variances for
            independent samples).

    Returns:
        tuple[float, int, float]: ``chi2_ndf``, ``ndf``, ``p_value``; NaN when no
        bin has a positive variance.
    """
    unfolded, truth, variance = (
        np.asarray(a, dtype=np.float64) for a in (unfolded, truth, variance)
    )
    used = variance > 0
    ndf = int(np.count_nonzero(used))
    if ndf == 0:
        logger.warning("no bin with positive variance; chi2 undefined")
        return float("nan"), 0, float("nan")
    chi2 = float(np.sum((unfolded[used] - truth[used]) ** 2 / variance[used]))
    return chi2 / ndf, ndf, float(stats.chi2.sf(chi2, ndf))


def median_abs_deviation(unfolded, truth, *, n_events, min_fraction=MIN_BIN_FRACTION):
    """Median of ``|unfolded / truth - 1|`` over the well-populated bins.

    Args:
        unfolded: regular bin contents, shape ``(n_bins,)``.
        truth: regular bin contents, same shape.
        n_events: number of test events.
        min_fraction: a bin enters if its truth holds at least this fraction of the
            test events.

    Returns:
        float: the median relative deviation, NaN if no bin qualifies.
    """
    unfolded = np.asarray(unfolded, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    used = truth >= max(min_fraction * n_events, np.finfo(float).tiny)
    if not np.any(used):
        logger.warning("no bin holds %.1f%% of the events", 100 * min_fraction)
        return float("nan")
    return float(np.median(np.abs(unfolded[used] / truth[used] - 1.0)))


def max_abs_deviation(unfolded, truth, *, n_events, min_fraction=MIN_BIN_FRACTION):
    """Largest ``|unfolded / truth - 1|`` over the well-populated bins.

    Args:
        unfolded: regular bin contents, shape ``(n_bins,)``.
        truth: regular bin contents, same shape.
        n_events: number of test events (or their summed weight).
        min_fraction: a bin enters if its truth holds at least this fraction of the
            test events.

    Returns:
        float: the largest relative deviation, NaN if no bin qualifies.
    """
    unfolded = np.asarray(unfolded, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    used = truth >= max(min_fraction * n_events, np.finfo(float).tiny)
    if not np.any(used):
        return float("nan")
    return float(np.max(np.abs(unfolded[used] / truth[used] - 1.0)))


def peak_position(
    values,
    *,
    target,
    weights=None,
    half_window=PEAK_HALF_WINDOW,
    bin_width=PEAK_BIN_WIDTH,
):
    """Position of the maximum of a distribution near ``target`` (a mass peak).

    Method: histogram the values in ``target +- half_window`` with bins of
    ``bin_width``; take the highest bin and the contiguous run of bins around it
    that hold at least half its content (the full width at half maximum); fit a
    parabola to the logarithm of those contents by weighted least squares (weights
    = content / its statistical error); the vertex is the peak. Near the maximum
    the log of a Gaussian is exactly and of a Breit-Wigner nearly a parabola, so the
    fit uses the whole core instead of one noisy bin, and is unbiased for symmetric
    peaks. If the fit has no maximum, the centre of the highest bin is returned.

    Args:
        values: the values, any shape (flattened).
        target: centre of the search window (GeV).
        weights: weights of the values, same shape, or None.
        half_window: half width of the search window (GeV).
        bin_width: bin width (GeV).

    Returns:
        float: the peak position (GeV); NaN if the window is empty.
    """
    values = np.ravel(values)
    weights = None if weights is None else np.ravel(weights)
    n_bins = max(_MIN_CORE_BINS, round(2 * half_window / bin_width))
    edges = np.linspace(target - half_window, target + half_window, n_bins + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    counts, _ = np.histogram(values, bins=edges, weights=weights)
    sumw2 = (
        counts
        if weights is None
        else np.histogram(values, edges, weights=weights**2)[0]
    )
    if not np.any(counts > 0):
        logger.warning("no values in the peak window %.1f +- %.1f", target, half_window)
        return float("nan")

    top = int(np.argmax(counts))
    if top in (0, n_bins - 1):
        logger.warning(
            "highest bin at the edge of the peak window %.1f +- %.1f GeV; the peak "
            "may lie outside",
            target,
            half_window,
        )
    above = counts >= 0.5 * counts[top]
    low = top
    while low > 0 and above[low - 1]:
        low -= 1
    high = top
    while high < n_bins - 1 and above[high + 1]:
        high += 1
    while high - low + 1 < _MIN_CORE_BINS and (low > 0 or high < n_bins - 1):
        low, high = max(low - 1, 0), min(high + 1, n_bins - 1)

    core = slice(low, high + 1)
    positive = counts[core] > 0
    x = centres[core][positive] - centres[top]
    y = np.log(counts[core][positive])
    sigma = np.sqrt(sumw2[core][positive]) / counts[core][positive]
    if x.size >= _MIN_CORE_BINS:
        curvature, slope, _ = np.polyfit(x, y, 2, w=1.0 / sigma)
        if curvature < 0:
            vertex = -slope / (2.0 * curvature)
            if x.min() <= vertex <= x.max():
                return float(centres[top] + vertex)
    logger.warning(
        "parabola fit of the peak near %.1f GeV failed; using the highest bin", target
    )
    return float(centres[top])
