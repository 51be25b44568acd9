"""Prior dependence of the unfolding: closure on a reweighted "data" sample.

The cINN posterior is per event, so a "data" sample whose parton-level spectrum
differs from the training one is the test sample with event weights
``w_i = f(x_i)``, ``x_i`` the truth of the reweighting observable (the W pT by
default) and ``f(x) = (1 + x / scale)**k`` normalised to mean one. Per bin ``b``:

- weighted truth ``T_b = sum_i w_i * [truth_i in b]``;
- weighted unfolded ``U_b = sum_i w_i * (fraction of event i's draws in b)``.

Weighting by the truth is the same as drawing the events (truth and detector level
together) from the reweighted spectrum. A posterior drawn from the conditional of
the *reweighted* prior closes (``U = T`` on average); the cINN's posterior is the
conditional of the *training* prior, so ``U / T - 1`` measures how much that prior
pulls the answer, from zero (a perfect detector) to ``p_train(b) / p_rw(b) - 1``
(a posterior that ignores the detector level and returns the training prior).
Statistical uncertainties come from the Poisson bootstrap over events and draws
with the event weights (``bootstrap_replicas(event_weights=...)``).
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
    bin_index,
    bootstrap_replicas,
    closure_chi2,
    wrap_phi,
)
from cinnflow.closure.run import (
    _training_observables,
    _write_json,
    detector_observables,
)
from cinnflow.errors import ConfigError
from cinnflow.physics.observables import observable_label
from cinnflow.physics.posterior import load_posterior
from cinnflow.plotting.prior import plot_prior
from cinnflow.plotting.style import save_figure

__all__ = [
    "DEFAULT_EXPONENT",
    "DEFAULT_SCALE",
    "DEFAULT_TAIL_QUANTILE",
    "ibu_comparison",
    "prior_closure",
    "prior_weights",
    "run_prior",
]

logger = logging.getLogger(__name__)

#: Exponent k of the reweighting factor (1 + x / scale)**k.
DEFAULT_EXPONENT = 1.0
#: Scale (GeV) of the reweighting factor.
DEFAULT_SCALE = 100.0
#: Tail bins of the reweighting observable: regular bins whose lower edge lies at or
#: above this quantile of its (unweighted) truth.
DEFAULT_TAIL_QUANTILE = 0.8
#: Observables with a ratio plot by default.
DEFAULT_PLOTS = ("pt_W", "q1_pt")


def prior_weights(values, *, exponent=DEFAULT_EXPONENT, scale=DEFAULT_SCALE):
    """Event weights ``(1 + values / scale)**exponent`` normalised to mean one.

    Args:
        values: the reweighting observable per event (e.g. the truth W pT, GeV),
            shape ``(n_events,)``; every value must exceed ``-scale``.
        exponent: the exponent ``k`` (0 gives unit weights).
        scale: the scale (GeV), > 0.

    Returns:
        np.ndarray: the weights, float64, mean one.

    Raises:
        ConfigError: a non-positive scale, non-finite exponent, no events, or values
            for which the factor is not positive and finite.
    """
    values = np.asarray(values, dtype=np.float64)
    if not (np.isfinite(scale) and scale > 0):
        msg = f"reweighting scale must be a positive number, got {scale!r}"
        raise ConfigError(msg)
    if not np.isfinite(exponent):
        msg = f"reweighting exponent must be finite, got {exponent!r}"
        raise ConfigError(msg)
    if values.ndim != 1 or values.size == 0:
        msg = f"reweighting values must have shape (n_events,), got {values.shape}"
        raise ConfigError(msg)
    base = 1.0 + values / scale
    factor = base**exponent
    bad = ~(np.isfinite(factor) & (base > 0))
    if np.any(bad):
        msg = (
            f"reweighting factor (1 + x / {scale})**{exponent} is not positive and "
            f"finite for {int(bad.sum())} events (e.g. x = {values[bad][0]!r}); "
            f"expected x > {-scale}"
        )
        raise ConfigError(msg)
    return factor / factor.mean()


def _wrap_angles(name, kind, truth, draws, detector):
    """Map an angle observable onto [-pi, pi) in truth, draws and detector level."""
    if kind not in ("phi", "dphi"):
        return
    truth[name], draws[name] = wrap_phi(truth[name]), wrap_phi(draws[name])
    if name in detector:
        detector[name] = wrap_phi(detector[name])


def _bin_events(truth, draws, edges, n_events, *, what):
    """Bin indices of truth and draws per observable, and the bin counts.

    Raises:
        ConfigError: draws that are not (n_events, n_draws); ``what`` names the
            per-event array they are checked against.
    """
    truth_bins = {name: bin_index(truth[name], edges[name]) for name in truth}
    draw_bins = {name: bin_index(draws[name], edges[name]) for name in truth}
    for name, bins in draw_bins.items():
        if bins.ndim != 2 or bins.shape[0] != n_events:  # noqa: PLR2004
            msg = (
                f"{name!r}: draws of shape {bins.shape} do not match {n_events} "
                f"{what}; expected ({n_events}, n_draws)"
            )
            raise ConfigError(msg)
    n_flow = {name: np.asarray(edges[name]).size + 1 for name in truth}
    return truth_bins, draw_bins, n_flow


def closure_entry(truth, unfolded, replicas, min_count):
    """Closure of one (weighted) histogram pair against its bootstrap replicas.

    Args:
        truth, unfolded: histograms with under- and overflow, shape ``(n_bins + 2,)``.
        replicas: ``(truth_replicas, unfolded_replicas)``, each ``(n_rep, n_bins + 2)``.
        min_count: a regular bin is used when its truth holds at least this much.

    Returns:
        tuple ``(entry, truth_variance, used, bias)``: the JSON entry (chi2/ndf,
        ndf, p-value, median and max bias, per-bin values of the regular bins), the
        bootstrap variance of the truth (all bins), the used regular bins and their
        signed bias (NaN where unused).
    """
    truth_rep, unfolded_rep = replicas
    t_var = np.var(truth_rep, axis=0, ddof=1)
    u_var = np.var(unfolded_rep, axis=0, ddof=1)
    chi2_ndf, ndf, p_value = closure_chi2(unfolded, truth, t_var + u_var)
    regular = slice(1, -1)
    used = truth[regular] >= max(min_count, np.finfo(float).tiny)
    bias = _bias(unfolded[regular], truth[regular], used)
    entry = {
        "chi2_ndf": chi2_ndf,
        "ndf": ndf,
        "p_value": p_value,
        "bias_median": _median(bias),
        "bias_max_abs": float(np.nanmax(np.abs(bias))) if np.any(used) else math.nan,
        "bias": [None if not np.isfinite(b) else float(b) for b in bias],
        "truth": truth[regular].tolist(),
        "unfolded": unfolded[regular].tolist(),
        "truth_err": np.sqrt(t_var[regular]).tolist(),
        "unfolded_err": np.sqrt(u_var[regular]).tolist(),
    }
    return entry, t_var, used, bias


def _weighted_histograms(truth_bins, draw_bins, n_flow, weights):
    """Weighted truth and unfolded contents, flow bins included."""
    n_events, n_draws = draw_bins.shape
    truth = np.bincount(truth_bins, weights=weights, minlength=n_flow)
    per_draw = np.repeat(weights / n_draws, n_draws)
    unfolded = np.bincount(draw_bins.ravel(), weights=per_draw, minlength=n_flow)
    return truth, unfolded


def _bias(unfolded, truth, used):
    """Signed ``unfolded / truth - 1`` of the bins in ``used`` (NaN elsewhere)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(used, unfolded / truth - 1.0, np.nan)


def _tail_integrated(unfolded, truth, above):
    """``sum U / sum T - 1`` over the bins ``above`` (NaN without truth)."""
    total = truth[above].sum()
    return float(unfolded[above].sum() / total - 1.0) if total > 0 else float("nan")


def _median(values):
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def ibu_comparison(result, truth, truth_variance, used):
    """IBU's unfolded histogram of one observable against the truth.

    Args:
        result: ``IBUResult`` (flow bins included) on the truth's edges.
        truth: truth contents, flow bins included.
        truth_variance: their (bootstrap) variances.
        used: bool per regular bin: populated bins, where the bias is taken.

    Returns:
        dict: ``chi2_ndf``, ``ndf``, ``p_value`` (IBU and truth variances added),
        ``bias`` per regular bin (None where unpopulated), ``bias_median``,
        ``bias_median_abs``, ``bias_max_abs``, ``unfolded`` and ``unfolded_err``
        per regular bin.
    """
    unfolded = np.asarray(result.unfolded, dtype=np.float64)
    variance = np.asarray(result.variance, dtype=np.float64)
    chi2_ndf, ndf, p_value = closure_chi2(unfolded, truth, truth_variance + variance)
    bias = _bias(unfolded[1:-1], truth[1:-1], used)
    return {
        "chi2_ndf": chi2_ndf,
        "ndf": ndf,
        "p_value": p_value,
        "bias": [None if not np.isfinite(b) else float(b) for b in bias],
        "bias_median": _median(bias),
        "bias_median_abs": _median(np.abs(bias)),
        "bias_max_abs": float(np.nanmax(np.abs(bias)))
        if np.any(used)
        else float("nan"),
        "unfolded": unfolded[1:-1].tolist(),
        "unfolded_err": np.sqrt(variance[1:-1]).tolist(),
    }


def prior_closure(
    truth,
    draws,
    edges,
    weights,
    *,
    reweight_observable,
    tail_quantile=DEFAULT_TAIL_QUANTILE,
    n_bootstrap,
    rng,
    min_fraction=MIN_BIN_FRACTION,
    ibu=None,
):
    """Closure of the weighted and the unweighted test sample, per observable.

    Args:
        truth: observable -> truth values, shape ``(n_events,)`` (angles already
            wrapped).
        draws: observable -> posterior draws, shape ``(n_events, n_draws)``.
        edges: observable -> bin edges ``(n_bins + 1,)``.
        weights: event weights, shape ``(n_events,)`` (e.g. ``prior_weights``).
        reweight_observable: the observable whose tail bins get ``bias_tail``.
        tail_quantile: tail bins start at this quantile of its unweighted truth.
        n_bootstrap: bootstrap replicas, >= 2.
        rng: ``numpy.random.Generator`` of the bootstrap.
        min_fraction: a bin is populated if its (weighted) truth holds at least
            this fraction of the (weighted) events.
        ibu: ``{"weighted": {obs: IBUResult}, "unweighted": {obs: IBUResult}}``,
            IBU of the same (weighted) events' detector level on the same edges,
            or None.

    Returns:
        dict: ``{"weighted": {obs: result}, "unweighted": {obs: result}}``, each
        result a dict with ``chi2_ndf``, ``ndf``, ``p_value`` (bootstrap variances
        of truth and unfolded added), ``bias_median`` (median signed
        ``unfolded / truth - 1`` over populated bins), ``bias_median_abs``,
        ``bias_max_abs``, ``bias`` (per regular bin, None where unpopulated),
        ``truth``, ``unfolded``, ``truth_err``, ``unfolded_err`` (regular bins), and
        for ``reweight_observable`` ``bias_tail`` (median signed bias of the
        populated tail bins), ``bias_tail_integrated`` (``sum U / sum T - 1`` over
        all regular bins above the tail edge) and ``tail_bins`` (indices of the
        populated tail bins among the regular bins); with ``ibu``, ``ibu`` (see
        :func:`ibu_comparison`, plus ``bias_tail`` and ``bias_tail_integrated``
        for ``reweight_observable``). ``"tail_low_edge"``: the lower edge of the
        tail.

    Raises:
        ConfigError: unknown reweighting observable, shapes that do not match or
            a tail quantile outside (0, 1).
    """
    if reweight_observable not in truth:
        msg = (
            f"reweighting observable {reweight_observable!r} is not among the "
            f"observables {sorted(truth)!r}"
        )
        raise ConfigError(msg)
    if not 0.0 < tail_quantile < 1.0:
        msg = f"tail_quantile must lie in (0, 1), got {tail_quantile!r}"
        raise ConfigError(msg)
    weights = np.asarray(weights, dtype=np.float64)
    n_events = weights.size
    truth_bins, draw_bins, n_flow = _bin_events(
        truth, draws, edges, n_events, what="event weights"
    )
    tail_low = float(np.quantile(truth[reweight_observable], tail_quantile))

    result = {"weighted": {}, "unweighted": {}, "tail_low_edge": tail_low}
    for label, w in (("weighted", weights), ("unweighted", np.ones(n_events))):
        replicas = bootstrap_replicas(
            truth_bins,
            draw_bins,
            n_flow,
            n_replicas=int(n_bootstrap),
            rng=rng,
            event_weights=w,
        )
        total = float(w.sum())
        for name in truth:
            t, u = _weighted_histograms(
                truth_bins[name], draw_bins[name], n_flow[name], w
            )
            entry, t_var, used, bias = closure_entry(
                t, u, replicas[name], min_fraction * total
            )
            entry["bias_median_abs"] = _median(np.abs(bias))
            regular = slice(1, -1)
            ibu_result = (ibu or {}).get(label, {}).get(name)
            if ibu_result is not None:
                entry["ibu"] = ibu_comparison(ibu_result, t, t_var, used)
            if name == reweight_observable:
                low_edges = np.asarray(edges[name])[:-1]
                tail = np.flatnonzero((low_edges >= tail_low) & used)
                entry["tail_bins"] = tail.tolist()
                entry["bias_tail"] = _median(bias[tail])
                # All regular bins above the tail edge together (populated or not).
                above = slice(1 + int(np.searchsorted(low_edges, tail_low)), -1)
                entry["bias_tail_integrated"] = _tail_integrated(u, t, above)
                if ibu_result is not None:
                    ibu_u = np.asarray(ibu_result.unfolded, dtype=np.float64)
                    ibu_bias = _bias(ibu_u[regular], t[regular], used)
                    entry["ibu"]["bias_tail"] = _median(ibu_bias[tail])
                    entry["ibu"]["bias_tail_integrated"] = _tail_integrated(
                        ibu_u, t, above
                    )
            result[label][name] = entry
    return result


def run_prior(
    posterior_path,
    *,
    metrics_path,
    plots_dir,
    derived=None,
    reweight_observable="pt_W",
    exponent=DEFAULT_EXPONENT,
    scale=DEFAULT_SCALE,
    tail_quantile=DEFAULT_TAIL_QUANTILE,
    plots=DEFAULT_PLOTS,
    n_bins=DEFAULT_BINS,
    n_bootstrap=100,
    seed=0,
    train_path=None,
    ibu_iterations=DEFAULT_ITERATIONS,
):
    """Prior-dependence metrics and ratio plots of a posterior file.

    Reweights the test events by ``prior_weights`` of the truth of
    ``reweight_observable`` and compares the weighted unfolded with the weighted
    truth for every observable (binning as in the closure stage,
    ``automatic_edges`` of the unweighted truth), beside the unweighted closure.

    Writes (atomically):

    - ``metrics_path``: JSON ``{"reweighting": {"observable": ..., "factor":
      "(1 + x / scale)**k", "exponent": k, "scale_gev": s, "weight_min": ...,
      "weight_max": ..., "effective_events": (sum w)**2 / sum w**2},
      "chi2_ndf": {obs: v}, "bias_median": {obs: v}, "bias_median_abs": ...,
      "bias_max_abs": ..., "bias_tail": v, "bias_tail_integrated": v,
      "bias_shift_median": {obs: weighted - unweighted median bias},
      "bias_tail_shift": v, "bias_tail_integrated_shift": v, "unweighted":
      {"chi2_ndf": ..., "bias_median": ..., "bias_median_abs": ...,
      "bias_max_abs": ..., "bias_tail": v, "bias_tail_integrated": v},
      "tail_low_edge": x, "bins": {obs: {"edges": [...], "weighted": {...},
      "unweighted": {...}}}, "n_events": n, "n_draws": k, "n_bootstrap": b}``,
      and with ``train_path`` ``"ibu": {"n_iterations": k, "chi2_ndf": ...,
      "bias_median": ..., "bias_median_abs": ..., "bias_max_abs": ...,
      "bias_tail": v, "bias_tail_integrated": v, "unweighted": {...}}``: IBU
      of the weighted detector-level histogram (response and starting prior
      from the training sample) against the same weighted truth;
    - ``plots_dir/prior_{obs}.png`` for each observable in ``plots``.

    Args:
        posterior_path: posterior ``.npz`` of the test events.
        metrics_path: output JSON file.
        plots_dir: output directory of the plots.
        derived: derived-observable definitions, or None.
        reweight_observable: observable whose truth sets the weights.
        exponent: exponent ``k`` of the factor.
        scale: scale (GeV) of the factor.
        tail_quantile: see ``prior_closure``.
        plots: observables to plot.
        n_bins: bins per observable.
        n_bootstrap: bootstrap replicas.
        seed: seed of the bootstrap.
        train_path: prepared training sample for the IBU baseline, or None.
        ibu_iterations: IBU iterations.

    Returns:
        dict: the metrics written.

    Raises:
        ConfigError: unknown observables or invalid reweighting settings.
        InputFileError: unreadable posterior file.
    """
    posterior = load_posterior(posterior_path)
    truth, draws = posterior.observables(derived)
    kinds = posterior.kinds(derived)
    unknown = sorted({reweight_observable, *plots} - set(truth))
    if unknown:
        msg = (
            f"prior-dependence observables {unknown!r} are not among the "
            f"observables {sorted(truth)!r}"
        )
        raise ConfigError(msg)
    weights = prior_weights(truth[reweight_observable], exponent=exponent, scale=scale)
    detector = detector_observables(posterior, derived)
    train = _training_observables(train_path, derived, kinds)
    edges = {}
    ibu = {"weighted": {}, "unweighted": {}}
    for name in truth:
        _wrap_angles(name, kinds[name], truth, draws, detector)
        edges[name] = automatic_edges(
            truth[name], kinds[name], name=name, n_bins=int(n_bins), peaks=PEAK_TARGETS
        )
        if train is None or name not in detector or name not in train[1]:
            continue
        for label, w in (("weighted", weights), ("unweighted", None)):
            ibu[label][name] = ibu_unfold(
                train[0][name],
                train[1][name],
                detector[name],
                parton_edges=edges[name],
                detector_edges=edges[name],
                n_iterations=int(ibu_iterations),
                test_weights=w,
            )
    logger.info(
        "prior dependence of %s: %d events, weights (1 + %s / %g)**%g in [%.3f, %.3f]",
        posterior_path,
        posterior.n_events,
        reweight_observable,
        scale,
        exponent,
        weights.min(),
        weights.max(),
    )
    result = prior_closure(
        truth,
        draws,
        edges,
        weights,
        reweight_observable=reweight_observable,
        tail_quantile=tail_quantile,
        n_bootstrap=n_bootstrap,
        rng=np.random.default_rng(seed),
        ibu=ibu,
    )
    weighted, unweighted = result["weighted"], result["unweighted"]
    scalar = ("chi2_ndf", "bias_median", "bias_median_abs", "bias_max_abs")
    tail_keys = ("bias_tail", "bias_tail_integrated")
    metrics = {
        "reweighting": {
            "observable": reweight_observable,
            "factor": "(1 + x / scale)**k, normalised to mean 1",
            "exponent": float(exponent),
            "scale_gev": float(scale),
            "weight_min": float(weights.min()),
            "weight_max": float(weights.max()),
            "effective_events": float(weights.sum() ** 2 / np.sum(weights**2)),
        },
        **{key: {name: weighted[name][key] for name in truth} for key in scalar},
        **{key: weighted[reweight_observable][key] for key in tail_keys},
        # The change from the unweighted closure: the part due to the new spectrum.
        "bias_shift_median": {
            name: weighted[name]["bias_median"] - unweighted[name]["bias_median"]
            for name in truth
        },
        **{
            f"{key}_shift": weighted[reweight_observable][key]
            - unweighted[reweight_observable][key]
            for key in tail_keys
        },
        "unweighted": {
            **{key: {name: unweighted[name][key] for name in truth} for key in scalar},
            **{key: unweighted[reweight_observable][key] for key in tail_keys},
        },
        "tail_low_edge": result["tail_low_edge"],
        "bins": {
            name: {
                "edges": edges[name].tolist(),
                "weighted": {
                    k: weighted[name][k]
                    for k in ("truth", "unfolded", "truth_err", "unfolded_err", "bias")
                },
                "unweighted": {
                    k: unweighted[name][k]
                    for k in ("truth", "unfolded", "truth_err", "unfolded_err", "bias")
                },
            }
            for name in truth
        },
        "n_events": posterior.n_events,
        "n_draws": posterior.n_draws,
        "n_bootstrap": int(n_bootstrap),
    }
    with_ibu = [name for name in truth if "ibu" in weighted[name]]
    if with_ibu:
        ibu_scalar = (*scalar, "bias_tail", "bias_tail_integrated")

        def ibu_metrics(part):
            values = {
                key: {name: part[name]["ibu"][key] for name in with_ibu}
                for key in scalar
            }
            if reweight_observable in with_ibu:
                for key in ibu_scalar[len(scalar) :]:
                    values[key] = part[reweight_observable]["ibu"][key]
            return values

        metrics["ibu"] = {
            "method": "iterative Bayesian unfolding (pyunfold) of the weighted "
            "detector-level histogram, response and starting prior from training",
            "n_iterations": int(ibu_iterations),
            **ibu_metrics(weighted),
            "unweighted": ibu_metrics(unweighted),
        }
        for name in with_ibu:
            for label, part in (("weighted", weighted), ("unweighted", unweighted)):
                metrics["bins"][name][label]["ibu"] = part[name]["ibu"]["unfolded"]
                metrics["bins"][name][label]["ibu_bias"] = part[name]["ibu"]["bias"]
        if reweight_observable in with_ibu:
            logger.info(
                "%s tail: IBU median bias %+.4f reweighted, %+.4f unweighted; "
                "integrated %+.4f reweighted, %+.4f unweighted",
                reweight_observable,
                metrics["ibu"]["bias_tail"],
                metrics["ibu"]["unweighted"]["bias_tail"],
                metrics["ibu"]["bias_tail_integrated"],
                metrics["ibu"]["unweighted"]["bias_tail_integrated"],
            )
    for name in truth:
        logger.info(
            "%-10s reweighted chi2/ndf %.3f, median bias %+.4f (unweighted chi2/ndf "
            "%.3f, median bias %+.4f)",
            name,
            weighted[name]["chi2_ndf"],
            weighted[name]["bias_median"],
            unweighted[name]["chi2_ndf"],
            unweighted[name]["bias_median"],
        )
    logger.info(
        "%s tail (>= %.1f): median bias %+.4f reweighted, %+.4f unweighted; "
        "integrated %+.4f reweighted, %+.4f unweighted",
        reweight_observable,
        result["tail_low_edge"],
        metrics["bias_tail"],
        metrics["unweighted"]["bias_tail"],
        metrics["bias_tail_integrated"],
        metrics["unweighted"]["bias_tail_integrated"],
    )
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    symbol = observable_label(reweight_observable, derived, with_unit=False)
    title = f"reweighted: (1 + {symbol} / {scale:g} GeV)$^{{{exponent:g}}}$"
    for name in plots:
        fig = plot_prior(
            edges[name],
            weighted[name],
            unweighted[name],
            xlabel=observable_label(name, derived),
            title=title,
            ibu=weighted[name].get("ibu", {}).get("unfolded"),
        )
        save_figure(fig, plots_dir / f"prior_{name}.png")
    _write_json(_nested_clean(metrics), metrics_path)
    logger.info("prior dependence done; wrote %s, %s", metrics_path, plots_dir)
    return metrics


def _nested_clean(node):
    """NaN and infinities (also inside lists) as None, for JSON."""
    if isinstance(node, dict):
        return {key: _nested_clean(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_nested_clean(value) for value in node]
    if isinstance(node, float) and not np.isfinite(node):
        return None
    return node
