"""Calibration test of the posterior draws (truth quantiles, curves, coverage)."""

from cinnflow.calibration.metrics import (
    COVERAGE_LEVELS,
    binomial_band,
    calibration_curve,
    calibration_error,
    interval_coverage,
    truth_quantiles,
)
from cinnflow.calibration.multivariate import (
    energy_prerank_quantiles,
    standardise_posterior,
)
from cinnflow.calibration.run import (
    calibration_metrics,
    observable_groups,
    run_calibration,
)
from cinnflow.calibration.slices import (
    jet_multiplicity,
    leading_jet_pt,
    quantile_slices,
    sliced_calibration,
)

__all__ = [
    "COVERAGE_LEVELS",
    "binomial_band",
    "calibration_curve",
    "calibration_error",
    "calibration_metrics",
    "energy_prerank_quantiles",
    "jet_multiplicity",
    "leading_jet_pt",
    "interval_coverage",
    "observable_groups",
    "quantile_slices",
    "run_calibration",
    "sliced_calibration",
    "standardise_posterior",
    "truth_quantiles",
]
