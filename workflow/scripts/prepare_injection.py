"""Select and pair the injected events (no split), with their acceptance."""

from cinnflow.config import load_process
from cinnflow.logs import setup_logging
from cinnflow.preparation.prepare import prepare_sample

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
prepare_sample(
    list(sm.input.events),
    load_process(sm.params.process),
    output=sm.output.sample,
    summary_path=sm.output.summary,
    config=dict(sm.config),
)
