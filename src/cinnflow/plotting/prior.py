"""Plot of the prior-dependence test: reweighted truth and unfolded with their ratio."""

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

__all__ = ["plot_prior"]

#: Limits of the ratio panel.
RATIO_LIMITS = (0.8, 1.2)
#: Upper y limit of the main panel as a multiple of the highest bin.
HEADROOM = 1.45
#: The same on a logarithmic axis (room for the legend).
LOG_HEADROOM = 30.0


def _ratio(numerator, denominator):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def plot_prior(
    edges,
    weighted,
    unweighted,
    *,
    xlabel,
    title="",
    ibu=None,
    reference_label="truth, training spectrum",
    sample_label="reweighted sample",
    ylabel="weighted events / bin",
    log_y=False,
    ratio_limits=RATIO_LIMITS,
):
    """Truth and unfolded distributions of a changed-prior sample, with ratios.

    Args:
        edges: bin edges, shape ``(n_bins + 1,)``.
        weighted: the result of one observable on the changed-prior sample
            (``truth``, ``unfolded``, ``truth_err``, ``unfolded_err`` per regular
            bin), e.g. the ``"weighted"`` part of
            ``cinnflow.closure.prior.prior_closure``.
        unweighted: the reference: ``truth`` per regular bin (dashed line) and
            optionally ``unfolded`` (its ratio to its truth, dotted).
        xlabel: x-axis label.
        title: legend title (the reweighting factor or the injection).
        ibu: IBU's unfolded histogram of the changed-prior sample per regular bin,
            or None.
        reference_label: legend entry of the reference truth.
        sample_label: legend entry of the changed-prior ratio.
        ylabel: y-axis label of the upper panel.
        log_y: logarithmic y axis of the upper panel (a small bump on a falling
            spectrum).
        ratio_limits: y limits of the ratio panel.

    Returns:
        matplotlib.figure.Figure: upper panel truth (points), unfolded (line with
        its bootstrap band), IBU (dash-dotted) and the reference truth (dashed);
        lower panel unfolded / truth (with the band of the truth and unfolded
        errors added), IBU / truth, and the reference ratio (dotted).
    """
    edges = np.asarray(edges)
    t = np.asarray(weighted["truth"])
    u = np.asarray(weighted["unfolded"])
    u_err = np.asarray(weighted["unfolded_err"])
    t_err = np.asarray(weighted["truth_err"])
    t0 = np.asarray(unweighted["truth"])
    ratio = _ratio(u, t)
    ratio_err = _ratio(np.hypot(u_err, t_err), t)

    with style_context():
        fig, (ax, ax_ratio) = new_figure(ratio_panel=True, figsize=(8, 8))
        mplhep.histplot(
            t0,
            edges,
            ax=ax,
            yerr=False,
            color=COLORS["band"],
            linestyle="--",
            label=reference_label,
        )
        draw_unfolded_and_truth(
            ax, edges, unfolded=u, unfolded_err=u_err, truth=t, truth_err=t_err
        )
        if ibu is not None:
            mplhep.histplot(
                np.asarray(ibu),
                edges,
                ax=ax,
                yerr=False,
                color=COLORS["baseline"],
                linestyle="-.",
                label="IBU",
            )
        ax.set_ylabel(ylabel)
        top = max(np.max(t), np.max(u + u_err), np.max(t0))
        positive = t[t > 0]
        if log_y and positive.size:
            ax.set_yscale("log")
            ax.set_ylim(0.5 * positive.min(), LOG_HEADROOM * top)
        else:
            ax.set_ylim(0, HEADROOM * top if top > 0 else 1.0)
        ax.legend(loc="upper right", fontsize="small", title=title or None)
        add_label(ax)

        draw_ratio_band(ax_ratio, edges, ratio_err)
        mplhep.histplot(
            ratio,
            edges,
            ax=ax_ratio,
            yerr=False,
            color=COLORS["unfolded"],
            label=sample_label,
        )
        if ibu is not None:
            mplhep.histplot(
                _ratio(np.asarray(ibu), t),
                edges,
                ax=ax_ratio,
                yerr=False,
                color=COLORS["baseline"],
                linestyle="-.",
                label="IBU",
            )
        if "unfolded" in unweighted:
            mplhep.histplot(
                _ratio(np.asarray(unweighted["unfolded"]), t0),
                edges,
                ax=ax_ratio,
                yerr=False,
                color=COLORS["detector"],
                linestyle=":",
                label="unweighted sample",
            )
        ax_ratio.legend(loc="lower left", fontsize="x-small", ncol=3, frameon=False)
        ax_ratio.set_ylim(*ratio_limits)
        ax_ratio.set_ylabel("unf. / truth")
        ax_ratio.set_xlabel(xlabel)
        ax_ratio.set_xlim(edges[0], edges[-1])
    return fig
