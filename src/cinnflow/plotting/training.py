"""Plots of the training history."""

import csv
from pathlib import Path

from cinnflow.io.atomic import atomic_path
from cinnflow.plotting.style import add_label, new_figure, save_figure, style_context

__all__ = ["plot_loss"]


def plot_loss(loss_csv, *, plots_dir):
    """Plot training and validation loss (mean negative log-likelihood) per epoch.

    Args:
        loss_csv: CSV with columns ``epoch``, ``train_loss``, ``val_loss``.
        plots_dir: directory to create; receives ``loss.png``.
    """
    with open(loss_csv, newline="") as stream:
        rows = list(csv.DictReader(stream))
    epochs = [int(row["epoch"]) for row in rows]
    with style_context():
        fig, axes = new_figure()
        ax = axes[0, 0]
        for key, label in (("train_loss", "training"), ("val_loss", "validation")):
            ax.plot(epochs, [float(row[key]) for row in rows], marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("negative log-likelihood per event")
        ax.legend()
        add_label(ax)
    with atomic_path(plots_dir) as tmp:
        Path(tmp).mkdir()
        save_figure(fig, Path(tmp) / "loss.png")
