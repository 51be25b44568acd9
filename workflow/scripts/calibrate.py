"""Per-event quantile coverage of the truth within each posterior."""

from cinnflow.calibration import run_calibration
from cinnflow.logs import setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
run_calibration(
    sm.input[0],
    metrics_path=sm.output.metrics,
    curves_csv=sm.output.curves,
    plots_dir=sm.output.plots,
    derived=dict(sm.params.derived),
    n_levels=sm.params.n_levels,
    seed=sm.params.seed,
    slices_path=sm.output.slices,
    slices_csv=sm.output.slices_csv,
    jets=list(sm.params.jets),
    n_slices=sm.params.n_slices,
)
