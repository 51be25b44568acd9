"""Plots of the calibration and closure tests, with one shared style."""

from cinnflow.plotting.style import (
    COLORS,
    DPI,
    LABEL_TEXT,
    add_label,
    new_figure,
    save_figure,
    style_context,
)

__all__ = [
    "COLORS",
    "DPI",
    "LABEL_TEXT",
    "add_label",
    "new_figure",
    "save_figure",
    "style_context",
]
