"""Unfolded (cINN and IBU) against truth of the injected "data" sample."""

from cinnflow.closure.injection import run_injection
from cinnflow.logs import setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
injection = dict(sm.params.injection)
run_injection(
    sm.input.posterior,
    metrics_path=sm.output.metrics,
    plots_dir=sm.output.plots,
    train_path=sm.input.train,
    derived=dict(sm.params.derived),
    region_observables=tuple(injection["region_observables"]),
    purity=injection["purity"],
    plots=tuple(injection["plots"]),
    n_bootstrap=sm.params.n_bootstrap,
    ibu_iterations=sm.params.ibu_iterations,
    seed=sm.params.seed,
    label=sm.params.label,
)
