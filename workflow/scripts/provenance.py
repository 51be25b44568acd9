"""Record the versions, git commit and configuration behind the trained models,
the posterior and the metrics, with the SHA-256 of each."""

from cinnflow.logs import setup_logging
from cinnflow.provenance import write_provenance

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
write_provenance(sm.output[0], dict(sm.params.config), list(sm.input))
