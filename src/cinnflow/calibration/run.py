"""Calibration stage: from a posterior file to metrics JSON, curves CSV and plots."""

import csv
import json
import logging
from pathlib import Path

import numpy as np
from scipy import stats

from cinnflow.calibration.metrics import (
    COVERAGE_LEVELS,
    binomial_band,
    calibration_curve,
    calibration_error,
    interval_coverage,
    truth_quantiles,
)
from cinnflow.calibration.multivariate import energy_prerank_quantiles
from cinnflow.calibration.slices import (
    jet_multiplicity,
    leading_jet_pt,
    quantile_slices,
    sliced_calibration,
)
from cinnflow.errors import ConfigError
from cinnflow.io.atomic import atomic_path
from cinnflow.physics.observables import observable_label
from cinnflow.physics.posterior import load_posterior
from cinnflow.plotting.calibration import (
    plot_calibration_curves,
    plot_pit_histograms,
    plot_slices,
)
from cinnflow.plotting.style import save_figure

__all__ = ["calibration_metrics", "observable_groups", "run_calibration"]

logger = logging.getLogger(__name__)

#: Group of the derived observables in plot file names.
DERIVED_GROUP = "derived"
#: Name of the joint (all parton columns) energy-score check in metrics and curves.
JOINT_NAME = "energy_score"
#: Default number of leading-jet-pT slices (quantile bins).
DEFAULT_SLICES = 4
_MIN_LEVELS = 3


def observable_groups(names, definitions=None):
    """Group observables for plotting: one group per object, one for derived ones.

    Args:
        names: column names ``{object}_{component}``.
        definitions: derived-observable definitions, or None.

    Returns:
        dict[str, list[str]]: group name (``q1``, ..., ``derived``) -> observables.
    """
    groups = {}
    for name in names:
        obj, sep, _ = str(name).rpartition("_")
        groups.setdefault(obj if sep else "other", []).append(str(name))
    if definitions:
        groups[DERIVED_GROUP] = list(definitions)
    return groups


def calibration_metrics(truth, draws, *, levels, rng):
    """Truth quantiles, calibration curves, errors and coverages of observables.

    Args:
        truth: observable name -> truth, shape ``(n_events,)``.
        draws: observable name -> draws, shape ``(n_events, n_draws)``.
        levels: nominal quantile levels, shape ``(n_levels,)``.
        rng: ``numpy.random.Generator`` for the tie-breaking; observables are
            processed in the order of ``truth``.

    Returns:
        tuple[dict, dict, dict]: ``metrics`` (keys ``calibration_error``,
        ``coverage_68``, ``coverage_95``, ``max_calibration_error``), ``curves``
        (name -> observed fractions) and ``quantiles`` (name -> truth quantiles).
    """
    quantiles, curves = {}, {}
    metrics = {"calibration_error": {}, **{key: {} for key in COVERAGE_LEVELS}}
    for name in truth:
        u = truth_quantiles(truth[name], draws[name], rng=rng)
        quantiles[name] = u
        curves[name] = calibration_curve(u, levels)
        metrics["calibration_error"][name] = calibration_error(u, levels)
        for key, probability in COVERAGE_LEVELS.items():
            metrics[key][name] = interval_coverage(u, probability)
    metrics["max_calibration_error"] = max(metrics["calibration_error"].values())
    return metrics, curves, quantiles


def _write_json(data, path):
    with atomic_path(path) as tmp, open(tmp, "w") as stream:
        json.dump(data, stream, indent=2)
        stream.write("\n")


def _write_curves_csv(levels, curves, path):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["nominal", *curves])
        columns = np.column_stack([levels, *curves.values()])
        writer.writerows([[f"{v:.6g}" for v in row] for row in columns])


def _slice_label(low, high, unit):
    return f"{low:.0f}-{high:.0f} {unit}".strip()


def _detector_slices(posterior, jets, n_slices):
    """Slicings of the test events: name -> (slice index, {index: label})."""
    if posterior.c_detector is None or not jets:
        logger.warning("no detector level or no jets: no calibration slices")
        return {}
    slicings = {}
    lead = leading_jet_pt(posterior.c_detector, posterior.detector_names, jets)
    index, edges = quantile_slices(lead, n_slices)
    slicings["leading_jet_pt"] = (
        index,
        {i: _slice_label(edges[i], edges[i + 1], "GeV") for i in range(n_slices)},
    )
    multiplicity = jet_multiplicity(
        posterior.c_detector, posterior.detector_names, jets
    )
    values = np.unique(multiplicity)
    if values.size > 1:
        slicings["jet_multiplicity"] = (
            multiplicity,
            {int(v): f"{int(v)} jets" for v in values},
        )
    else:
        logger.info(
            "one jet multiplicity (%d) in the test events: no multiplicity slices",
            int(values[0]),
        )
    return slicings


def _write_slices_csv(slices, path):
    """Long-format CSV: slicing, slice, observable, calibration error, coverages."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(
            [
                "slicing",
                "slice",
                "observable",
                "calibration_error",
                *COVERAGE_LEVELS,
                "n_events",
            ]
        )
        for slicing, entries in slices.items():
            for label, entry in entries.items():
                for name, error in entry["calibration_error"].items():
                    writer.writerow(
                        [slicing, label, name, f"{error:.6g}"]
                        + [f"{entry[key][name]:.6g}" for key in COVERAGE_LEVELS]
                        + [entry["n_events"]]
                    )


def run_calibration(
    posterior_path,
    *,
    metrics_path,
    curves_csv,
    plots_dir,
    derived=None,
    n_levels=101,
    seed=0,
    slices_path=None,
    slices_csv=None,
    jets=None,
    n_slices=DEFAULT_SLICES,
):
    """Test the calibration of the posterior draws of every observable.

    Computes, for the parton-level columns and the derived observables, the truth
    quantile of each event within its draws, the calibration curve on
    ``n_levels`` evenly spaced levels in [0, 1], the calibration error
    (max |observed - nominal|) and the central 68% and 95% interval coverage. The
    joint check over all parton columns is the quantile of the energy-score
    pre-rank (``cinnflow.calibration.multivariate``), listed as the observable
    ``energy_score`` (its central intervals have no meaning, so no coverage). In
    slices of the detector level (``slices_path``), the same per observable.

    Writes (each atomically):

    - ``metrics_path``: JSON ``{"calibration_error": {obs: v}, "coverage_68":
      {obs: v}, "coverage_95": {obs: v}, "max_calibration_error": v,
      "multivariate": {"method": ..., "calibration_error": v, "ks_p_value": v,
      "mean_quantile": v}, "n_events": n, "n_draws": k}``; ``calibration_error``
      and ``max_calibration_error`` cover the observables only;
    - ``curves_csv``: DVC plots CSV, column ``nominal`` then one column per
      observable and ``energy_score`` holding the observed fraction;
    - ``slices_path`` (if given): JSON ``{slicing: {slice label: {"n_events": n,
      "calibration_error": {obs: v}, "coverage_68": ..., "coverage_95": ...}}}``
      with slicings ``leading_jet_pt`` (``n_slices`` quantile bins) and
      ``jet_multiplicity`` (only when it takes several values), and
      ``slices_csv`` the same in long format;
    - ``plots_dir/calibration_{group}.png``, ``plots_dir/pit_{group}.png`` with
      group ``q1``, ``q2``, ``l1``, ``l2``, ..., ``derived`` and ``joint``, and
      ``plots_dir/slices_{slicing}.png``.

    Limits: phi is treated as a linear variable in the marginal quantiles, so a
    posterior that wraps around +-pi gives a distorted quantile for events near the
    boundary (the joint check rotates angles and has no such problem).

    Args:
        posterior_path: posterior ``.npz`` written by the sampling stage.
        metrics_path: output JSON file.
        curves_csv: output CSV file.
        plots_dir: output directory of the PNG files.
        derived: derived-observable definitions (see ``cinnflow.physics``), or None.
        n_levels: number of nominal levels of the calibration curves.
        seed: seed of the tie-breaking random generator.
        slices_path: output JSON of the sliced calibration, or None for none.
        slices_csv: output CSV of the sliced calibration (with ``slices_path``).
        jets: detector-level jet object names (e.g. ``["j1", "j2"]``) for slices.
        n_slices: number of leading-jet-pT slices.

    Returns:
        dict: the metrics written to ``metrics_path``.

    Raises:
        ConfigError: ``n_levels`` below 3 or invalid derived definitions.
        InputFileError: unreadable or inconsistent posterior file.
    """
    if int(n_levels) != n_levels or n_levels < _MIN_LEVELS:
        msg = f"n_levels must be an integer >= {_MIN_LEVELS}, got {n_levels!r}"
        raise ConfigError(msg)
    posterior = load_posterior(posterior_path)
    logger.info(
        "calibration of %s: %d events, %d draws, %d levels, seed %d",
        posterior_path,
        posterior.n_events,
        posterior.n_draws,
        n_levels,
        seed,
    )
    truth, draws = posterior.observables(derived)

    levels = np.linspace(0.0, 1.0, int(n_levels))
    rng = np.random.default_rng(seed)
    metrics, curves, quantiles = calibration_metrics(
        truth, draws, levels=levels, rng=rng
    )
    metrics["n_events"] = posterior.n_events
    metrics["n_draws"] = posterior.n_draws
    for name, error in metrics["calibration_error"].items():
        logger.info(
            "%-10s calibration error %.4f  coverage68 %.3f  coverage95 %.3f",
            name,
            error,
            metrics["coverage_68"][name],
            metrics["coverage_95"][name],
        )

    joint = energy_prerank_quantiles(
        posterior.x_parton, posterior.draws, kinds=posterior.parton_kinds, rng=rng
    )
    curves[JOINT_NAME] = calibration_curve(joint, levels)
    quantiles[JOINT_NAME] = joint
    metrics["multivariate"] = {
        "method": "energy-score pre-rank of the standardised parton-level vector",
        "n_dimensions": len(posterior.parton_names),
        "calibration_error": calibration_error(joint, levels),
        "ks_p_value": float(stats.kstest(joint, "uniform").pvalue),
        "mean_quantile": float(np.mean(joint)),
    }
    logger.info(
        "joint energy-score check over %d columns: calibration error %.4f, "
        "KS p-value %.3g, mean quantile %.3f",
        len(posterior.parton_names),
        metrics["multivariate"]["calibration_error"],
        metrics["multivariate"]["ks_p_value"],
        metrics["multivariate"]["mean_quantile"],
    )

    _write_json(metrics, metrics_path)
    _write_curves_csv(levels, curves, curves_csv)

    band = binomial_band(levels, posterior.n_events)
    plots_dir = Path(plots_dir)
    labels = {name: observable_label(name, derived, with_unit=False) for name in truth}
    labels[JOINT_NAME] = "energy score (joint)"
    groups = observable_groups(posterior.parton_names, derived)
    groups["joint"] = [JOINT_NAME]
    for group, names in groups.items():
        fig = plot_calibration_curves(
            levels, {n: curves[n] for n in names}, band, labels=labels, title=group
        )
        save_figure(fig, plots_dir / f"calibration_{group}.png")
        fig = plot_pit_histograms({n: quantiles[n] for n in names}, labels=labels)
        save_figure(fig, plots_dir / f"pit_{group}.png")

    if slices_path is not None:
        slices = {}
        for slicing, (index, slice_labels) in _detector_slices(
            posterior, list(jets or []), int(n_slices)
        ).items():
            slices[slicing] = sliced_calibration(
                truth,
                draws,
                slice_index=index,
                slice_labels=slice_labels,
                levels=levels,
                rng=rng,
            )
            fig = plot_slices(slices[slicing], labels=labels)
            save_figure(fig, plots_dir / f"slices_{slicing}.png")
        _write_json(slices, slices_path)
        if slices_csv is not None:
            _write_slices_csv(slices, slices_csv)
    logger.info(
        "calibration done: max calibration error %.4f; wrote %s, %s, %s",
        metrics["max_calibration_error"],
        metrics_path,
        curves_csv,
        plots_dir,
    )
    return metrics
