"""Preprocessing of parton and detector columns, written as exact bijectors.

The parton-level transformations are part of the flow's bijector chain so that
``log_prob`` is a density in physics units (GeV, radians) and sampling returns
physics units directly. Per column ``kind``:

- ``pt`` and ``mass``: ``y = log(x)`` (columns must be strictly positive).
- ``phi``: ``y = atanh(phi / pi)``. It maps the open interval (-pi, pi) onto the real
  line, so every draw lands inside the physical range and no probability mass is
  wasted outside it. The periodicity of phi is not modelled: a posterior that
  straddles the +-pi seam is split over both ends of the line. With the model
  option ``phi_reference`` the parton phi is measured relative to the phi of its
  detector object, ``phi = wrap(ref + pi * tanh(y))``, which moves the seam
  opposite that object: a posterior then reaches it only if the parton is nearly
  back-to-back with its detector object (about 0.5 % of the quarks in the ZW
  sample, against 4 % with |phi| > 3 without a reference, and no leptons).
  Inputs are clipped to ``|phi / pi| <= 1 - PHI_EDGE`` so that a float32 value of
  exactly -pi stays finite.
- ``eta`` and ``other``: identity.
- a ``mass`` column with a resonance line (``lines``, mass M and width G in GeV):
  ``y = probit(F(m))``, F the cumulative distribution of a Breit-Wigner (Cauchy)
  of (M, G) truncated to m > 0. Masses drawn from that line become unit normal,
  so a line of 2 GeV at 80 GeV is an ordinary Gaussian coordinate to the flow
  instead of a spike with heavy tails in log m (an affine-coupling flow with a
  Gaussian latent draws light tails; the map gives it the Cauchy tails exactly).

Condition (detector) features are not part of the density, so they use plain
functions: ``pt`` -> log(pt), ``mass`` -> log(mass + MASS_OFFSET_GEV), ``phi`` ->
(cos phi, sin phi, atanh(phi / pi)), the last one so that a linear regression of
parton phi on detector phi is possible; ``eta`` and ``other`` pass through.
"""

import logging
import math
import statistics

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from cinnflow.errors import ConfigError

tfb = tfp.bijectors

__all__ = [
    "KINDS",
    "ColumnTransform",
    "PairMass",
    "StandardScaling",
    "check_kinds",
    "condition_features",
    "n_condition_features",
    "pair_separation",
    "scatter_columns",
    "wrap_phi",
]

logger = logging.getLogger(__name__)

KINDS = ("pt", "eta", "phi", "mass", "other")

# Keeps atanh(phi / pi) finite for phi = -pi (float32 pi rounds above the true pi).
PHI_EDGE = 1e-6

# Detector masses can be zero (leptons, one-constituent jets); the offset keeps the
# log finite. 1 GeV is far below the typical jet mass and far above round-off.
MASS_OFFSET_GEV = 1.0

# Floor for standard deviations of constant columns (e.g. a fixed lepton mass).
STD_FLOOR = 1e-6


def check_kinds(kinds, *, what):
    """Validate a sequence of column kinds.

    Args:
        kinds: sequence of strings, one per column.
        what: name of the argument, for the error message.

    Returns:
        tuple of str: the kinds as plain Python strings.

    Raises:
        ConfigError: if a kind is not one of ``KINDS`` or the sequence is empty.
    """
    kinds = tuple(str(k) for k in kinds)
    if not kinds:
        msg = f"{what} is empty; expected one kind per column out of {KINDS}"
        raise ConfigError(msg)
    bad = sorted({k for k in kinds if k not in KINDS})
    if bad:
        msg = f"{what} contains unknown kinds {bad!r}; allowed kinds are {KINDS}"
        raise ConfigError(msg)
    return kinds


def n_condition_features(detector_kinds):
    """Number of condition features made from detector columns of these kinds."""
    return sum(3 if k == "phi" else 1 for k in detector_kinds)


def condition_features(c_detector, detector_kinds):
    """Map detector columns to unstandardised condition features.

    Args:
        c_detector: float tensor (n_events, n_detector) in GeV and radians.
        detector_kinds: kinds of the detector columns.

    Returns:
        float tensor (n_events, n_condition_features(detector_kinds)).
    """
    c_detector = tf.convert_to_tensor(c_detector)
    tiny = tf.constant(np.finfo(np.float32).tiny, c_detector.dtype)
    columns = []
    for i, kind in enumerate(detector_kinds):
        col = c_detector[:, i : i + 1]
        if kind == "pt":
            columns.append(tf.math.log(tf.maximum(col, tiny)))
        elif kind == "mass":
            columns.append(tf.math.log(tf.maximum(col, 0.0) + MASS_OFFSET_GEV))
        elif kind == "phi":
            columns += [tf.cos(col), tf.sin(col), _atanh_phi(col)]
        else:
            columns.append(col)
    return tf.concat(columns, axis=-1)


def scatter_columns(x, slots, values):
    """``x`` (..., d) with the columns ``slots`` replaced by ``values`` (one each).

    The values are cast to the dtype of ``x``; the width may be unknown while a
    ``tf.function`` traces (a dynamic range).
    """
    columns = tf.range(tf.shape(x)[-1])
    out = x
    for slot, value in zip(slots, values, strict=True):
        out = tf.where(tf.equal(columns, slot), tf.cast(value, x.dtype)[..., None], out)
    return out


def wrap_phi(phi):
    """Map angles onto [-pi, pi)."""
    return phi - (2.0 * math.pi) * tf.floor((phi + math.pi) / (2.0 * math.pi))


def _atanh_phi(phi):
    edge = 1.0 - PHI_EDGE
    return tf.atanh(tf.clip_by_value(phi / math.pi, -edge, edge))


def _line_constants(mass, width):
    """atan of the m = 0 edge, the normalisation and the probit of the peak."""
    half = 0.5 * width
    edge = math.atan(-mass / half)
    norm = 0.5 * math.pi - edge
    return half, edge, norm


def line_to_mass(u, mass, width):
    """Mass (GeV) of probit coordinate ``u`` on a Breit-Wigner line (float64)."""
    half, edge, norm = _line_constants(mass, width)
    peak = statistics.NormalDist().inv_cdf(-edge / norm)
    # Below the peak through F, above it through 1 - F (no cancellation near 1).
    low = tf.minimum(u, peak)
    high = tf.maximum(u, peak)
    t_low = tf.tan(edge + norm * _ndtr(low))
    t_high = 1.0 / tf.tan(norm * _ndtr(-high))
    t = tf.where(u <= peak, t_low, t_high)
    return tf.maximum(mass + half * t, 0.0)


def mass_to_line(m, mass, width):
    """Probit coordinate of mass ``m`` (GeV) on a Breit-Wigner line (float64)."""
    half, edge, norm = _line_constants(mass, width)
    t = (m - mass) / half
    below = (tf.atan(tf.minimum(t, 0.0)) - edge) / norm
    above = tf.atan(1.0 / tf.maximum(t, 1e-300)) / norm
    return tf.where(t <= 0.0, _ndtri(below), -_ndtri(above))


def line_log_det(u, m, mass, width):
    """log |dm / du| of ``line_to_mass`` at matching (u, m) (float64)."""
    half, _, norm = _line_constants(mass, width)
    t = (m - mass) / half
    log_phi = -0.5 * tf.square(u) - 0.5 * math.log(2.0 * math.pi)
    return math.log(half * norm) + tf.math.log1p(tf.square(t)) + log_phi


def _ndtr(x):
    """Standard normal cumulative distribution (accurate in the lower tail)."""
    return 0.5 * tf.math.erfc(-tf.convert_to_tensor(x, tf.float64) / math.sqrt(2.0))


def _ndtri(p):
    """Inverse of ``_ndtr``."""
    return tf.math.ndtri(tf.convert_to_tensor(p, tf.float64))


class ColumnTransform(tfb.Bijector):
    """Per-column map from preprocessed space (forward input) to physics units.

    ``forward``: pt and mass columns ``exp(y)``, phi columns ``pi * tanh(y)``, others
    identity. ``inverse`` is the preprocessing: ``log`` and ``atanh(phi / pi)``.
    """

    def __init__(self, kinds, *, phi_reference=False, lines=None, name="columns_00"):
        """Build the bijector.

        Args:
            kinds: kind of each column, see ``KINDS``.
            phi_reference: if True, phi columns are measured relative to reference
                angles passed as ``conditional_input`` (n, n_phi_columns), one per
                phi column in order: ``phi = wrap(ref + pi * tanh(y))``. The seam of
                the map then sits opposite the reference (e.g. the matched detector
                object) instead of at +-pi, where posteriors rarely reach.
            lines: optional dict column index -> (mass, width) in GeV of a
                ``mass`` column that is mapped through its Breit-Wigner line
                (``line_to_mass``) instead of the log.
            name: bijector name.

        Raises:
            ConfigError: for a line on a column that is not a mass, or a mass or
                width that is not positive.
        """
        parameters = dict(locals())
        self._kinds = check_kinds(kinds, what="kinds")
        self._phi_reference = bool(phi_reference)
        self._lines = {
            int(i): (float(m), float(w)) for i, (m, w) in (lines or {}).items()
        }
        for i, (m, w) in self._lines.items():
            if not (0 <= i < len(self._kinds) and self._kinds[i] == "mass"):
                msg = f"line {(m, w)} on column {i}: expected a mass column"
                raise ConfigError(msg)
            if not (m > 0 and w > 0):
                msg = f"line (mass {m}, width {w}) GeV: expected both > 0"
                raise ConfigError(msg)
        self._log_mask = np.array(
            [
                k in ("pt", "mass") and i not in self._lines
                for i, k in enumerate(self._kinds)
            ]
        )
        self._phi_mask = np.array([k == "phi" for k in self._kinds])
        super().__init__(
            forward_min_event_ndims=1,
            validate_args=False,
            parameters=parameters,
            name=name,
        )

    @property
    def kinds(self):
        """Column kinds."""
        return self._kinds

    @property
    def phi_reference(self):
        """Whether phi columns are relative to a reference angle (a condition)."""
        return self._phi_reference

    def _reference(self, like, conditional_input):
        """Reference angle for every column (zero for non-phi columns)."""
        if not self._phi_reference:
            return tf.zeros_like(like)
        if conditional_input is None:
            msg = (
                f"bijector {self.name!r} was built with phi_reference=True and needs "
                "the reference angles as conditional_input"
            )
            raise ValueError(msg)
        ref = tf.convert_to_tensor(conditional_input, like.dtype)
        phi_index = np.flatnonzero(self._phi_mask)
        # Scatter the (n, n_phi) reference onto the phi columns of (n, d).
        onto = np.zeros((len(phi_index), len(self._kinds)), np.float32)
        onto[np.arange(len(phi_index)), phi_index] = 1.0
        return tf.linalg.matmul(ref, tf.constant(onto, like.dtype)) + tf.zeros_like(
            like
        )

    def _forward(self, x, conditional_input=None):
        log_mask = tf.constant(self._log_mask)
        phi_mask = tf.constant(self._phi_mask)
        exp_x = tf.exp(tf.where(log_mask, x, tf.zeros_like(x)))
        y = tf.where(log_mask, exp_x, x)
        phi = math.pi * tf.tanh(x)
        if self._phi_reference:
            phi = wrap_phi(phi + self._reference(x, conditional_input))
        y = tf.where(phi_mask, phi, y)
        return self._scatter_lines(y, x, line_to_mass)

    def _inverse(self, y, conditional_input=None):
        log_mask = tf.constant(self._log_mask)
        phi_mask = tf.constant(self._phi_mask)
        safe = tf.where(log_mask, y, tf.ones_like(y))
        x = tf.where(log_mask, tf.math.log(safe), y)
        safe_phi = tf.where(phi_mask, y, tf.zeros_like(y))
        if self._phi_reference:
            safe_phi = tf.where(
                phi_mask,
                wrap_phi(safe_phi - self._reference(y, conditional_input)),
                safe_phi,
            )
        x = tf.where(phi_mask, _atanh_phi(safe_phi), x)
        return self._scatter_lines(x, y, mass_to_line)

    def _forward_log_det_jacobian(self, x, conditional_input=None):
        del conditional_input  # Shifting and wrapping phi has unit Jacobian.
        log_mask = tf.constant(self._log_mask)
        phi_mask = tf.constant(self._phi_mask)
        zero = tf.zeros_like(x)
        # log(pi * (1 - tanh(x)^2)) written without cancellation for large |x|.
        abs_x = tf.abs(x)
        log_dphi = math.log(math.pi) + 2.0 * (
            math.log(2.0) - abs_x - tf.math.softplus(-2.0 * abs_x)
        )
        terms = tf.where(log_mask, x, zero) + tf.where(phi_mask, log_dphi, zero)
        return tf.reduce_sum(terms, axis=-1) + self._line_log_det(x, forward=True)

    def _inverse_log_det_jacobian(self, y, conditional_input=None):
        log_mask = tf.constant(self._log_mask)
        phi_mask = tf.constant(self._phi_mask)
        if self._phi_reference:
            y = tf.where(
                phi_mask, wrap_phi(y - self._reference(y, conditional_input)), y
            )
        one = tf.ones_like(y)
        log_terms = -tf.math.log(tf.where(log_mask, y, one))
        edge = 1.0 - PHI_EDGE
        u = tf.clip_by_value(tf.where(phi_mask, y, 0.0 * one) / math.pi, -edge, edge)
        phi_terms = -math.log(math.pi) - tf.math.log1p(-tf.square(u))
        zero = tf.zeros_like(y)
        terms = tf.where(log_mask, log_terms, zero) + tf.where(
            phi_mask, phi_terms, zero
        )
        return tf.reduce_sum(terms, axis=-1) - self._line_log_det(y, forward=False)

    @property
    def lines(self):
        """Column index -> (mass, width) in GeV of the line-mapped mass columns."""
        return dict(self._lines)

    def _scatter_lines(self, out, source, fn):
        """Replace the line columns of ``out`` by ``fn`` of those of ``source``."""
        return scatter_columns(
            out,
            list(self._lines),
            [
                fn(tf.cast(source[..., i], tf.float64), mass, width)
                for i, (mass, width) in self._lines.items()
            ],
        )

    def _line_log_det(self, values, *, forward):
        """Sum of log |dm / du| over the line columns; ``values`` u or m."""
        total = tf.zeros_like(values[..., 0])
        for i, (mass, width) in self._lines.items():
            v = tf.cast(values[..., i], tf.float64)
            if forward:
                u, m = v, line_to_mass(v, mass, width)
            else:
                u, m = mass_to_line(v, mass, width), v
            total += tf.cast(line_log_det(u, m, mass, width), total.dtype)
        return total


class StandardScaling(tfb.Bijector):
    """Fixed affine map ``forward(u) = u * scale + loc`` with adapted statistics.

    ``loc`` and ``scale`` are non-trainable variables so that they are saved with
    the model weights and can be fitted after construction.
    """

    def __init__(self, loc, scale, *, name):
        """Build the bijector.

        Args:
            loc: non-trainable variable (d,), the column means.
            scale: non-trainable variable (d,), the column standard deviations.
            name: bijector name.
        """
        parameters = dict(locals())
        self._loc = loc
        self._scale = scale
        super().__init__(
            forward_min_event_ndims=1,
            is_constant_jacobian=True,
            validate_args=False,
            parameters=parameters,
            name=name,
        )

    def _forward(self, x):
        return x * self._scale + self._loc

    def _inverse(self, y):
        return (y - self._loc) / self._scale

    def _forward_log_det_jacobian(self, x):
        return tf.reduce_sum(tf.math.log(self._scale)) + tf.zeros_like(x[..., 0])

    def _inverse_log_det_jacobian(self, y):
        return -tf.reduce_sum(tf.math.log(self._scale)) + tf.zeros_like(y[..., 0])


def pair_separation(eta1, phi1, eta2, phi2):
    """``cosh(deta) - cos(dphi)``, written as sums of squares (no cancellation)."""
    return 2.0 * tf.square(tf.sinh(0.5 * (eta1 - eta2))) + 2.0 * tf.square(
        tf.sin(0.5 * (phi1 - phi2))
    )


class PairMass(tfb.Bijector):
    """Swap the pT of the second object of massless pairs for the pair's mass.

    For two massless objects ``m^2 = 2 pt1 pt2 (cosh(eta1 - eta2) - cos(phi1 -
    phi2))``, so given the other five coordinates the map ``pt2 <-> m`` is one to
    one. ``forward`` takes columns in which the ``pt2`` slot of each pair holds the
    mass (GeV) and returns physics columns with ``pt2 = m^2 / (2 pt1 A)``, ``A =
    cosh(deta) - cos(dphi)``; ``inverse`` is ``m = sqrt(2 pt1 pt2 A)``. With ``pt1``
    and the angles fixed, ``d pt2 / d m = 2 pt2 / m``, the whole Jacobian.

    The flow then models the mass of a resonance decay (the W in m_qq, the Z in
    m_ll) as one coordinate, so its narrow line is a narrow peak of one column
    instead of a thin curved ridge in six.

    ``ordered`` (one flag per pair) is for pT-ordered pairs (pt1 > pt2, as q1 and
    q2 of the prepared data): the ``pt1`` slot of such a pair then holds
    ``rho = log(pt1 / pt2 - 1)``, so every real rho gives an ordered pair:
    ``r = 1 + exp(rho)``, ``pt2 = m / sqrt(2 A r)``, ``pt1 = r pt2``, and
    ``log |det| = log m - log(2 A) - softplus(-rho)``.
    """

    def __init__(self, pairs, *, ordered=False, name="pair_mass_00"):
        """Build the bijector.

        Args:
            pairs: sequence of six column indices ``(pt1, eta1, phi1, pt2, eta2,
                phi2)`` per pair; the ``pt2`` slots hold the masses on the forward
                input. Pairs must not share a ``pt2`` slot, and no ``pt2`` slot may
                be a coordinate of another pair.
            name: bijector name.

        Raises:
            ConfigError: for overlapping pairs or repeated columns.
        """
        parameters = dict(locals())
        self._pairs = tuple(tuple(int(i) for i in p) for p in pairs)
        if isinstance(ordered, bool):
            ordered = [ordered] * len(self._pairs)
        self._ordered = tuple(bool(o) for o in ordered)
        if len(self._ordered) != len(self._pairs):
            msg = f"ordered {ordered!r}: expected one flag per pair {self._pairs!r}"
            raise ConfigError(msg)
        slots = [p[3] for p in self._pairs]
        used = [i for p in self._pairs for j, i in enumerate(p) if j != 3]
        if any(len(set(p)) != 6 for p in self._pairs) or len(set(slots)) != len(slots):
            msg = f"pair columns {self._pairs!r}: each pair needs six distinct columns"
            raise ConfigError(msg)
        if set(slots) & set(used):
            msg = (
                f"pair columns {self._pairs!r}: a mass slot (4th index) is a "
                "coordinate of another pair"
            )
            raise ConfigError(msg)
        super().__init__(
            forward_min_event_ndims=1,
            validate_args=False,
            parameters=parameters,
            name=name,
        )

    @property
    def pairs(self):
        """Column indices ``(pt1, eta1, phi1, pt2, eta2, phi2)`` of each pair."""
        return self._pairs

    @property
    def ordered(self):
        """Per pair: whether its pt1 slot holds rho = log(pt1 / pt2 - 1)."""
        return self._ordered

    @property
    def lead_slots(self):
        """Column indices of pt1 (rho on the forward input for ordered pairs)."""
        return tuple(p[0] for p in self._pairs)

    @property
    def mass_slots(self):
        """Column indices that hold a mass on the forward input (pt2 in physics)."""
        return tuple(p[3] for p in self._pairs)

    def _pair_terms(self, x, pair):
        first, eta1, phi1, second, eta2, phi2 = (x[..., i] for i in pair)
        return first, pair_separation(eta1, phi1, eta2, phi2), second

    def _forward(self, x):
        slots, values = [], []
        for pair, ordered in zip(self._pairs, self._ordered, strict=True):
            first, sep, m = self._pair_terms(x, pair)
            if ordered:
                ratio = 1.0 + tf.exp(first)
                pt2 = m / tf.sqrt(2.0 * sep * ratio)
                slots += [pair[0], pair[3]]
                values += [ratio * pt2, pt2]
            else:
                slots.append(pair[3])
                values.append(tf.square(m) / (2.0 * first * sep))
        return scatter_columns(x, slots, values)

    def _inverse(self, y):
        slots, values = [], []
        for pair, ordered in zip(self._pairs, self._ordered, strict=True):
            pt1, sep, pt2 = self._pair_terms(y, pair)
            mass = tf.sqrt(2.0 * pt1 * pt2 * sep)
            if ordered:
                slots += [pair[0], pair[3]]
                values += [tf.math.log(pt1 - pt2) - tf.math.log(pt2), mass]
            else:
                slots.append(pair[3])
                values.append(mass)
        return scatter_columns(y, slots, values)

    def _forward_log_det_jacobian(self, x):
        terms = []
        for pair, ordered in zip(self._pairs, self._ordered, strict=True):
            first, sep, m = self._pair_terms(x, pair)
            if ordered:
                # log m - log(2 A) - softplus(-rho)
                terms.append(
                    tf.math.log(m) - tf.math.log(2.0 * sep) - tf.math.softplus(-first)
                )
            else:
                # log(2 pt2 / m) = log m - log(pt1 A), summed over the pairs.
                terms.append(tf.math.log(m) - tf.math.log(first * sep))
        return tf.add_n(terms)

    def _inverse_log_det_jacobian(self, y):
        terms = []
        for pair, ordered in zip(self._pairs, self._ordered, strict=True):
            pt1, sep, pt2 = self._pair_terms(y, pair)
            if ordered:
                # -(log m - log(2 A) - softplus(-rho)), m = sqrt(2 pt1 pt2 A) and
                # softplus(-rho) = log(pt1 / (pt1 - pt2)).
                terms.append(
                    -0.5 * tf.math.log(2.0 * pt1 * pt2 * sep)
                    + tf.math.log(2.0 * sep)
                    + tf.math.log(pt1)
                    - tf.math.log(pt1 - pt2)
                )
            else:
                # log(m / (2 pt2)) with m = sqrt(2 pt1 pt2 A).
                terms.append(0.5 * tf.math.log(pt1 * sep / (2.0 * pt2)))
        return tf.add_n(terms)
