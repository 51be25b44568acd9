"""Injected signal: unfold a "data" sample holding a resonance the training never saw.

The "data" sample is the test split of the main process plus events of a second
process (a 1.3 TeV W' -> Z W by default, as in arXiv:1912.00477) such that the
injected events are a fraction ``f`` of it (:func:`mix_samples`). The cINN,
trained on the main process alone, is sampled on every event of it; per
observable the unfolded histogram is compared with the parton-level truth of the
same events (chi2/ndf with bootstrap errors, signed bias ``unfolded / truth - 1``),
in particular in the *signal region* of the observables where the resonance shows
(bins in which injected events make up at least ``purity`` of the truth). Beside
it, the classical baseline: iterative Bayesian unfolding of the detector-level
histogram of the same events with the response and starting prior of the training
sample (``cinnflow.closure.baseline.ibu_unfold``), same bins.

A posterior that follows the detector level reproduces the bump; one that returns
its training prior (no resonance there) loses it, so ``bias_region`` measures how
much of the new physics the training prior hides.
"""

import logging
import math
from pathlib import Path

import numpy as np

from cinnflow.closure.baseline import DEFAULT_ITERATIONS, ibu_unfold
from cinnflow.closure.metrics import (
    DEFAULT_BINS,
    MIN_BIN_FRACTION,
    PEAK_TARGETS,
    automatic_edges,
    bootstrap_replicas,
)
from cinnflow.closure.prior import (
    _bias,
    _bin_events,
    _median,
    _nested_clean,
    _weighted_histograms,
    _wrap_angles,
    closure_entry,
    ibu_comparison,
)
from cinnflow.closure.run import (
    _training_observables,
    _write_json,
    detector_observables,
)
from cinnflow.errors import ConfigError, InputFileError
from cinnflow.physics.observables import observable_label
from cinnflow.physics.posterior import load_posterior
from cinnflow.plotting.prior import plot_prior
from cinnflow.plotting.style import save_figure
from cinnflow.preparation.prepare import load_arrays, save_arrays

__all__ = [
    "DEFAULT_FRACTION",
    "DEFAULT_PURITY",
    "check_injection",
    "injection_closure",
    "injection_counts",
    "mix_samples",
    "run_injection",
    "run_mix",
]

logger = logging.getLogger(__name__)

#: Fraction of injected events in the "data" sample (10 % as in arXiv:1912.00477).
DEFAULT_FRACTION = 0.1
#: A bin belongs to the signal region if injected events are at least this fraction
#: of its truth.
DEFAULT_PURITY = 0.5
#: Observables whose signal region is reported (the diboson mass and the W pT).
DEFAULT_REGION_OBSERVABLES = ("m_WZ", "pt_W")
#: Peak of the resonance: the contiguous bins around the maximum of the injected
#: truth whose injected content is at least this fraction of the maximum (full
#: width at half maximum). The selected W' events also fill a long low-mass
#: (off-shell) tail, so the signal region's integral can hide a bump that the
#: unfolding smears out; the peak is where its height is measured.
PEAK_FRACTION = 0.5
#: Upper end of the binning of the region observables: at least this quantile of
#: the injected events' truth.
REGION_HIGH_QUANTILE = 0.995
#: Limits of the ratio panel of the injection plots (the resonance bins hold few
#: events).
INJECTION_RATIO_LIMITS = (0.5, 1.5)
#: Keys of a prepared file that are mixed event by event.
_EVENT_KEYS = ("x_parton", "c_detector", "event_id")
#: Keys that must agree between the two samples.
_NAME_KEYS = ("parton_names", "parton_kinds", "detector_names", "detector_kinds")


def check_injection(injection, *, key="evaluation.injection"):
    """Check an injection config: a process file, a fraction in (0, 1), sizes.

    Args:
        injection: mapping with ``process`` (path of a process file),
            ``fraction``, ``n_events`` and ``n_chunks``.
        key: the config key, for messages.

    Returns:
        dict: the same settings.

    Raises:
        ConfigError: naming the key and the value seen.
    """
    if not isinstance(injection, dict):
        msg = f"{key} is {injection!r}; expected a mapping"
        raise ConfigError(msg)
    process = injection.get("process")
    if not isinstance(process, str) or not Path(process).is_file():
        msg = f"{key}.process is {process!r}; expected the path of a process file"
        raise ConfigError(msg)
    fraction = injection.get("fraction")
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not 0.0 < fraction < 1.0
    ):
        msg = f"{key}.fraction is {fraction!r}; expected a number in (0, 1)"
        raise ConfigError(msg)
    for name in ("n_events", "n_chunks"):
        value = injection.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"{key}.{name} is {value!r}; expected a positive integer"
            raise ConfigError(msg)
    return injection


def injection_counts(n_main, n_injected, fraction):
    """How many main and injected events a sample of injected fraction ``f`` takes.

    As many events as possible: all injected events if the main sample can carry
    them, else all main events; the other count follows from the fraction, rounded
    to the nearest integer (so ``n_inj / (n_main + n_inj)`` is ``f`` to within
    ``1 / (2 n)``, exactly when ``f n`` is an integer).

    Args:
        n_main: events available in the main sample.
        n_injected: injected events available.
        fraction: the injected fraction, in (0, 1).

    Returns:
        tuple[int, int]: ``(n_main_used, n_injected_used)``.

    Raises:
        ConfigError: a fraction outside (0, 1), or too few events for one injected
            event.
    """
    if not 0.0 < fraction < 1.0:
        msg = f"injection fraction is {fraction!r}; expected a number in (0, 1)"
        raise ConfigError(msg)
    ratio = fraction / (1.0 - fraction)
    n_inj = min(int(n_injected), int(math.floor(n_main * ratio + 1e-9)))
    n_use = int(round(n_inj / ratio))
    if n_use > n_main:
        n_inj -= 1
        n_use = int(round(n_inj / ratio))
    if n_inj < 1 or n_use < 1:
        msg = (
            f"cannot mix {n_injected} injected and {n_main} main events at an "
            f"injected fraction of {fraction!r}; expected enough events for at least "
            "one of each"
        )
        raise ConfigError(msg)
    return n_use, n_inj


def mix_samples(main, injected, *, fraction, rng):
    """Mix two prepared samples so that the injected events are ``fraction`` of it.

    Args:
        main: prepared arrays (``load_arrays``) of the main process (test split).
        injected: prepared arrays of the injected process, same columns.
        fraction: injected fraction, in (0, 1).
        rng: ``numpy.random.Generator`` choosing the events and their order.

    Returns:
        dict: the arrays of a prepared file (``x_parton``, ``c_detector``,
        ``event_id`` and the names and kinds) for the chosen events in random
        order, plus ``is_injected`` (bool, ``(n_events,)``).

    Raises:
        ConfigError: column names or kinds that differ between the samples, or a
            bad fraction (see :func:`injection_counts`).
    """
    for key in _NAME_KEYS:
        a = [str(v) for v in main.get(key, [])]
        b = [str(v) for v in injected.get(key, [])]
        if a != b:
            msg = (
                f"injected sample has {key} {b!r}, the main sample {a!r}; expected "
                "the same columns (the same parton and detector sections)"
            )
            raise ConfigError(msg)
    n_main, n_inj = injection_counts(
        len(main["x_parton"]), len(injected["x_parton"]), fraction
    )
    take_main = np.sort(rng.choice(len(main["x_parton"]), n_main, replace=False))
    take_inj = np.sort(rng.choice(len(injected["x_parton"]), n_inj, replace=False))
    order = rng.permutation(n_main + n_inj)
    mixed = {}
    for key in _EVENT_KEYS:
        both = np.concatenate([main[key][take_main], injected[key][take_inj]])
        mixed[key] = both[order]
    flag = np.concatenate([np.zeros(n_main, bool), np.ones(n_inj, bool)])
    mixed["is_injected"] = flag[order]
    for key in _NAME_KEYS:
        mixed[key] = main[key]
    return mixed


def run_mix(main_path, injected_path, *, output, fraction, seed):
    """Write the "data" sample: main test events plus a fraction of injected ones.

    Args:
        main_path: prepared test split of the main process (npz).
        injected_path: prepared injected sample (npz).
        output: npz file to write (prepared keys plus ``is_injected``).
        fraction: injected fraction, in (0, 1).
        seed: seed of the choice and order of events.

    Returns:
        dict: ``n_main``, ``n_injected``, ``fraction`` (realised).
    """
    main = load_arrays(main_path)
    injected = load_arrays(injected_path)
    mixed = mix_samples(
        main, injected, fraction=fraction, rng=np.random.default_rng(seed)
    )
    save_arrays(output, **mixed)
    n_inj = int(mixed["is_injected"].sum())
    n_total = len(mixed["is_injected"])
    logger.info(
        "data sample %s: %d main events of %d (%s) and %d injected of %d (%s), "
        "injected fraction %.4f (asked %.4f)",
        output,
        n_total - n_inj,
        len(main["x_parton"]),
        main_path,
        n_inj,
        len(injected["x_parton"]),
        injected_path,
        n_inj / n_total,
        fraction,
    )
    return {"n_main": n_total - n_inj, "n_injected": n_inj, "fraction": n_inj / n_total}


def _region(truth_injected, truth, used, purity):
    """Regular-bin indices where injected events are >= ``purity`` of the truth."""
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(truth > 0, truth_injected / truth, 0.0)
    return np.flatnonzero(used & (share >= purity))


def _peak(truth_injected, fraction):
    """Regular-bin indices of the resonance peak (see ``PEAK_FRACTION``)."""
    if truth_injected.size == 0 or truth_injected.max() <= 0:
        return np.array([], dtype=int)
    top = int(np.argmax(truth_injected))
    above = truth_injected >= fraction * truth_injected[top]
    low, high = top, top
    while low > 0 and above[low - 1]:
        low -= 1
    while high < above.size - 1 and above[high + 1]:
        high += 1
    return np.arange(low, high + 1)


def _integrated(values, truth, bins):
    total = float(np.sum(truth[bins]))
    return float(np.sum(values[bins]) / total - 1.0) if total > 0 else float("nan")


def injection_closure(
    truth,
    draws,
    edges,
    is_injected,
    *,
    ibu=None,
    region_observables=DEFAULT_REGION_OBSERVABLES,
    purity=DEFAULT_PURITY,
    n_bootstrap,
    rng,
    min_fraction=MIN_BIN_FRACTION,
):
    """Unfolded against truth of the injected "data" sample, per observable.

    Args:
        truth: observable -> truth values, ``(n_events,)`` (angles wrapped).
        draws: observable -> posterior draws, ``(n_events, n_draws)``.
        edges: observable -> bin edges ``(n_bins + 1,)``.
        is_injected: bool ``(n_events,)``, true for injected events.
        ibu: observable -> ``IBUResult`` of the same events' detector level on the
            same edges (flow bins included), or None.
        region_observables: observables whose signal region is reported.
        purity: signal-region threshold, in (0, 1].
        n_bootstrap: bootstrap replicas, >= 2.
        rng: ``numpy.random.Generator`` of the bootstrap.
        min_fraction: a bin is populated if its truth holds at least this fraction
            of the events.

    Returns:
        dict: observable -> ``chi2_ndf``, ``ndf``, ``p_value``, ``bias_median``,
        ``bias_max_abs``, per-bin ``truth``, ``truth_injected``, ``unfolded``,
        ``truth_err``, ``unfolded_err``, ``bias``; with ``ibu``: ``ibu`` (see
        ``cinnflow.closure.prior.ibu_comparison``); for the region observables:
        ``region_bins``, ``bias_region`` (median signed bias over them),
        ``bias_region_integrated`` (``sum U / sum T - 1`` over them),
        ``peak_bins`` (see ``PEAK_FRACTION``) and ``bias_peak_integrated`` (the same
        over them) and, with IBU, the same three under ``ibu``.

    Raises:
        ConfigError: a purity outside (0, 1] or shapes that do not match.
    """
    if not 0.0 < purity <= 1.0:
        msg = f"signal-region purity is {purity!r}; expected a number in (0, 1]"
        raise ConfigError(msg)
    is_injected = np.asarray(is_injected, dtype=bool)
    n_events = is_injected.size
    truth_bins, draw_bins, n_flow = _bin_events(
        truth, draws, edges, n_events, what="events"
    )
    replicas = bootstrap_replicas(
        truth_bins, draw_bins, n_flow, n_replicas=int(n_bootstrap), rng=rng
    )
    ones = np.ones(n_events)
    regular = slice(1, -1)
    result = {}
    for name in truth:
        t, u = _weighted_histograms(
            truth_bins[name], draw_bins[name], n_flow[name], ones
        )
        t_inj = np.bincount(truth_bins[name][is_injected], minlength=n_flow[name])
        entry, t_var, used, bias = closure_entry(
            t, u, replicas[name], min_fraction * n_events
        )
        entry["truth_injected"] = t_inj[regular].astype(float).tolist()
        if ibu is not None and name in ibu:
            entry["ibu"] = ibu_comparison(ibu[name], t, t_var, used)
        if name in region_observables:
            # The resonance bins hold few events each (10 % of the sample spread
            # over a few bins), so any filled bin may belong to the region.
            region = _region(t_inj[regular], t[regular], t[regular] > 0, purity)
            if region.size == 0:
                logger.warning(
                    "%s: no populated bin where injected events are >= %.2f of the "
                    "truth; no signal region",
                    name,
                    purity,
                )
            entry["region_bins"] = region.tolist()
            peak = _peak(t_inj[regular].astype(float), PEAK_FRACTION)
            entry["peak_bins"] = peak.tolist()
            entry["bias_peak_integrated"] = _integrated(u[regular], t[regular], peak)
            entry["bias_region_integrated"] = _integrated(
                u[regular], t[regular], region
            )
            region_bias = _bias(u[regular], t[regular], t[regular] > 0)
            entry["bias_region"] = _median(region_bias[region])
            if "ibu" in entry:
                ibu_regular = np.asarray(ibu[name].unfolded)[regular]
                ibu_bias = _bias(ibu_regular, t[regular], t[regular] > 0)
                entry["ibu"]["bias_region"] = _median(ibu_bias[region])
                entry["ibu"]["bias_region_integrated"] = _integrated(
                    ibu_regular, t[regular], region
                )
                entry["ibu"]["bias_peak_integrated"] = _integrated(
                    ibu_regular, t[regular], peak
                )
        result[name] = entry
    return result


def run_injection(
    posterior_path,
    *,
    metrics_path,
    plots_dir,
    train_path=None,
    derived=None,
    region_observables=DEFAULT_REGION_OBSERVABLES,
    purity=DEFAULT_PURITY,
    plots=DEFAULT_REGION_OBSERVABLES,
    n_bins=DEFAULT_BINS,
    n_bootstrap=100,
    ibu_iterations=DEFAULT_ITERATIONS,
    seed=0,
    label="injected",
):
    """Injection metrics and plots of the posterior of an injected "data" sample.

    Writes (atomically) ``metrics_path``: JSON ``{"n_events", "n_injected",
    "fraction", "n_draws", "n_bootstrap", "purity", "chi2_ndf": {obs: v},
    "bias_median": ..., "bias_max_abs": ..., "ibu": {"n_iterations", "chi2_ndf",
    "bias_median", "bias_max_abs"}, "region": {obs: {"bins", "low_edge",
    "high_edge", "truth", "truth_injected", "bias_region",
    "bias_region_integrated", "peak_bins", "peak_low_edge", "peak_high_edge",
    "bias_peak_integrated", "ibu_bias_region", "ibu_bias_region_integrated",
    "ibu_bias_peak_integrated"}},
    "bins": {obs: {"edges", ...per-bin results}}}``, and
    ``plots_dir/injection_{obs}.png`` for each observable in ``plots``.
    Binning as in the closure stage, except that the range of the region
    observables reaches at least the 99.5 % quantile of the injected truth.

    Args:
        posterior_path: posterior ``.npz`` of the "data" sample, with the
            ``is_injected`` key (``run_mix`` then sampling).
        metrics_path: output JSON file.
        plots_dir: output directory of the plots.
        train_path: prepared training sample for the IBU response, or None.
        derived: derived-observable definitions, or None.
        region_observables: observables whose signal region is reported.
        purity: signal-region threshold.
        plots: observables to plot.
        n_bins: bins per observable.
        n_bootstrap: bootstrap replicas.
        ibu_iterations: IBU iterations.
        seed: seed of the bootstrap.
        label: the injected process, for the plot legend.

    Returns:
        dict: the metrics written.

    Raises:
        ConfigError: unknown observables.
        InputFileError: a posterior file without ``is_injected``.
    """
    posterior = load_posterior(posterior_path)
    flags = load_arrays(posterior_path, required=("is_injected",))["is_injected"]
    if flags.shape != (posterior.n_events,):
        msg = (
            f"{posterior_path}: key 'is_injected' has shape {flags.shape}; expected "
            f"({posterior.n_events},)"
        )
        raise InputFileError(msg)
    truth, draws = posterior.observables(derived)
    kinds = posterior.kinds(derived)
    unknown = sorted({*region_observables, *plots} - set(truth))
    if unknown:
        msg = (
            f"injection observables {unknown!r} are not among the observables "
            f"{sorted(truth)!r}"
        )
        raise ConfigError(msg)
    detector = detector_observables(posterior, derived)
    train = _training_observables(train_path, derived, kinds)
    edges, ibu = {}, {}
    for name in truth:
        _wrap_angles(name, kinds[name], truth, draws, detector)
        edges[name] = automatic_edges(
            truth[name], kinds[name], name=name, n_bins=int(n_bins), peaks=PEAK_TARGETS
        )
        if name in region_observables:
            # The range must hold the resonance, which the 99.5 % quantile of the
            # whole sample can cut in half (10 % of it sits at the upper end).
            high = np.quantile(truth[name][flags], REGION_HIGH_QUANTILE)
            if high > edges[name][-1]:
                edges[name] = np.linspace(edges[name][0], high, int(n_bins) + 1)
        if train is not None and name in detector and name in train[1]:
            ibu[name] = ibu_unfold(
                train[0][name],
                train[1][name],
                detector[name],
                parton_edges=edges[name],
                detector_edges=edges[name],
                n_iterations=int(ibu_iterations),
            )
    n_inj = int(flags.sum())
    logger.info(
        "injection closure of %s: %d events, %d injected (%.4f), %d draws",
        posterior_path,
        posterior.n_events,
        n_inj,
        n_inj / posterior.n_events,
        posterior.n_draws,
    )
    result = injection_closure(
        truth,
        draws,
        edges,
        flags,
        ibu=ibu or None,
        region_observables=region_observables,
        purity=purity,
        n_bootstrap=n_bootstrap,
        rng=np.random.default_rng(seed),
    )
    scalar = ("chi2_ndf", "bias_median", "bias_max_abs")
    metrics = {
        "n_events": posterior.n_events,
        "n_injected": n_inj,
        "fraction": n_inj / posterior.n_events,
        "n_draws": posterior.n_draws,
        "n_bootstrap": int(n_bootstrap),
        "purity": float(purity),
        **{key: {name: result[name][key] for name in truth} for key in scalar},
        "ibu": {
            "n_iterations": int(ibu_iterations) if ibu else None,
            **{
                key: {name: result[name]["ibu"][key] for name in truth if name in ibu}
                for key in scalar
            },
        },
        "region": {},
        "bins": {
            name: {
                "edges": edges[name].tolist(),
                **{
                    key: result[name][key]
                    for key in (
                        "truth",
                        "truth_injected",
                        "unfolded",
                        "truth_err",
                        "unfolded_err",
                        "bias",
                    )
                },
                **(
                    {
                        "ibu": result[name]["ibu"]["unfolded"],
                        "ibu_err": result[name]["ibu"]["unfolded_err"],
                    }
                    if name in ibu
                    else {}
                ),
            }
            for name in truth
        },
    }
    for name in region_observables:
        entry, bins = result[name], result[name]["region_bins"]
        e = edges[name]
        metrics["region"][name] = {
            "bins": bins,
            "low_edge": float(e[bins[0]]) if bins else None,
            "high_edge": float(e[bins[-1] + 1]) if bins else None,
            "truth": float(np.sum(np.asarray(entry["truth"])[bins])),
            "truth_injected": float(np.sum(np.asarray(entry["truth_injected"])[bins])),
            "unfolded": float(np.sum(np.asarray(entry["unfolded"])[bins])),
            "bias_region": entry["bias_region"],
            "bias_region_integrated": entry["bias_region_integrated"],
            "peak_bins": entry["peak_bins"],
            "peak_low_edge": float(e[entry["peak_bins"][0]])
            if entry["peak_bins"]
            else None,
            "peak_high_edge": float(e[entry["peak_bins"][-1] + 1])
            if entry["peak_bins"]
            else None,
            "bias_peak_integrated": entry["bias_peak_integrated"],
        }
        if "ibu" in entry:
            metrics["region"][name].update(
                ibu=float(np.sum(np.asarray(entry["ibu"]["unfolded"])[bins])),
                ibu_bias_region=entry["ibu"]["bias_region"],
                ibu_bias_region_integrated=entry["ibu"]["bias_region_integrated"],
                ibu_bias_peak_integrated=entry["ibu"]["bias_peak_integrated"],
            )
        logger.info(
            "%s signal region %s: cINN bias %+.4f (integrated %+.4f), IBU %s; peak "
            "bins %s: cINN %+.4f, IBU %s",
            name,
            bins,
            entry["bias_region"],
            entry["bias_region_integrated"],
            metrics["region"][name].get("ibu_bias_region_integrated"),
            entry["peak_bins"],
            entry["bias_peak_integrated"],
            metrics["region"][name].get("ibu_bias_peak_integrated"),
        )
    for name in truth:
        logger.info(
            "%-10s chi2/ndf %.3f, median bias %+.4f; IBU chi2/ndf %s",
            name,
            result[name]["chi2_ndf"],
            result[name]["bias_median"],
            result[name].get("ibu", {}).get("chi2_ndf"),
        )
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    title = f"data: {100 * n_inj / posterior.n_events:.0f} % {label} injected"
    for name in plots:
        entry = result[name]
        reference = {
            "truth": np.asarray(entry["truth"]) - np.asarray(entry["truth_injected"])
        }
        fig = plot_prior(
            edges[name],
            entry,
            reference,
            xlabel=observable_label(name, derived),
            title=title,
            ibu=entry.get("ibu", {}).get("unfolded"),
            reference_label=f"truth without {label}",
            ylabel="events / bin",
            sample_label="cINN",
            log_y=True,
            ratio_limits=INJECTION_RATIO_LIMITS,
        )
        save_figure(fig, plots_dir / f"injection_{name}.png")
    _write_json(_nested_clean(metrics), metrics_path)
    logger.info("injection closure done; wrote %s, %s", metrics_path, plots_dir)
    return metrics
