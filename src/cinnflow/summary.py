"""One table of the main job's numbers, checked against the bars in the config."""

import json
import logging
from pathlib import Path

from cinnflow.io.atomic import atomic_path

__all__ = ["summarize"]

logger = logging.getLogger(__name__)


def _fmt(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"


def summarize(
    calibration_path, closure_path, *, parton_names, bars, table_path, bars_path
):
    """Write a Markdown table per observable and a JSON verdict per bar.

    Args:
        calibration_path: calibration metrics JSON (``run_calibration``).
        closure_path: closure metrics JSON (``run_closure``).
        parton_names: the parton-level columns the bars apply to.
        bars: ``calibration_error``, ``chi2_ndf``, ``median_abs_deviation`` and
            ``peak_shift_gev`` upper limits.
        table_path: Markdown file to write.
        bars_path: JSON file to write: for each bar the limit, the worst value, the
            observable where it occurs and whether it passes, plus ``all_pass``.

    Returns:
        dict: the content of ``bars_path``.
    """
    calibration = json.loads(Path(calibration_path).read_text())
    closure = json.loads(Path(closure_path).read_text())

    checks = {}

    def check(bar, values):
        values = {k: v for k, v in values.items() if v is not None}
        worst = max(values, key=values.get)
        checks[bar] = {
            "limit": bars[bar],
            "worst": values[worst],
            "worst_observable": worst,
            "pass": bool(values[worst] <= bars[bar]),
        }

    parton = list(parton_names)
    check("calibration_error", {n: calibration["calibration_error"][n] for n in parton})
    check("chi2_ndf", {n: closure["chi2_ndf"][n] for n in parton})
    check(
        "median_abs_deviation",
        {n: closure["median_abs_deviation"][n] for n in parton},
    )
    check(
        "peak_shift_gev",
        {n: abs(peak["shift"]) for n, peak in closure["peak"].items()},
    )
    verdict = {"bars": checks, "all_pass": all(c["pass"] for c in checks.values())}

    header = (
        "| observable | calibration error | 68% coverage | 95% coverage "
        "| chi2/ndf | chi2/ndf (paired) | median abs(unf/truth - 1) |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n"
    )
    lines = [
        f"| {name} | {_fmt(calibration['calibration_error'].get(name))} "
        f"| {_fmt(calibration['coverage_68'].get(name))} "
        f"| {_fmt(calibration['coverage_95'].get(name))} "
        f"| {_fmt(closure['chi2_ndf'].get(name), 2)} "
        f"| {_fmt(closure.get('chi2_ndf_paired', {}).get(name), 2)} "
        f"| {_fmt(closure['median_abs_deviation'].get(name))} |"
        for name in calibration["calibration_error"]
    ]
    peaks = [
        f"- {name} peak: unfolded {_fmt(p['unfolded'], 2)} GeV, truth "
        f"{_fmt(p['truth'], 2)} GeV, shift {_fmt(p['shift'], 2)} GeV"
        for name, p in closure["peak"].items()
    ]
    verdicts = [
        f"- {bar} <= {c['limit']}: worst {_fmt(c['worst'])} ({c['worst_observable']}) "
        f"-> {'pass' if c['pass'] else 'FAIL'}"
        for bar, c in checks.items()
    ]
    text = (
        header
        + "\n".join(lines)
        + "\n\n"
        + "\n".join(peaks)
        + "\n\nBars (12 parton observables; peaks of the masses):\n"
        + "\n".join(verdicts)
        + "\n"
    )
    with atomic_path(table_path) as tmp:
        Path(tmp).write_text(text)
    with atomic_path(bars_path) as tmp:
        Path(tmp).write_text(json.dumps(verdict, indent=2))
    for line in verdicts:
        logger.info("%s", line)
    return verdict
