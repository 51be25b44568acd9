"""The "data" sample: the test split plus injected events at a fixed fraction."""

from cinnflow.closure.injection import run_mix
from cinnflow.logs import setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
run_mix(
    sm.input.test,
    sm.input.injected,
    output=sm.output[0],
    fraction=sm.params.fraction,
    seed=sm.params.seed,
)
