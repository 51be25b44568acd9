"""Calibration test of the posterior draws (truth quantiles, curves, coverage)."""

from cinnflow.calibration.metrics import (
    COVERAGE_LEVELS,
    binomial_band,
    calibration_curve,
    calibration_error,
    interval_coverage,
    truth_quantiles,
)
from cinnflow.calibration.run import (
    calibration_metrics,
    observable_groups,
    run_calibration,
)

__all__ = [
    "COVERAGE_LEVELS",
    "binomial_band",
    "calibration_curve",
    "calibration_error",
    "calibration_metrics",
    "interval_coverage",
    "observable_groups",
    "run_calibration",
    "truth_quantiles",
]
