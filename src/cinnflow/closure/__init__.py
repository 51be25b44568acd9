"""Closure test: unfolded vs parton-level truth distributions."""

from cinnflow.closure.metrics import (
    DEFAULT_BINS,
    MASS_WINDOW_HALF_WIDTH,
    PEAK_BIN_WIDTH,
    PEAK_HALF_WINDOW,
    PEAK_TARGETS,
    ClosureHistograms,
    automatic_edges,
    closure_chi2,
    closure_histograms,
    median_abs_deviation,
    peak_position,
)
from cinnflow.closure.run import detector_observables, run_closure

__all__ = [
    "DEFAULT_BINS",
    "MASS_WINDOW_HALF_WIDTH",
    "PEAK_BIN_WIDTH",
    "PEAK_HALF_WINDOW",
    "PEAK_TARGETS",
    "ClosureHistograms",
    "automatic_edges",
    "closure_chi2",
    "closure_histograms",
    "detector_observables",
    "median_abs_deviation",
    "peak_position",
    "run_closure",
]
