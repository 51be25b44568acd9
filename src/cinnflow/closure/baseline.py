"""Classical baseline: iterative Bayesian unfolding (D'Agostini) of one observable.

The response matrix and the starting prior come from the training sample
(parton-level value and its detector-level counterpart of the same events, the
cINN's training data), the measured histogram from the test events' detector
level; the result is compared with the test events' parton-level truth like the
cINN's unfolded histogram. The unfolding itself is ``pyunfold.iterative_unfold``.

Every selected event has both levels, so the efficiency is one in every parton
bin; flow bins are kept as ordinary bins on both axes, so no event is lost.

References:
    G. D'Agostini, "A multidimensional unfolding method based on Bayes' theorem",
    Nucl. Instrum. Meth. A 362 (1995) 487.
    J. Bourbeau, Z. Hampel-Arias, "PyUnfold: a Python package for iterative
    unfolding", JOSS 3 (2018) 741, https://doi.org/10.21105/joss.00741
"""

import dataclasses
import logging

import numpy as np
import pyunfold

from cinnflow.closure.metrics import bin_index
from cinnflow.errors import ConfigError

__all__ = ["DEFAULT_ITERATIONS", "IBUResult", "ibu_unfold"]

logger = logging.getLogger(__name__)

#: Fixed number of D'Agostini iterations: the common choice for resolutions of the
#: order of the bin width; more iterations lower the bias and raise the variance.
DEFAULT_ITERATIONS = 4


@dataclasses.dataclass(frozen=True)
class IBUResult:
    """Unfolded histogram of one observable, flow bins included.

    Attributes:
        unfolded: unfolded contents, shape ``(n_bins + 2,)``.
        variance: variance per bin (data statistics plus response statistics).
        n_iterations: iterations run.
    """

    unfolded: np.ndarray
    variance: np.ndarray
    n_iterations: int


def ibu_unfold(
    train_parton,
    train_detector,
    test_detector,
    *,
    parton_edges,
    detector_edges,
    n_iterations=DEFAULT_ITERATIONS,
    test_weights=None,
):
    """Unfold the test events' detector-level histogram with IBU.

    Args:
        train_parton: parton-level values of the training events, ``(n_train,)``.
        train_detector: their detector-level counterparts, same shape.
        test_detector: detector-level values of the test events, ``(n_test,)``.
        parton_edges: parton-level (cause) bin edges.
        detector_edges: detector-level (effect) bin edges.
        n_iterations: number of iterations (no early stop).
        test_weights: weight of each test event, ``(n_test,)``, or None for one;
            a reweighted "data" sample (prior dependence). The measured histogram
            is the sum of the weights per bin, its error ``sqrt(sum w**2)``.

    Returns:
        IBUResult: the unfolded histogram on the parton edges, flow bins
        included, normalised to the number (sum of weights) of test events.

    Raises:
        ConfigError: shapes that do not match, negative or non-finite weights, or
            ``n_iterations`` below 1.
    """
    train_parton = np.asarray(train_parton, dtype=np.float64)
    train_detector = np.asarray(train_detector, dtype=np.float64)
    test_detector = np.asarray(test_detector, dtype=np.float64)
    if train_parton.shape != train_detector.shape or train_parton.ndim != 1:
        msg = (
            f"training parton values of shape {train_parton.shape} and detector "
            f"values of shape {train_detector.shape}; expected two equal (n,) arrays"
        )
        raise ConfigError(msg)
    if int(n_iterations) != n_iterations or n_iterations < 1:
        msg = f"n_iterations must be a positive integer, got {n_iterations!r}"
        raise ConfigError(msg)
    n_cause = len(parton_edges) + 1
    n_effect = len(detector_edges) + 1
    cause = bin_index(train_parton, parton_edges)
    effect = bin_index(train_detector, detector_edges)
    counts = (
        np.bincount(effect * n_cause + cause, minlength=n_effect * n_cause)
        .reshape(n_effect, n_cause)
        .astype(np.float64)
    )
    n_per_cause = counts.sum(axis=0)
    # Causes the training sample never fills: no information; keep them out of the
    # unfolding (an empty response column would divide by zero).
    filled = n_per_cause > 0
    response = counts[:, filled] / n_per_cause[filled]
    # Binomial error of the migration probabilities from the training statistics.
    response_err = np.sqrt(response * (1.0 - response) / n_per_cause[filled])
    if test_weights is None:
        test_weights = np.ones_like(test_detector)
    test_weights = np.asarray(test_weights, dtype=np.float64)
    if test_weights.shape != test_detector.shape:
        msg = (
            f"test weights of shape {test_weights.shape} for test values of shape "
            f"{test_detector.shape}; expected the same shape"
        )
        raise ConfigError(msg)
    if not np.all(np.isfinite(test_weights) & (test_weights >= 0)):
        msg = (
            f"test weights must be finite and >= 0, got values in "
            f"[{np.min(test_weights)!r}, {np.max(test_weights)!r}]"
        )
        raise ConfigError(msg)
    test_bins = bin_index(test_detector, detector_edges)
    data = np.bincount(test_bins, weights=test_weights, minlength=n_effect)
    data_err = np.sqrt(
        np.bincount(test_bins, weights=test_weights**2, minlength=n_effect)
    )
    efficiencies = np.ones(int(np.count_nonzero(filled)))
    # The training sample's parton-level spectrum as the starting prior, the usual
    # choice and the cINN's own prior; a flat prior over the bins (pyunfold's
    # default) puts events into bins below the detector-level thresholds that a few
    # iterations do not empty again.
    prior = n_per_cause[filled] / n_per_cause[filled].sum()
    result = pyunfold.iterative_unfold(
        prior=prior,
        data=data,
        data_err=data_err,
        response=response,
        response_err=response_err,
        efficiencies=efficiencies,
        efficiencies_err=np.zeros_like(efficiencies),
        ts_stopping=-np.inf,  # run exactly max_iter iterations
        max_iter=int(n_iterations),
    )
    unfolded = np.zeros(n_cause)
    variance = np.zeros(n_cause)
    unfolded[filled] = result["unfolded"]
    variance[filled] = result["stat_err"] ** 2 + result["sys_err"] ** 2
    logger.debug(
        "IBU: %d training events, %d test events, %d iterations",
        train_parton.size,
        test_detector.size,
        result["num_iterations"],
    )
    return IBUResult(
        unfolded=unfolded,
        variance=variance,
        n_iterations=int(result["num_iterations"]),
    )
