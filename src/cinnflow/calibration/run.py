"""Calibration stage: from a posterior file to metrics JSON, curves CSV and plots."""

import csv
import json
import logging
from pathlib import Path

import numpy as np

from cinnflow.calibration.metrics import (
    COVERAGE_LEVELS,
    binomial_band,
    calibration_curve,
    calibration_error,
    interval_coverage,
    truth_quantiles,
)
from cinnflow.errors import ConfigError
from cinnflow.io.atomic import atomic_path
from cinnflow.physics.observables import observable_label
from cinnflow.physics.posterior import load_posterior
from cinnflow.plotting.calibration import plot_calibration_curves, plot_pit_histograms
from cinnflow.plotting.style import save_figure

__all__ = ["calibration_metrics", "observable_groups", "run_calibration"]

logger = logging.getLogger(__name__)

#: Group of the derived observables in plot file names.
DERIVED_GROUP = "derived"
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


def run_calibration(
    posterior_path,
    *,
    metrics_path,
    curves_csv,
    plots_dir,
    derived=None,
    n_levels=101,
    seed=0,
):
    """Test the calibration of the posterior draws of every observable.

    Computes, for the parton-level columns and the derived observables, the truth
    quantile of each event within its draws, the calibration curve on
    ``n_levels`` evenly spaced levels in [0, 1], the calibration error
    (max |observed - nominal|) and the central 68% and 95% interval coverage.

    Writes (each atomically):

    - ``metrics_path``: JSON ``{"calibration_error": {obs: v}, "coverage_68":
      {obs: v}, "coverage_95": {obs: v}, "max_calibration_error": v,
      "n_events": n, "n_draws": k}``;
    - ``curves_csv``: DVC plots CSV, column ``nominal`` then one column per
      observable holding the observed fraction;
    - ``plots_dir/calibration_{group}.png`` and ``plots_dir/pit_{group}.png`` with
      group ``q1``, ``q2``, ``l1``, ``l2``, ... and ``derived``.

    Limits: phi is treated as a linear variable, so a posterior that wraps around
    +-pi gives a distorted quantile for events near the boundary.

    Args:
        posterior_path: posterior ``.npz`` written by the sampling stage.
        metrics_path: output JSON file.
        curves_csv: output CSV file.
        plots_dir: output directory of the PNG files.
        derived: derived-observable definitions (see ``cinnflow.physics``), or None.
        n_levels: number of nominal levels of the calibration curves.
        seed: seed of the tie-breaking random generator.

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

    _write_json(metrics, metrics_path)
    _write_curves_csv(levels, curves, curves_csv)

    band = binomial_band(levels, posterior.n_events)
    plots_dir = Path(plots_dir)
    labels = {name: observable_label(name, derived, with_unit=False) for name in truth}
    for group, names in observable_groups(posterior.parton_names, derived).items():
        fig = plot_calibration_curves(
            levels, {n: curves[n] for n in names}, band, labels=labels, title=group
        )
        save_figure(fig, plots_dir / f"calibration_{group}.png")
        fig = plot_pit_histograms({n: quantiles[n] for n in names}, labels=labels)
        save_figure(fig, plots_dir / f"pit_{group}.png")
    logger.info(
        "calibration done: max calibration error %.4f; wrote %s, %s, %s",
        metrics["max_calibration_error"],
        metrics_path,
        curves_csv,
        plots_dir,
    )
    return metrics
