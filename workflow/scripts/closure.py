"""Unfolded against parton-truth distributions, with ratio panels and chi2."""

from cinnflow.closure import run_closure
from cinnflow.logs import setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
run_closure(
    sm.input.posterior,
    metrics_path=sm.output.metrics,
    histograms_csv=sm.output.histograms,
    plots_dir=sm.output.plots,
    derived=dict(sm.params.derived),
    train_path=sm.input.train,
    n_bootstrap=sm.params.n_bootstrap,
    ibu_iterations=sm.params.ibu_iterations,
    seed=sm.params.seed,
)
