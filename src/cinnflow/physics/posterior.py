"""Read a posterior file (``results/posterior/*.npz``) and expose its observables."""

import dataclasses
import logging
from pathlib import Path

import numpy as np

from cinnflow.errors import InputFileError
from cinnflow.io.npz import load_npz
from cinnflow.physics.observables import all_observables, observable_kinds

__all__ = ["Posterior", "load_posterior"]

logger = logging.getLogger(__name__)

_REQUIRED_KEYS = ("x_parton", "draws", "parton_names")


@dataclasses.dataclass(frozen=True)
class Posterior:
    """Posterior draws of the parton-level observables for the test events.

    Attributes:
        path: file the posterior was read from.
        x_parton: parton-level truth, shape ``(n_events, d)``.
        draws: posterior draws, shape ``(n_events, n_draws, d)``.
        parton_names: the ``d`` column names.
        parton_kinds: the ``d`` column kinds.
        c_detector: detector-level condition ``(n_events, n_detector)`` or None.
        detector_names: detector column names or None.
    """

    path: Path
    x_parton: np.ndarray
    draws: np.ndarray
    parton_names: tuple
    parton_kinds: tuple
    c_detector: np.ndarray | None = None
    detector_names: tuple | None = None

    @property
    def n_events(self):
        """int: number of test events."""
        return self.draws.shape[0]

    @property
    def n_draws(self):
        """int: number of posterior draws per event."""
        return self.draws.shape[1]

    def observables(self, definitions=None):
        """Return the truth and the draws of all observables.

        Args:
            definitions: derived-observable definitions, or None.

        Returns:
            tuple[dict, dict]: ``truth`` (name -> ``(n_events,)``) and ``draws``
            (name -> ``(n_events, n_draws)``), columns first, then derived ones.
        """
        truth = all_observables(self.x_parton, self.parton_names, definitions)
        draws = all_observables(self.draws, self.parton_names, definitions)
        return truth, draws

    def kinds(self, definitions=None):
        """dict[str, str]: observable name -> kind (see ``observable_kinds``)."""
        return observable_kinds(self.parton_names, self.parton_kinds, definitions)


def load_posterior(path):
    """Read and check a posterior ``.npz`` file (no pickle).

    Events whose truth or draws hold NaN or infinities are dropped with a warning.

    Args:
        path: the file written by ``cinnflow.sampling``.

    Returns:
        Posterior: the checked arrays.

    Raises:
        InputFileError: missing file or key, inconsistent shapes, or no finite
            event.
    """
    path = Path(path)
    data = load_npz(path, required=_REQUIRED_KEYS, what="posterior file")
    x_parton, draws = data["x_parton"], data["draws"]
    names = tuple(str(n) for n in data["parton_names"])
    kinds = tuple(str(k) for k in data.get("parton_kinds", ["other"] * len(names)))
    d = len(names)
    if x_parton.ndim != 2 or x_parton.shape[1] != d:
        msg = (
            f"posterior file {str(path)!r}: 'x_parton' has shape {x_parton.shape}, "
            f"expected (n_events, {d}) to match 'parton_names'"
        )
        raise InputFileError(msg)
    n_events = x_parton.shape[0]
    if draws.ndim != 3 or draws.shape[0] != n_events or draws.shape[2] != d:
        msg = (
            f"posterior file {str(path)!r}: 'draws' has shape {draws.shape}, "
            f"expected ({n_events}, n_draws, {d})"
        )
        raise InputFileError(msg)
    if draws.shape[1] < 1 or n_events < 1:
        msg = f"posterior file {str(path)!r} holds no events or no draws: {draws.shape}"
        raise InputFileError(msg)
    if len(kinds) != d:
        msg = (
            f"posterior file {str(path)!r}: {len(kinds)} 'parton_kinds' for "
            f"{d} 'parton_names'"
        )
        raise InputFileError(msg)
    c_detector = data.get("c_detector")
    # The sampler keeps events whose draws diverged (and warns); drop them here so
    # one bad event does not void the evaluation, and say how many went.
    finite = np.isfinite(x_parton).all(axis=1) & np.isfinite(draws).all(axis=(1, 2))
    n_bad = int(n_events - np.count_nonzero(finite))
    if n_bad == n_events:
        msg = f"posterior file {str(path)!r}: every event has NaN or infinite values"
        raise InputFileError(msg)
    if n_bad:
        logger.warning(
            "posterior file %s: dropping %d of %d events with NaN or infinite truth "
            "or draws",
            path,
            n_bad,
            n_events,
        )
        x_parton, draws = x_parton[finite], draws[finite]
        if c_detector is not None and c_detector.shape[:1] == (n_events,):
            c_detector = c_detector[finite]
        n_events -= n_bad

    detector_names = data.get("detector_names")
    if detector_names is not None:
        detector_names = tuple(str(n) for n in detector_names)
        if c_detector is None or c_detector.shape != (n_events, len(detector_names)):
            logger.warning(
                "posterior file %s: c_detector shape %s does not match %d detector "
                "names; ignoring the detector level",
                path,
                None if c_detector is None else c_detector.shape,
                len(detector_names),
            )
            c_detector, detector_names = None, None
    logger.info(
        "read posterior %s: %d events x %d draws x %d observables",
        path,
        n_events,
        draws.shape[1],
        d,
    )
    return Posterior(
        path=path,
        x_parton=x_parton,
        draws=draws,
        parton_names=names,
        parton_kinds=kinds,
        c_detector=c_detector,
        detector_names=detector_names,
    )
