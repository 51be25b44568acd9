"""Select and pair the injected events (no split), with their acceptance."""

from cinnflow.config import load_process
from cinnflow.logs import setup_logging
from cinnflow.preparation.prepare import prepare_sample

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
prepare_sample(
    list(sm.input.events),
    # The first process file is the injected one; the second, its base.
    load_process(sm.input.process[0]),
    output=sm.output.sample,
    summary_path=sm.output.summary,
    config=dict(sm.config),
)
