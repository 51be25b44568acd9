"""Calibration in slices of the detector-level condition.

A posterior can be calibrated on average over the test events and miscalibrated
where it matters, e.g. at high jet pT where the training data are sparse. The test
events are split by a detector-level quantity (the leading jet pT, in quantile
bins so that each slice holds about the same number of events, and the jet
multiplicity when it takes several values) and the calibration is computed per
slice.
"""

import logging

import numpy as np

from cinnflow.calibration.metrics import (
    COVERAGE_LEVELS,
    calibration_error,
    interval_coverage,
    truth_quantiles,
)
from cinnflow.errors import ConfigError

__all__ = [
    "jet_multiplicity",
    "leading_jet_pt",
    "quantile_slices",
    "sliced_calibration",
]

logger = logging.getLogger(__name__)

#: Column names that hold a jet count in the detector-level condition.
MULTIPLICITY_COLUMNS = ("n_jets", "njets", "jet_multiplicity")


def _jet_pt_columns(detector_names, jets):
    names = [str(n) for n in detector_names]
    columns = [names.index(f"{jet}_pt") for jet in jets if f"{jet}_pt" in names]
    if not columns:
        msg = (
            f"no jet pt column for the jets {list(jets)!r} among the detector "
            f"columns {names!r}; expected e.g. {jets[0] if jets else 'j1'}_pt"
        )
        raise ConfigError(msg)
    return columns


def leading_jet_pt(c_detector, detector_names, jets):
    """Leading detector-level jet pT per event (GeV).

    Args:
        c_detector: detector-level condition, shape ``(n_events, n_detector)``.
        detector_names: its column names.
        jets: jet object names, e.g. ``["j1", "j2"]``.

    Returns:
        np.ndarray: the largest ``{jet}_pt`` per event, shape ``(n_events,)``.

    Raises:
        ConfigError: no ``{jet}_pt`` column.
    """
    columns = _jet_pt_columns(detector_names, jets)
    return np.max(np.asarray(c_detector, dtype=np.float64)[:, columns], axis=1)


def jet_multiplicity(c_detector, detector_names, jets):
    """Detector-level jet multiplicity per event.

    Taken from a count column (one of :data:`MULTIPLICITY_COLUMNS`) when the
    condition has one, else the number of jet slots with a positive pT (a
    condition padded with zeros for missing jets).

    Args:
        c_detector: detector-level condition, shape ``(n_events, n_detector)``.
        detector_names: its column names.
        jets: jet object names.

    Returns:
        np.ndarray: int64 multiplicities, shape ``(n_events,)``.
    """
    names = [str(n) for n in detector_names]
    c_detector = np.asarray(c_detector, dtype=np.float64)
    for column in MULTIPLICITY_COLUMNS:
        if column in names:
            return np.rint(c_detector[:, names.index(column)]).astype(np.int64)
    columns = _jet_pt_columns(names, jets)
    return np.count_nonzero(c_detector[:, columns] > 0, axis=1).astype(np.int64)


def quantile_slices(values, n_slices):
    """Split events into ``n_slices`` bins of equal population of ``values``.

    Args:
        values: the slicing variable, shape ``(n_events,)``.
        n_slices: number of slices, >= 1.

    Returns:
        tuple[np.ndarray, np.ndarray]: slice index per event in
        ``0 .. n_slices - 1``, shape ``(n_events,)``, and the ``n_slices + 1``
        edges (the minimum, the inner quantiles, the maximum).

    Raises:
        ConfigError: ``n_slices`` below 1.
    """
    if int(n_slices) != n_slices or n_slices < 1:
        msg = f"n_slices must be a positive integer, got {n_slices!r}"
        raise ConfigError(msg)
    values = np.asarray(values, dtype=np.float64)
    edges = np.quantile(values, np.linspace(0.0, 1.0, int(n_slices) + 1))
    index = np.clip(np.searchsorted(edges[1:-1], values, side="right"), 0, None)
    return index.astype(np.int64), edges


def sliced_calibration(truth, draws, *, slice_index, slice_labels, levels, rng):
    """Calibration error and coverages of every observable in each slice.

    Args:
        truth: observable name -> truth, shape ``(n_events,)``.
        draws: observable name -> draws, shape ``(n_events, n_draws)``.
        slice_index: slice of each event, int, shape ``(n_events,)``.
        slice_labels: slice index -> label (e.g. ``"52-68 GeV"``); slices without
            a label are skipped.
        levels: nominal levels of the calibration curves.
        rng: ``numpy.random.Generator`` for the tie-breaking.

    Returns:
        dict: label -> ``{"n_events": n, "calibration_error": {obs: v},
        "coverage_68": {obs: v}, "coverage_95": {obs: v}}``; slices without events
        are left out (with a warning).
    """
    slice_index = np.asarray(slice_index)
    result = {}
    for index, label in slice_labels.items():
        rows = slice_index == index
        n_events = int(np.count_nonzero(rows))
        if n_events == 0:
            logger.warning("calibration slice %s holds no event; skipped", label)
            continue
        entry = {
            "n_events": n_events,
            "calibration_error": {},
            **{key: {} for key in COVERAGE_LEVELS},
        }
        for name in truth:
            u = truth_quantiles(truth[name][rows], draws[name][rows], rng=rng)
            entry["calibration_error"][name] = calibration_error(u, levels)
            for key, probability in COVERAGE_LEVELS.items():
                entry[key][name] = interval_coverage(u, probability)
        result[label] = entry
    return result
