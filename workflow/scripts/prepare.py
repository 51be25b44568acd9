"""Select and pair events, split them into training, validation and test sets."""

from cinnflow.config import load_process
from cinnflow.logs import setup_logging
from cinnflow.preparation.prepare import prepare

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
prepare(
    list(sm.input.events),
    load_process(sm.input.process),
    fractions=dict(sm.params.split),
    seed=sm.params.seed,
    outputs={name: sm.output[name] for name in ("train", "val", "test")},
    provenance_path=sm.output.provenance,
    config=dict(sm.config),
)
