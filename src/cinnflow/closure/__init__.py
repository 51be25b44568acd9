"""Closure test: unfolded vs parton-level truth distributions."""

from cinnflow.closure.baseline import DEFAULT_ITERATIONS, IBUResult, ibu_unfold
from cinnflow.closure.metrics import (
    DEFAULT_BINS,
    MASS_WINDOW_HALF_WIDTH,
    PEAK_BIN_WIDTH,
    PEAK_HALF_WINDOW,
    PEAK_TARGETS,
    ClosureHistograms,
    automatic_edges,
    bin_index,
    bootstrap_replicas,
    closure_chi2,
    closure_histograms,
    max_abs_deviation,
    median_abs_deviation,
    peak_position,
)
from cinnflow.closure.run import (
    detector_counterparts,
    detector_observables,
    run_closure,
)

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_ITERATIONS",
    "IBUResult",
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
    "detector_counterparts",
    "detector_observables",
    "ibu_unfold",
    "max_abs_deviation",
    "median_abs_deviation",
    "peak_position",
    "run_closure",
]
