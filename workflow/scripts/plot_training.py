"""Training and validation loss per epoch (of the selected point with a grid)."""

from cinnflow.logs import setup_logging
from cinnflow.plotting.training import plot_loss
from cinnflow.training.grid import selected_paths

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
losses = list(sm.input.losses)
if sm.input.grid:
    losses = selected_paths(sm.input.grid[0], losses)
plot_loss(losses[0], plots_dir=sm.output[0])
