"""One table of the main job's numbers, checked against the bars in the config."""

import json
import logging
from pathlib import Path

from cinnflow.io.atomic import atomic_path

__all__ = ["summarize"]

logger = logging.getLogger(__name__)


def _fmt(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"


def _validation_checks(calibration, closure, parton, bars):
    """Verdicts on the issue-5 bars: every observable, coverage windows, joint."""
    checks = {}
    errors = {
        k: v for k, v in calibration["calibration_error"].items() if v is not None
    }
    worst = max(errors, key=errors.get)
    checks["calibration_error"] = {
        "limit": bars["calibration_error"],
        "worst": errors[worst],
        "worst_observable": worst,
        "failing": sorted(
            n for n, v in errors.items() if v > bars["calibration_error"]
        ),
    }
    for key in ("coverage_68", "coverage_95"):
        low, high = bars[key]
        values = {n: calibration[key][n] for n in parton}
        outside = {n: v for n, v in values.items() if not low <= v <= high}
        centre = 0.5 * (low + high)
        worst = max(values, key=lambda n: abs(values[n] - centre))
        checks[key] = {
            "window": [low, high],
            "worst": values[worst],
            "worst_observable": worst,
            "failing": sorted(outside),
        }
    chi2 = {k: v for k, v in closure["chi2_ndf"].items() if v is not None}
    worst = max(chi2, key=chi2.get)
    checks["chi2_ndf"] = {
        "limit": bars["chi2_ndf"],
        "worst": chi2[worst],
        "worst_observable": worst,
        "failing": sorted(n for n, v in chi2.items() if v > bars["chi2_ndf"]),
    }
    joint = calibration.get("multivariate", {}).get("calibration_error")
    checks["multivariate_calibration_error"] = {
        "limit": bars["multivariate_calibration_error"],
        "worst": joint,
        "worst_observable": "energy_score",
        "failing": []
        if joint is not None and joint <= bars["multivariate_calibration_error"]
        else ["energy_score"],
    }
    for check in checks.values():
        check["pass"] = not check["failing"]
    return checks


def _pct(value):
    return "n/a" if value is None else f"{100 * value:+.1f} %"


def _comparison_rows(cinn, ibu):
    """Rows: observable, chi2/ndf and median bias of the cINN and of IBU."""
    return [
        f"| {name} | {_fmt(cinn['chi2_ndf'].get(name), 2)} "
        f"| {_fmt(ibu.get('chi2_ndf', {}).get(name), 2)} "
        f"| {_pct(cinn['bias_median'].get(name))} "
        f"| {_pct(ibu.get('bias_median', {}).get(name))} |"
        for name in cinn["chi2_ndf"]
    ]


_COMPARISON_HEADER = (
    "| observable | cINN chi2/ndf | IBU chi2/ndf | cINN median bias "
    "| IBU median bias |\n| --- | --- | --- | --- | --- |\n"
)


def _prior_section(prior):
    """Markdown: cINN against IBU on the reweighted test sample."""
    rw = prior["reweighting"]
    ibu = prior.get("ibu", {})
    obs = rw["observable"]
    lines = [
        f"\n### Changed prior: test sample reweighted by (1 + {obs} / "
        f"{rw['scale_gev']:g} GeV)^{rw['exponent']:g}\n",
        f"{obs} tail (truth above {_fmt(prior['tail_low_edge'], 1)} GeV): cINN bias "
        f"{_pct(prior['bias_tail'])} (median over bins), "
        f"{_pct(prior['bias_tail_integrated'])} integrated; IBU "
        f"{_pct(ibu.get('bias_tail'))}, {_pct(ibu.get('bias_tail_integrated'))}.\n",
        _COMPARISON_HEADER + "\n".join(_comparison_rows(prior, ibu)),
        "",
    ]
    return "\n".join(lines)


def _injection_section(injection):
    """Markdown: cINN against IBU on the injected "data" sample."""
    ibu = injection.get("ibu", {})
    lines = [
        f"\n### Injected signal: {injection['n_injected']} of "
        f"{injection['n_events']} events ({_pct(injection['fraction'])[1:]})\n",
    ]
    for name, region in injection["region"].items():
        if not region["bins"]:
            lines.append(f"- {name}: no signal region (purity {injection['purity']})")
            continue
        lines.append(
            f"- {name} signal region [{_fmt(region['low_edge'], 0)}, "
            f"{_fmt(region['high_edge'], 0)}] GeV: cINN bias "
            f"{_pct(region['bias_region'])} (median over bins), "
            f"{_pct(region['bias_region_integrated'])} integrated; IBU "
            f"{_pct(region.get('ibu_bias_region'))}, "
            f"{_pct(region.get('ibu_bias_region_integrated'))}"
        )
        if region.get("peak_bins"):
            lines.append(
                f"- {name} peak [{_fmt(region['peak_low_edge'], 0)}, "
                f"{_fmt(region['peak_high_edge'], 0)}] GeV (full width at half "
                "maximum of the injected events): cINN "
                f"{_pct(region['bias_peak_integrated'])}, IBU "
                f"{_pct(region.get('ibu_bias_peak_integrated'))} (integrated)"
            )
    lines += ["", _COMPARISON_HEADER + "\n".join(_comparison_rows(injection, ibu)), ""]
    return "\n".join(lines)


def summarize(
    calibration_path,
    closure_path,
    *,
    parton_names,
    bars,
    table_path,
    bars_path,
    validation_bars=None,
    prior_path=None,
    injection_path=None,
):
    """Write a Markdown table per observable and a JSON verdict per bar.

    Args:
        calibration_path: calibration metrics JSON (``run_calibration``).
        closure_path: closure metrics JSON (``run_closure``).
        parton_names: the parton-level columns the bars apply to.
        bars: ``calibration_error``, ``chi2_ndf``, ``median_abs_deviation`` and
            ``peak_shift_gev`` upper limits.
        validation_bars: issue-5 bars (``calibration_error`` and ``chi2_ndf`` of
            every observable, ``coverage_68`` / ``coverage_95`` windows of the
            parton columns, ``multivariate_calibration_error``), or None. Their
            verdicts go to ``validation`` in ``bars_path``, each with the list of
            failing observables.
        table_path: Markdown file to write.
        bars_path: JSON file to write: for each bar the limit, the worst value, the
            observable where it occurs and whether it passes, plus ``all_pass``.
        prior_path: prior-dependence metrics JSON (``run_prior``), or None; with
            it the table gains a section cINN against IBU on the reweighted
            sample.
        injection_path: injection metrics JSON (``run_injection``), or None; the
            same on the injected "data" sample, with the signal-region biases.

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
    validation = {}
    if validation_bars is not None:
        validation = _validation_checks(calibration, closure, parton, validation_bars)
        verdict["validation"] = validation
        verdict["validation_pass"] = all(c["pass"] for c in validation.values())

    baseline = closure.get("baseline", {}).get("chi2_ndf", {})
    header = (
        "| observable | calibration error | 68% coverage | 95% coverage "
        "| chi2/ndf | chi2/ndf (paired) | max abs(unf/truth - 1) "
        "| median abs(unf/truth - 1) | IBU chi2/ndf |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    lines = [
        f"| {name} | {_fmt(calibration['calibration_error'].get(name))} "
        f"| {_fmt(calibration['coverage_68'].get(name))} "
        f"| {_fmt(calibration['coverage_95'].get(name))} "
        f"| {_fmt(closure['chi2_ndf'].get(name), 2)} "
        f"| {_fmt(closure.get('chi2_ndf_paired', {}).get(name), 2)} "
        f"| {_fmt(closure.get('max_abs_deviation', {}).get(name))} "
        f"| {_fmt(closure['median_abs_deviation'].get(name))} "
        f"| {_fmt(baseline.get(name), 2)} |"
        for name in calibration["calibration_error"]
    ]
    joint = calibration.get("multivariate")
    if joint:
        lines.append(
            f"| joint (energy-score rank, {joint['n_dimensions']}-d) "
            f"| {_fmt(joint['calibration_error'])} | | | | | | | |"
        )
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

    def bound(check):
        return f"in {check['window']}" if "window" in check else f"<= {check['limit']}"

    validation_lines = [
        f"- {bar} {bound(c)}: worst {_fmt(c['worst'])} ({c['worst_observable']}) -> "
        f"{'pass' if c['pass'] else 'FAIL: ' + ', '.join(c['failing'])}"
        for bar, c in validation.items()
    ]
    text = (
        header
        + "\n".join(lines)
        + "\n\nchi2/ndf: bootstrap (events and draws) uncertainties of both "
        "histograms; IBU: iterative Bayesian unfolding of the detector-level "
        "counterpart, response from the training sample.\n"
        "chi2/ndf (paired): the variance of the difference, the same test events "
        "entering unfolded and truth (much stricter). Calibration error: largest "
        "absolute deviation of the coverage curve from the diagonal; coverage: "
        "fraction of test events whose truth lies in the central 68 % / 95 % of "
        "its posterior draws. pT in GeV, angles in radians.\n\n"
        + "\n".join(peaks)
        + "\n\nBars (12 parton observables; peaks of the masses):\n"
        + "\n".join(verdicts)
        + "\n"
    )
    if validation_lines:
        text += (
            "\nIssue 5 bars (calibration error and chi2/ndf of every observable, "
            "coverage of the 12 parton observables, joint check):\n"
            + "\n".join(validation_lines)
            + "\n"
        )
    if prior_path is not None:
        text += _prior_section(json.loads(Path(prior_path).read_text()))
    if injection_path is not None:
        text += _injection_section(json.loads(Path(injection_path).read_text()))
    with atomic_path(table_path) as tmp:
        Path(tmp).write_text(text)
    with atomic_path(bars_path) as tmp:
        Path(tmp).write_text(json.dumps(verdict, indent=2))
    for line in verdicts + validation_lines:
        logger.info("%s", line)
    return verdict
