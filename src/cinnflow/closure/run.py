"""Closure stage: from a posterior file to metrics JSON, histogram CSV and plots."""

import csv
import json
import logging
import math
from pathlib import Path

import hist
import numpy as np

from cinnflow.closure.metrics import (
    DEFAULT_BINS,
    PEAK_TARGETS,
    automatic_edges,
    closure_chi2,
    closure_histograms,
    median_abs_deviation,
    peak_position,
    wrap_phi,
)
from cinnflow.errors import ConfigError
from cinnflow.io.atomic import atomic_path
from cinnflow.physics.observables import all_observables, observable_label
from cinnflow.physics.posterior import load_posterior
from cinnflow.plotting.closure import plot_closure
from cinnflow.plotting.style import save_figure

__all__ = ["detector_observables", "run_closure"]

logger = logging.getLogger(__name__)

_HISTOGRAM_COLUMNS = [
    "observable",
    "bin_low",
    "bin_high",
    "truth",
    "truth_err",
    "unfolded",
    "unfolded_err",
    "detector",
]


def _object_order(names):
    """Objects in the order of their first column, ``q1_pt`` -> ``q1``."""
    order = []
    for name in names:
        obj, sep, _ = str(name).rpartition("_")
        if sep and obj not in order:
            order.append(obj)
    return order


def detector_observables(posterior, definitions=None):
    """Detector-level counterparts of the parton-level observables, where they exist.

    Parton-level objects are matched to detector-level objects by position (the
    first parton object, e.g. ``q1``, to the first detector object, e.g. ``j1``),
    which is the order the preparation stage writes them in. Derived observables are
    recomputed from the matched detector objects (with their measured masses).

    Args:
        posterior: a ``cinnflow.physics.Posterior``.
        definitions: derived-observable definitions, or None.

    Returns:
        dict[str, np.ndarray]: parton-level observable name -> detector-level values,
        shape ``(n_events,)``; empty without a detector level.
    """
    if posterior.c_detector is None:
        return {}
    detector_names = list(posterior.detector_names)
    mapping = dict(
        zip(
            _object_order(posterior.parton_names),
            _object_order(detector_names),
            strict=False,
        )
    )
    columns = set(detector_names)
    index = {name: i for i, name in enumerate(detector_names)}
    result = {}
    for name in posterior.parton_names:
        obj, _, component = name.rpartition("_")
        counterpart = f"{mapping.get(obj)}_{component}"
        if counterpart in columns:
            result[name] = posterior.c_detector[:, index[counterpart]]
    mapped = {
        name: {**spec, "of": [mapping.get(obj, obj) for obj in spec["of"]]}
        for name, spec in (definitions or {}).items()
    }
    for name, spec in mapped.items():
        try:
            values = all_observables(posterior.c_detector, detector_names, {name: spec})
        except ConfigError as err:
            logger.debug("no detector-level counterpart of %s: %s", name, err)
            continue
        result[name] = values[name]
    return result


def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _write_json(data, path):
    """Write ``data`` as JSON, NaN and infinities as null (JSON has no NaN)."""

    def clean(node):
        if isinstance(node, dict):
            return {key: clean(value) for key, value in node.items()}
        return _finite(node)

    with atomic_path(path) as tmp, open(tmp, "w") as stream:
        json.dump(clean(data), stream, indent=2, allow_nan=False)
        stream.write("\n")


def _write_histograms_csv(rows, path):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=_HISTOGRAM_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _histogram_rows(histograms, detector):
    rows = []
    edges = histograms.edges
    truth = histograms.truth.values()
    unfolded = histograms.unfolded.values()
    unfolded_err = np.sqrt(histograms.unfolded.variances())
    for b in range(edges.size - 1):
        rows.append(
            {
                "observable": histograms.name,
                "bin_low": f"{edges[b]:.6g}",
                "bin_high": f"{edges[b + 1]:.6g}",
                "truth": f"{truth[b]:.6g}",
                "truth_err": f"{math.sqrt(truth[b]):.6g}",
                "unfolded": f"{unfolded[b]:.6g}",
                "unfolded_err": f"{unfolded_err[b]:.6g}",
                "detector": "" if detector is None else f"{detector[b]:.6g}",
            }
        )
    return rows


def run_closure(
    posterior_path,
    *,
    metrics_path,
    histograms_csv,
    plots_dir,
    derived=None,
    n_bins=DEFAULT_BINS,
    peaks=None,
):
    """Compare the unfolded distributions with the parton-level truth.

    For every parton-level column and derived observable: the truth and unfolded
    histograms (binning from ``automatic_edges``), chi2/ndf of their difference with
    its p-value, once with the statistical uncertainties of both histograms added
    (``chi2_ndf``) and once with the variance of the paired difference, the same
    events entering both (``chi2_ndf_paired``, much stricter), and the median
    |unfolded / truth - 1| over bins holding at least 1% of the test events. Angles
    are wrapped into [-pi, pi) first. For the mass observables in ``peaks``, the
    peak positions of the unfolded and truth distributions (``peak_position``).

    Writes (each atomically):

    - ``metrics_path``: JSON ``{"chi2_ndf": {obs: v}, "p_value": {obs: v},
      "chi2_ndf_paired": {obs: v}, "p_value_paired": {obs: v},
      "median_abs_deviation": {obs: v}, "peak": {obs: {"unfolded": v, "truth": v,
      "shift": unfolded - truth}}, "n_events": n, "n_draws": k}`` (null for
      undefined values);
    - ``histograms_csv``: long-format CSV, one row per observable and bin, columns
      ``observable, bin_low, bin_high, truth, truth_err, unfolded, unfolded_err,
      detector`` (detector empty without a counterpart);
    - ``plots_dir/closure_{obs}.png``, one per observable.

    Args:
        posterior_path: posterior ``.npz`` written by the sampling stage.
        metrics_path: output JSON file.
        histograms_csv: output CSV file.
        plots_dir: output directory of the PNG files.
        derived: derived-observable definitions (see ``cinnflow.physics``), or None.
        n_bins: number of bins per observable.
        peaks: observable name -> nominal peak (GeV) for the peak finder and the
            mass windows, or None for those ``PEAK_TARGETS`` (m_qq: W, m_ll: Z)
            that are among the observables.

    Returns:
        dict: the metrics written to ``metrics_path``.

    Raises:
        ConfigError: ``n_bins`` below 1 or invalid derived definitions.
        InputFileError: unreadable or inconsistent posterior file.
    """
    if int(n_bins) != n_bins or n_bins < 1:
        msg = f"n_bins must be a positive integer, got {n_bins!r}"
        raise ConfigError(msg)
    default_peaks = peaks is None
    peaks = dict(PEAK_TARGETS if peaks is None else peaks)
    posterior = load_posterior(posterior_path)
    logger.info(
        "closure of %s: %d events, %d draws, %d bins",
        posterior_path,
        posterior.n_events,
        posterior.n_draws,
        n_bins,
    )
    truth, draws = posterior.observables(derived)
    kinds = posterior.kinds(derived)
    if default_peaks:
        # The default targets name the ZW observables; another process keeps those
        # it defines (Z + jets: m_ll).
        peaks = {name: peak for name, peak in peaks.items() if name in truth}
    unknown = sorted(set(peaks) - set(truth))
    if unknown:
        msg = (
            f"peak observables {unknown!r} are not among the observables "
            f"{sorted(truth)!r}"
        )
        raise ConfigError(msg)
    detector = detector_observables(posterior, derived)

    metrics = {
        "chi2_ndf": {},
        "p_value": {},
        "chi2_ndf_paired": {},
        "p_value_paired": {},
        "median_abs_deviation": {},
        "peak": {},
    }
    rows = []
    plots_dir = Path(plots_dir)
    for name in truth:
        edges = automatic_edges(
            truth[name], kinds[name], name=name, n_bins=int(n_bins), peaks=peaks
        )
        values, sampled = truth[name], draws[name]
        if kinds[name] in ("phi", "dphi"):
            # Periodic: a float32 draw at +pi belongs in the first bin, not overflow.
            values, sampled = wrap_phi(values), wrap_phi(sampled)
        histograms = closure_histograms(values, sampled, edges, name=name)
        unfolded = histograms.unfolded.values(flow=True)
        truth_counts = histograms.truth.values(flow=True)
        # The closure bar: statistical uncertainties of both histograms, as if the
        # unfolded and truth samples were independent.
        chi2_ndf, ndf, p_value = closure_chi2(
            unfolded,
            truth_counts,
            histograms.truth.variances(flow=True)
            + histograms.unfolded.variances(flow=True),
        )
        # Stricter: the same events enter both, so the variance of the difference
        # is much smaller for a sharp posterior (see closure_histograms).
        chi2_paired, _, p_paired = closure_chi2(
            unfolded, truth_counts, histograms.diff_variance
        )
        deviation = median_abs_deviation(
            histograms.unfolded.values(),
            histograms.truth.values(),
            n_events=posterior.n_events,
        )
        metrics["chi2_ndf"][name] = chi2_ndf
        metrics["p_value"][name] = p_value
        metrics["chi2_ndf_paired"][name] = chi2_paired
        metrics["p_value_paired"][name] = p_paired
        metrics["median_abs_deviation"][name] = deviation
        logger.info(
            "%-10s chi2/ndf %.3f (ndf %d, p %.3g), paired %.3f, "
            "median |unf/truth-1| %.4f",
            name,
            chi2_ndf,
            ndf,
            p_value,
            chi2_paired,
            deviation,
        )

        h_detector = None
        if name in detector:
            axis = hist.axis.Variable(edges, name=name)
            h_detector = hist.Hist(axis).fill(detector[name])
        rows.extend(
            _histogram_rows(
                histograms, None if h_detector is None else h_detector.values()
            )
        )
        fig = plot_closure(
            histograms,
            xlabel=observable_label(name, derived),
            detector=h_detector,
        )
        save_figure(fig, plots_dir / f"closure_{name}.png")

    for name, target in peaks.items():
        peak_truth = peak_position(truth[name], target=target)
        peak_unfolded = peak_position(draws[name], target=target)
        metrics["peak"][name] = {
            "unfolded": peak_unfolded,
            "truth": peak_truth,
            "shift": peak_unfolded - peak_truth,
        }
        logger.info(
            "%s peak: unfolded %.2f GeV, truth %.2f GeV, shift %+.2f GeV",
            name,
            peak_unfolded,
            peak_truth,
            peak_unfolded - peak_truth,
        )
    metrics["n_events"] = posterior.n_events
    metrics["n_draws"] = posterior.n_draws

    _write_json(metrics, metrics_path)
    _write_histograms_csv(rows, histograms_csv)
    logger.info(
        "closure done; wrote %s, %s, %s", metrics_path, histograms_csv, plots_dir
    )
    return metrics
