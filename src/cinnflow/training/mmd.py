"""Maximum mean discrepancy (MMD) of invariant masses, an optional training term.

A likelihood fit alone gives narrow resonances (the W in m_qq, the Z in m_ll)
somewhat too broad a line shape; arXiv:2006.06685 adds an MMD between the
invariant-mass distributions of events drawn from the flow and of the training
events. Here the flow draws one parton-level event per training event, for that
event's detector-level condition, and the squared MMD (a biased V-statistic) of
each mass is added to the loss::

    MMD^2 = mean k(m_gen, m_gen') + mean k(m_true, m_true') - 2 mean k(m_gen, m_true)
    k(a, b) = sum over widths w of exp(-(a - b)^2 / (2 w^2))

Objects are massless (parton level: pt, eta, phi), so
``m^2 = 2 pt_1 pt_2 (cosh(eta_1 - eta_2) - cos(phi_1 - phi_2))``.
"""

import logging

import numpy as np
import tensorflow as tf

from cinnflow.errors import ConfigError

__all__ = ["DEFAULT_MMD_WIDTHS_GEV", "MassMMD", "pair_mass"]

logger = logging.getLogger(__name__)

#: Kernel widths in GeV per invariant mass: the total widths of the W and the Z
#: (PDG), i.e. the scale of the line shapes the term is meant to sharpen.
DEFAULT_MMD_WIDTHS_GEV = {"m_qq": [2.085], "m_ll": [2.4952]}

# Objects of the masses (the names of DEFAULT_DEFINITIONS in physics.observables).
_MASS_OBJECTS = {"m_qq": ("q1", "q2"), "m_ll": ("l1", "l2")}


def pair_mass(x, index):
    """Invariant mass of two massless objects given by column indices.

    Args:
        x: float tensor (..., d) in GeV and radians.
        index: six column indices (pt1, eta1, phi1, pt2, eta2, phi2).

    Returns:
        float tensor (...,) in GeV.
    """
    pt1, eta1, phi1, pt2, eta2, phi2 = (x[..., i] for i in index)
    m2 = 2.0 * pt1 * pt2 * (tf.cosh(eta1 - eta2) - tf.cos(phi1 - phi2))
    # sqrt has an infinite derivative at 0; a 1e-6 GeV^2 floor keeps it finite.
    return tf.sqrt(tf.maximum(m2, 1e-6))


def _mmd2(a, b, widths):
    def kernel_mean(u, v):
        d2 = tf.square(u[:, None] - v[None, :])
        return tf.add_n([tf.reduce_mean(tf.exp(-d2 / (2.0 * w * w))) for w in widths])

    return kernel_mean(a, a) + kernel_mean(b, b) - 2.0 * kernel_mean(a, b)


class MassMMD:
    """The MMD term of the invariant masses named in ``widths_gev``.

    Args:
        parton_names: names of the parton columns, e.g. ``q1_pt``.
        widths_gev: mapping mass name (``m_qq``, ``m_ll``) to kernel widths in GeV.

    Raises:
        ConfigError: for an unknown mass, a width <= 0 or a missing column.
    """

    def __init__(self, parton_names, widths_gev):
        names = [str(n) for n in parton_names]
        self.index = {}
        self.widths = {}
        for mass, widths in dict(widths_gev).items():
            if mass not in _MASS_OBJECTS:
                msg = (
                    f"training.mmd_widths_gev has mass {mass!r}; known masses are "
                    f"{sorted(_MASS_OBJECTS)}"
                )
                raise ConfigError(msg)
            widths = [float(w) for w in widths]
            if not widths or min(widths) <= 0:
                msg = f"training.mmd_widths_gev.{mass} = {widths!r}; need widths > 0"
                raise ConfigError(msg)
            objects = _MASS_OBJECTS[mass]
            columns = [f"{o}_{c}" for o in objects for c in ("pt", "eta", "phi")]
            missing = [c for c in columns if c not in names]
            if missing:
                msg = (
                    f"MMD on {mass} needs parton columns {missing!r}; the parton "
                    f"columns are {names!r}"
                )
                raise ConfigError(msg)
            self.index[mass] = [names.index(c) for c in columns]
            self.widths[mass] = widths
        if not self.index:
            msg = "training.mmd is on but training.mmd_widths_gev names no mass"
            raise ConfigError(msg)
        logger.info("MMD term on %s", self.widths)

    def __call__(self, x_generated, x_parton):
        """Sum over the masses of the squared MMD between generated and true events.

        Args:
            x_generated: float tensor (n, d) drawn from the flow.
            x_parton: float tensor (n, d) of training events.

        Returns:
            scalar float tensor.
        """
        terms = []
        for mass, index in self.index.items():
            widths = np.asarray(self.widths[mass], np.float32)
            terms.append(
                _mmd2(
                    pair_mass(x_generated, index),
                    pair_mass(x_parton, index),
                    [tf.constant(w) for w in widths],
                )
            )
        return tf.add_n(terms)
