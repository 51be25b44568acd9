"""Plots of the calibration test: calibration curves and PIT (rank) histograms."""

import math

import numpy as np
from scipy import stats

from cinnflow.plotting.style import COLORS, add_label, new_figure, style_context

__all__ = ["plot_calibration_curves", "plot_pit_histograms", "plot_slices"]

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


#: Colour scale limits of the slice maps: calibration error and coverage offsets.
SLICE_ERROR_MAX = 0.1
SLICE_COVERAGE_SPAN = 0.1


def plot_slices(slices, *, labels):
    """Calibration error and 68% coverage of every observable in each slice.

    Args:
        slices: slice label -> ``{"n_events", "calibration_error": {obs: v},
            "coverage_68": {obs: v}, ...}`` (``sliced_calibration``).
        labels: observable name -> plot label.

    Returns:
        matplotlib.figure.Figure: two maps (observables x slices) with the values
        written in the cells: the calibration error (0 is perfect) and the 68%
        coverage minus 0.68.
    """
    slice_labels = list(slices)
    names = list(next(iter(slices.values()))["calibration_error"]) if slices else []
    error = np.array(
        [[slices[s]["calibration_error"][n] for s in slice_labels] for n in names]
    )
    coverage = np.array(
        [[slices[s]["coverage_68"][n] - 0.68 for s in slice_labels] for n in names]
    )
    height = 1.5 + 0.32 * max(len(names), 1)
    with style_context():
        fig, axes = new_figure(
            1,
            2,
            figsize=(4 + 3.2 * max(len(slice_labels), 1), height),
            layout="constrained",
        )
        panels = (
            (axes[0, 0], error, "calibration error", "Reds", 0.0, SLICE_ERROR_MAX),
            (
                axes[0, 1],
                coverage,
                "68% coverage - 0.68",
                "RdBu",
                -SLICE_COVERAGE_SPAN,
                SLICE_COVERAGE_SPAN,
            ),
        )
        for ax, values, title, cmap, vmin, vmax in panels:
            if values.size:
                ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
                for (row, col), value in np.ndenumerate(values):
                    ax.text(
                        col,
                        row,
                        f"{value:.3f}",
                        ha="center",
                        va="center",
                        fontsize="xx-small",
                    )
            ax.set_xticks(range(len(slice_labels)))
            ax.set_xticklabels(
                [f"{s}\n({slices[s]['n_events']} ev.)" for s in slice_labels],
                fontsize="x-small",
            )
            ax.set_yticks(range(len(names)))
            ax.set_yticklabels([labels.get(n, n) for n in names], fontsize="x-small")
            ax.minorticks_off()
            ax.set_title(title, fontsize="small")
    return fig
