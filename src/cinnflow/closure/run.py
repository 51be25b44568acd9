"""Closure stage: from a posterior file to metrics JSON, histogram CSV and plots."""

import csv
import dataclasses
import json
import logging
import math
from pathlib import Path

import hist
import numpy as np

from cinnflow.closure.baseline import DEFAULT_ITERATIONS, ibu_unfold
from cinnflow.closure.metrics import (
    DEFAULT_BINS,
    MIN_BIN_FRACTION,
    PEAK_TARGETS,
    automatic_edges,
    bin_index,
    bootstrap_replicas,
    closure_chi2,
    closure_histograms,
    max_abs_deviation,
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
from cinnflow.preparation.prepare import load_arrays

__all__ = ["detector_counterparts", "detector_observables", "run_closure"]

logger = logging.getLogger(__name__)

#: Bootstrap replicas of the closure histograms: the relative error of a variance
#: estimate from B replicas is sqrt(2 / B), 14% for 100.
DEFAULT_REPLICAS = 100

_HISTOGRAM_COLUMNS = [
    "observable",
    "bin_low",
    "bin_high",
    "truth",
    "truth_err",
    "unfolded",
    "unfolded_err",
    "unfolded_err_analytic",
    "detector",
    "ibu",
    "ibu_err",
]


def _object_order(names):
    """Objects in the order of their first column, ``q1_pt`` -> ``q1``."""
    order = []
    for name in names:
        obj, sep, _ = str(name).rpartition("_")
        if sep and obj not in order:
            order.append(obj)
    return order


def detector_counterparts(c_detector, detector_names, parton_names, definitions=None):
    """Detector-level counterparts of the parton-level observables, from arrays.

    Parton-level objects are matched to detector-level objects by position (the
    first parton object, e.g. ``q1``, to the first detector object, e.g. ``j1``),
    which is the order the preparation stage writes them in. Derived observables are
    recomputed from the matched detector objects (with their measured masses).

    Args:
        c_detector: detector-level condition, shape ``(n_events, n_detector)``.
        detector_names: its column names.
        parton_names: the parton-level column names.
        definitions: derived-observable definitions, or None.

    Returns:
        dict[str, np.ndarray]: parton-level observable name -> detector-level values,
        shape ``(n_events,)``.
    """
    detector_names = [str(n) for n in detector_names]
    parton_names = [str(n) for n in parton_names]
    mapping = dict(
        zip(_object_order(parton_names), _object_order(detector_names), strict=False)
    )
    index = {name: i for i, name in enumerate(detector_names)}
    result = {}
    for name in parton_names:
        obj, _, component = name.rpartition("_")
        counterpart = f"{mapping.get(obj)}_{component}"
        if counterpart in index:
            result[name] = c_detector[:, index[counterpart]]
    mapped = {
        name: {**spec, "of": [mapping.get(obj, obj) for obj in spec["of"]]}
        for name, spec in (definitions or {}).items()
    }
    for name, spec in mapped.items():
        try:
            values = all_observables(c_detector, detector_names, {name: spec})
        except ConfigError as err:
            logger.debug("no detector-level counterpart of %s: %s", name, err)
            continue
        result[name] = values[name]
    return result


def detector_observables(posterior, definitions=None):
    """Detector-level counterparts of a posterior file's observables.

    Args:
        posterior: a ``cinnflow.physics.Posterior``.
        definitions: derived-observable definitions, or None.

    Returns:
        dict[str, np.ndarray]: see :func:`detector_counterparts`; empty without a
        detector level.
    """
    if posterior.c_detector is None:
        return {}
    return detector_counterparts(
        posterior.c_detector,
        posterior.detector_names,
        posterior.parton_names,
        definitions,
    )


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


def _fmt(value):
    return "" if value is None else f"{value:.6g}"


def _histogram_rows(histograms, *, detector, analytic_err, baseline):
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
                "unfolded_err_analytic": f"{analytic_err[b]:.6g}",
                "detector": "" if detector is None else _fmt(detector[b]),
                "ibu": "" if baseline is None else _fmt(baseline.unfolded[b + 1]),
                "ibu_err": ""
                if baseline is None
                else _fmt(math.sqrt(baseline.variance[b + 1])),
            }
        )
    return rows


def _with_bootstrap(histograms, truth_rep, unfolded_rep):
    """The histograms with the bootstrap variances in place of the analytic ones."""
    unfolded = histograms.unfolded.copy()
    unfolded.view(flow=True).variance = np.var(unfolded_rep, axis=0, ddof=1)
    diff_variance = np.var(unfolded_rep - truth_rep, axis=0, ddof=1)
    return dataclasses.replace(
        histograms, unfolded=unfolded, diff_variance=diff_variance
    )


def _variance_ratio(bootstrap, analytic, truth, n_events):
    """Median bootstrap / analytic variance over bins with >= 1% of the events."""
    used = (truth >= MIN_BIN_FRACTION * n_events) & (analytic > 0)
    if not np.any(used):
        return float("nan")
    return float(np.median(bootstrap[used] / analytic[used]))


def _baseline(train, name, counterpart, parton_edges, *, test_detector, iterations):
    """IBU of one observable, or None without a detector-level counterpart."""
    if train is None or name not in counterpart or test_detector is None:
        return None
    parton_values, detector_values = train
    if name not in detector_values:
        return None
    return ibu_unfold(
        parton_values[name],
        detector_values[name],
        test_detector,
        parton_edges=parton_edges,
        detector_edges=parton_edges,
        n_iterations=iterations,
    )


def _training_observables(train_path, definitions, kinds):
    """Parton and detector-level observables of the training sample (for IBU)."""
    if train_path is None:
        return None
    train = load_arrays(train_path)
    parton_names = [str(n) for n in train["parton_names"]]
    parton = all_observables(train["x_parton"], parton_names, definitions)
    detector = detector_counterparts(
        train["c_detector"], train["detector_names"], parton_names, definitions
    )
    for name, kind in kinds.items():
        if kind in ("phi", "dphi"):
            parton[name] = wrap_phi(parton[name])
            if name in detector:
                detector[name] = wrap_phi(detector[name])
    logger.info("IBU response from %s: %d events", train_path, len(train["x_parton"]))
    return parton, detector


def run_closure(
    posterior_path,
    *,
    metrics_path,
    histograms_csv,
    plots_dir,
    derived=None,
    n_bins=DEFAULT_BINS,
    peaks=None,
    train_path=None,
    n_bootstrap=DEFAULT_REPLICAS,
    ibu_iterations=DEFAULT_ITERATIONS,
    seed=0,
):
    """Compare the unfolded distributions with the parton-level truth.

    For every parton-level column and derived observable: the truth and unfolded
    histograms (binning from ``automatic_edges``), their statistical uncertainties
    from ``n_bootstrap`` replicas that resample the events and each event's draws
    (``bootstrap_replicas``), and chi2/ndf of their difference with its p-value,
    once with the variances of both histograms added (``chi2_ndf``, the bar) and
    once with the variance of the paired difference, the same events entering both
    (``chi2_ndf_paired``, much stricter). The same two with the analytic variances
    of ``closure_histograms`` are kept as a cross-check (``*_analytic``, and
    ``bootstrap_variance_ratio``: median bootstrap / analytic variance of the
    unfolded bins). Also the median and the largest |unfolded / truth - 1| over
    bins holding at least 1% of the test events. Angles are wrapped into
    [-pi, pi) first. For the mass observables in ``peaks``, the peak positions of
    the unfolded and truth distributions (``peak_position``). With
    ``train_path``, the classical baseline: IBU (``ibu_unfold``) of each
    observable that has a detector-level counterpart, response from the training
    sample, chi2/ndf against the truth with the IBU and truth variances added.

    Writes (each atomically):

    - ``metrics_path``: JSON ``{"chi2_ndf": {obs: v}, "p_value": {obs: v},
      "chi2_ndf_paired": ..., "p_value_paired": ..., "chi2_ndf_analytic": ...,
      "p_value_analytic": ..., "chi2_ndf_paired_analytic": ...,
      "bootstrap_variance_ratio": ..., "median_abs_deviation": ...,
      "max_abs_deviation": ..., "peak": {obs: {"unfolded": v, "truth": v,
      "shift": unfolded - truth}}, "baseline": {"method": "IBU", "n_iterations":
      k, "chi2_ndf": {obs: v}, "p_value": ..., "max_abs_deviation": ...},
      "n_events": n, "n_draws": k, "n_bootstrap": b}`` (null for undefined
      values);
    - ``histograms_csv``: long-format CSV, one row per observable and bin, columns
      ``observable, bin_low, bin_high, truth, truth_err, unfolded, unfolded_err,
      unfolded_err_analytic, detector, ibu, ibu_err`` (empty where undefined);
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
        train_path: prepared training sample (``results/prepared/train.npz``) for
            the IBU baseline, or None for no baseline.
        n_bootstrap: number of bootstrap replicas.
        ibu_iterations: number of IBU iterations.
        seed: seed of the bootstrap.

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
        "closure of %s: %d events, %d draws, %d bins, %d bootstrap replicas",
        posterior_path,
        posterior.n_events,
        posterior.n_draws,
        n_bins,
        n_bootstrap,
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
    train = _training_observables(train_path, derived, kinds)

    histograms, truth_bins, draw_bins, n_flow = {}, {}, {}, {}
    for name in truth:
        edges = automatic_edges(
            truth[name], kinds[name], name=name, n_bins=int(n_bins), peaks=peaks
        )
        values, sampled = truth[name], draws[name]
        if kinds[name] in ("phi", "dphi"):
            # Periodic: a float32 draw at +pi belongs in the first bin, not overflow.
            values, sampled = wrap_phi(values), wrap_phi(sampled)
            if name in detector:
                detector[name] = wrap_phi(detector[name])
        histograms[name] = closure_histograms(values, sampled, edges, name=name)
        truth_bins[name] = bin_index(values, edges)
        draw_bins[name] = bin_index(sampled, edges)
        n_flow[name] = edges.size + 1
    replicas = bootstrap_replicas(
        truth_bins,
        draw_bins,
        n_flow,
        n_replicas=int(n_bootstrap),
        rng=np.random.default_rng(seed),
    )

    keys = (
        "chi2_ndf",
        "p_value",
        "chi2_ndf_paired",
        "p_value_paired",
        "chi2_ndf_analytic",
        "p_value_analytic",
        "chi2_ndf_paired_analytic",
        "bootstrap_variance_ratio",
        "median_abs_deviation",
        "max_abs_deviation",
    )
    metrics = {key: {} for key in keys}
    metrics["peak"] = {}
    metrics["baseline"] = {
        "method": "iterative Bayesian unfolding (pyunfold), response from training",
        "n_iterations": int(ibu_iterations) if train is not None else None,
        "chi2_ndf": {},
        "p_value": {},
        "max_abs_deviation": {},
    }
    rows = []
    plots_dir = Path(plots_dir)
    for name, analytic in histograms.items():
        booted = _with_bootstrap(analytic, *replicas[name])
        unfolded = booted.unfolded.values(flow=True)
        truth_counts = booted.truth.values(flow=True)
        truth_variance = booted.truth.variances(flow=True)
        results = {
            "": closure_chi2(
                unfolded,
                truth_counts,
                truth_variance + booted.unfolded.variances(flow=True),
            ),
            "_paired": closure_chi2(unfolded, truth_counts, booted.diff_variance),
            "_analytic": closure_chi2(
                unfolded,
                truth_counts,
                truth_variance + analytic.unfolded.variances(flow=True),
            ),
        }
        metrics["chi2_ndf"][name], ndf, metrics["p_value"][name] = results[""]
        metrics["chi2_ndf_paired"][name], _, metrics["p_value_paired"][name] = results[
            "_paired"
        ]
        metrics["chi2_ndf_analytic"][name], _, metrics["p_value_analytic"][name] = (
            results["_analytic"]
        )
        metrics["chi2_ndf_paired_analytic"][name] = closure_chi2(
            unfolded, truth_counts, analytic.diff_variance
        )[0]
        metrics["bootstrap_variance_ratio"][name] = _variance_ratio(
            booted.unfolded.variances(flow=True),
            analytic.unfolded.variances(flow=True),
            truth_counts,
            posterior.n_events,
        )
        regular = (booted.unfolded.values(), booted.truth.values())
        metrics["median_abs_deviation"][name] = median_abs_deviation(
            *regular, n_events=posterior.n_events
        )
        metrics["max_abs_deviation"][name] = max_abs_deviation(
            *regular, n_events=posterior.n_events
        )

        baseline = _baseline(
            train,
            name,
            detector,
            analytic.edges,
            test_detector=detector.get(name),
            iterations=int(ibu_iterations),
        )
        if baseline is not None:
            ibu_chi2, _, ibu_p = closure_chi2(
                baseline.unfolded, truth_counts, truth_variance + baseline.variance
            )
            metrics["baseline"]["chi2_ndf"][name] = ibu_chi2
            metrics["baseline"]["p_value"][name] = ibu_p
            metrics["baseline"]["max_abs_deviation"][name] = max_abs_deviation(
                baseline.unfolded[1:-1],
                booted.truth.values(),
                n_events=posterior.n_events,
            )
        logger.info(
            "%-10s chi2/ndf %.3f (ndf %d, p %.3g), paired %.3f, analytic %.3f, "
            "var boot/analytic %.3f, max |unf/truth-1| %.4f, IBU chi2/ndf %s",
            name,
            metrics["chi2_ndf"][name],
            ndf,
            metrics["p_value"][name],
            metrics["chi2_ndf_paired"][name],
            metrics["chi2_ndf_analytic"][name],
            metrics["bootstrap_variance_ratio"][name],
            metrics["max_abs_deviation"][name],
            "n/a"
            if baseline is None
            else f"{metrics['baseline']['chi2_ndf'][name]:.3f}",
        )

        h_detector = None
        if name in detector:
            axis = hist.axis.Variable(analytic.edges, name=name)
            h_detector = hist.Hist(axis).fill(detector[name])
        rows.extend(
            _histogram_rows(
                booted,
                detector=None if h_detector is None else h_detector.values(),
                analytic_err=np.sqrt(analytic.unfolded.variances()),
                baseline=baseline,
            )
        )
        fig = plot_closure(
            booted,
            xlabel=observable_label(name, derived),
            detector=h_detector,
            baseline=None if baseline is None else baseline.unfolded[1:-1],
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
    metrics["n_bootstrap"] = int(n_bootstrap)

    _write_json(metrics, metrics_path)
    _write_histograms_csv(rows, histograms_csv)
    logger.info(
        "closure done; wrote %s, %s, %s", metrics_path, histograms_csv, plots_dir
    )
    return metrics
