"""Training and validation loss per epoch."""

from cinnflow.logs import setup_logging
from cinnflow.plotting.training import plot_loss

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
plot_loss(sm.input[0], plots_dir=sm.output[0])
