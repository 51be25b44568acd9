"""Shared plot style, figure creation and atomic saving.

Figures are built with :class:`matplotlib.figure.Figure` directly instead of pyplot:
no GUI backend is touched (the Agg canvas renders them), no global figure registry
keeps them alive, and library code never changes the global matplotlib state. The
mplhep CMS-like style is applied through :func:`style_context` around the code that
builds a figure, so every plot in cinnflow looks the same.
"""

import contextlib
import logging

import matplotlib as mpl
import mplhep
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cinnflow.io.atomic import atomic_path

__all__ = [
    "COLORS",
    "DPI",
    "LABEL_TEXT",
    "add_label",
    "draw_ratio_band",
    "draw_unfolded_and_truth",
    "new_figure",
    "save_figure",
    "style_context",
]

logger = logging.getLogger(__name__)

#: Resolution of saved PNG files (dots per inch).
DPI = 100
#: Text next to the bold experiment label on every plot.
LABEL_TEXT = "Simulation"
#: Colours of the recurring curves, so truth/unfolded/detector match across plots.
COLORS = {
    "truth": "black",
    "unfolded": "#e42536",
    "detector": "#5790fc",
    "band": "#9c9ca1",
    "baseline": "#964a8b",
}


@contextlib.contextmanager
def style_context():
    """Apply the mplhep CMS style (with a non-GUI backend) inside a ``with`` block."""
    with mpl.style.context(mplhep.style.CMS), mpl.rc_context({"figure.dpi": DPI}):
        yield


def new_figure(
    nrows=1, ncols=1, *, figsize=None, ratio_panel=False, layout=None, **kwargs
):
    """Create a figure with an Agg canvas and its axes (call inside style_context).

    Args:
        nrows: rows of axes.
        ncols: columns of axes.
        figsize: (width, height) in inches, or None for the style's size.
        ratio_panel: if True, make a main panel over a shared-x ratio panel
            (``nrows`` and ``ncols`` are then ignored).
        layout: matplotlib layout engine name (``"constrained"``) or None.
        **kwargs: passed to ``Figure.subplots``.

    Returns:
        tuple[Figure, np.ndarray | Axes]: the figure and its axes.
    """
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    if ratio_panel:
        axes = fig.subplots(
            2,
            1,
            sharex=True,
            gridspec_kw={"height_ratios": (3, 1), "hspace": 0.07},
            **kwargs,
        )
    else:
        axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def add_label(ax, text=LABEL_TEXT):
    """Write the 'cinnflow Simulation' label in the top left corner of ``ax``."""
    mplhep.label.exp_label(exp="cinnflow", llabel=text, com=None, loc=0, ax=ax)


def draw_unfolded_and_truth(ax, edges, *, unfolded, unfolded_err, truth, truth_err):
    """Draw the unfolded histogram with its error band and the truth as points."""
    ax.stairs(
        unfolded + unfolded_err,
        edges,
        baseline=unfolded - unfolded_err,
        fill=True,
        color=COLORS["unfolded"],
        alpha=0.3,
    )
    mplhep.histplot(
        unfolded, edges, ax=ax, yerr=False, color=COLORS["unfolded"], label="unfolded"
    )
    mplhep.histplot(
        truth,
        edges,
        ax=ax,
        yerr=truth_err,
        histtype="errorbar",
        color=COLORS["truth"],
        label="parton-level truth",
    )


def draw_ratio_band(ax_ratio, edges, ratio_err):
    """Draw the grey band 1 +- ``ratio_err`` (NaN as 0) and the line at 1."""
    ax_ratio.stairs(
        1 + np.nan_to_num(ratio_err),
        edges,
        baseline=1 - np.nan_to_num(ratio_err),
        fill=True,
        color=COLORS["band"],
        alpha=0.5,
    )
    ax_ratio.axhline(1.0, color="black", linestyle="--", linewidth=1)


def save_figure(fig, path):
    """Save ``fig`` as ``path`` atomically (format from the suffix).

    Args:
        fig: the figure.
        path: output file, e.g. ``results/plots/closure/m_qq.png``.
    """
    # Generic font families are resolved when drawing, so draw in the style too.
    with style_context(), atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    logger.debug("wrote %s", path)
