"""Plots of the calibration test: calibration curves and PIT (rank) histograms."""

import math

import numpy as np
from scipy import stats

from cinnflow.plotting.style import COLORS, add_label, new_figure, style_context

__all__ = ["plot_calibration_curves", "plot_pit_histograms"]

#: Number of bins of the PIT histograms; 20 keeps ~100 events per bin at 2000 events.
PIT_BINS = 20
_BAND_CONFIDENCE = 0.95


def plot_calibration_curves(levels, curves, band, *, labels, title=None):
    """Calibration curves of a group of observables with the calibrated band.

    Args:
        levels: nominal quantile levels, shape ``(n_levels,)``.
        curves: observable name -> observed fraction, shape ``(n_levels,)``.
        band: (lower, upper) edges of the band expected if calibrated.
        labels: observable name -> plot label.
        title: optional legend title, e.g. the group name.

    Returns:
        matplotlib.figure.Figure: upper panel observed vs nominal, lower panel
        observed - nominal.
    """
    low, high = band
    with style_context():
        fig, (ax, ax_diff) = new_figure(ratio_panel=True, figsize=(8, 8))
        ax.fill_between(
            levels, low, high, color=COLORS["band"], alpha=0.4, label="95% binomial"
        )
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1)
        ax_diff.fill_between(
            levels, low - levels, high - levels, color=COLORS["band"], alpha=0.4
        )
        ax_diff.axhline(0.0, color="black", linestyle="--", linewidth=1)
        for name, observed in curves.items():
            (line,) = ax.plot(levels, observed, label=labels.get(name, name))
            ax_diff.plot(levels, observed - levels, color=line.get_color())
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("observed fraction")
        ax_diff.set_xlabel("nominal quantile level")
        ax_diff.set_ylabel("obs. - nom.")
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(0.0, 0.93),
            fontsize="small",
            title=title,
            title_fontsize="small",
        )
        add_label(ax)
    return fig


def plot_pit_histograms(quantiles, *, labels, n_bins=PIT_BINS, ncols=3):
    """Histograms of the truth quantiles (PIT), one panel per observable.

    A calibrated posterior gives a flat histogram; a U shape means too narrow a
    posterior, a hump too wide, a slope a bias.

    Args:
        quantiles: observable name -> truth quantiles, shape ``(n_events,)``.
        labels: observable name -> plot label.
        n_bins: number of bins on [0, 1].
        ncols: panels per row.

    Returns:
        matplotlib.figure.Figure: the grid of histograms with the 95% binomial band
        of a flat histogram.
    """
    names = list(quantiles)
    nrows = max(1, math.ceil(len(names) / ncols))
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    with style_context():
        fig, axes = new_figure(
            nrows, ncols, figsize=(4.5 * ncols, 4.0 * nrows), layout="constrained"
        )
        for ax in axes.flat[len(names) :]:
            ax.set_visible(False)
        for ax, name in zip(axes.flat, names, strict=False):
            values = quantiles[name]
            counts, _ = np.histogram(values, bins=edges)
            n_events = values.size
            low, high = stats.binom.interval(_BAND_CONFIDENCE, n_events, 1.0 / n_bins)
            ax.axhspan(low, high, color=COLORS["band"], alpha=0.4)
            ax.axhline(n_events / n_bins, color="black", linestyle="--", linewidth=1)
            ax.stairs(counts, edges, color=COLORS["unfolded"], linewidth=1.5)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, max(counts.max(), high) * 1.3)
            ax.set_xlabel("truth quantile", fontsize="small")
            ax.set_ylabel("events", fontsize="small")
            ax.tick_params(labelsize="x-small")
            ax.set_title(labels.get(name, name), fontsize="small")
    return fig
