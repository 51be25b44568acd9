"""Plot of the closure test: truth vs unfolded (and detector level) with a ratio."""

import mplhep
import numpy as np

from cinnflow.plotting.style import (
    COLORS,
    add_label,
    draw_ratio_band,
    draw_unfolded_and_truth,
    new_figure,
    style_context,
)

__all__ = ["plot_closure"]

#: Limits of the ratio panel.
RATIO_LIMITS = (0.8, 1.2)
#: Upper y limit of the main panel as a multiple of the highest bin.
HEADROOM = 1.45


def plot_closure(histograms, *, xlabel, detector=None, baseline=None):
    """Truth and unfolded distributions of one observable with their ratio.

    Args:
        histograms: ``cinnflow.closure.ClosureHistograms`` of the observable.
        xlabel: x-axis label.
        detector: optional ``hist.Hist`` of the detector-level counterpart, same
            binning, drawn dashed for reference.
        baseline: optional regular bin contents of a classical unfolding (IBU) of
            the same events, drawn dotted, also in the ratio panel.

    Returns:
        matplotlib.figure.Figure: upper panel events per bin (truth with Poisson
        errors, unfolded with its bootstrap band), lower panel unfolded / truth with
        the band of the closure uncertainty (standard deviation of the difference
        divided by the truth).
    """
    truth, unfolded = histograms.truth, histograms.unfolded
    edges = histograms.edges
    t_values = truth.values()
    u_values = unfolded.values()
    u_error = np.sqrt(unfolded.variances())
    diff_error = np.sqrt(histograms.diff_variance[1:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(t_values > 0, u_values / t_values, np.nan)
        ratio_error = np.where(t_values > 0, diff_error / t_values, np.nan)

    with style_context():
        fig, (ax, ax_ratio) = new_figure(ratio_panel=True, figsize=(8, 8))
        if detector is not None:
            mplhep.histplot(
                detector.values(),
                edges,
                ax=ax,
                yerr=False,
                color=COLORS["detector"],
                linestyle="--",
                label="detector level",
            )
        if baseline is not None:
            mplhep.histplot(
                baseline,
                edges,
                ax=ax,
                yerr=False,
                color=COLORS["baseline"],
                linestyle=":",
                label="IBU (baseline)",
            )
        draw_unfolded_and_truth(
            ax,
            edges,
            unfolded=u_values,
            unfolded_err=u_error,
            truth=t_values,
            truth_err=np.sqrt(t_values),
        )
        ax.set_ylabel("events / bin")
        # Head room above the highest bin keeps the legend off the data.
        top = max(np.max(t_values), np.max(u_values + u_error))
        if detector is not None:
            top = max(top, np.max(detector.values()))
        ax.set_ylim(0, HEADROOM * top if top > 0 else 1.0)
        ax.legend(loc="upper right", fontsize="small")
        add_label(ax)

        draw_ratio_band(ax_ratio, edges, ratio_error)
        mplhep.histplot(ratio, edges, ax=ax_ratio, yerr=False, color=COLORS["unfolded"])
        if baseline is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio_ibu = np.where(t_values > 0, baseline / t_values, np.nan)
            mplhep.histplot(
                ratio_ibu,
                edges,
                ax=ax_ratio,
                yerr=False,
                color=COLORS["baseline"],
                linestyle=":",
            )
        ax_ratio.set_ylim(*RATIO_LIMITS)
        ax_ratio.set_ylabel("unf. / truth")
        ax_ratio.set_xlabel(xlabel)
        ax_ratio.set_xlim(edges[0], edges[-1])
    return fig
