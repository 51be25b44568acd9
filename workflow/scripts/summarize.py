"""The results table and the verdict on each bar of the main job."""

from cinnflow.logs import setup_logging
from cinnflow.preparation.prepare import load_arrays
from cinnflow.summary import summarize

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
summarize(
    sm.input.calibration,
    sm.input.closure,
    parton_names=[str(n) for n in load_arrays(sm.input.test)["parton_names"]],
    bars=dict(sm.params.bars),
    validation_bars=dict(sm.params.validation_bars),
    table_path=sm.output.table,
    bars_path=sm.output.bars,
    prior_path=sm.input.prior,
    injection_path=sm.input.injection[0] if sm.input.injection else None,
)
