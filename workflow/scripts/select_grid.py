"""Select the grid point with the lowest mean validation loss of its seed members."""

from cinnflow.logs import setup_logging
from cinnflow.training.grid import select_point, write_grid_metrics

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
selection = select_point(
    dict(sm.params.points), {k: list(v) for k, v in sm.params.loss_csvs.items()}
)
write_grid_metrics(sm.output[0], selection)
