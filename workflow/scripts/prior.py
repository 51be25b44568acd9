"""Prior dependence: cINN and IBU closure of the test events reweighted in W pT."""

from cinnflow.closure.prior import run_prior
from cinnflow.logs import setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
prior = dict(sm.params.prior)
run_prior(
    sm.input.posterior,
    metrics_path=sm.output.metrics,
    plots_dir=sm.output.plots,
    derived=dict(sm.params.derived),
    reweight_observable=prior["observable"],
    exponent=prior["reweight_exponent"],
    scale=prior["reweight_scale_gev"],
    tail_quantile=prior["tail_quantile"],
    plots=tuple(prior["plots"]),
    n_bootstrap=sm.params.n_bootstrap,
    seed=sm.params.seed,
    train_path=sm.input.train,
    ibu_iterations=sm.params.ibu_iterations,
)
