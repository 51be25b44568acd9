"""Rest-frame coordinates of a two-body resonance decay, as an exact bijector.

A massless pair from a resonance decay (the W's quarks, the Z's leptons) is fixed by
six numbers. In the lab frame, (pt, eta, phi) of both objects, the resonance's
narrow line and the transverse-momentum balance of the event are thin curved
ridges: the flow must learn a 2 GeV constraint in coordinates that spread over a
TeV. ``PairFrame`` trades the lab coordinates of one pair for

- ``kx, ky``: the pair's transverse momentum plus that of the ``recoil`` objects
  (GeV). With the rest of the hard process as recoil (the Z's leptons for the W's
  quarks), this is the transverse momentum of the whole hard process: zero up to
  the primordial kT of the beams, whatever the detector saw.
- ``y``: the pair's rapidity.
- ``m``: the pair's invariant mass (GeV), a ``mass`` column of the flow, so that
  ``ColumnTransform`` can map it through its Breit-Wigner line.
- ``a, b``: the decay direction. The pair is labelled by the rest frame (reached
  from the lab by a pure boost, axes rotated so that the first axis is the pair's
  transverse direction): ``n = (n_par, n_perp, n_z)`` is the direction of the
  object that goes forwards (``n_par > 0``), and the hemisphere is mapped onto the
  plane by the equal-area map ``(a, b) = sqrt(-2 log n_par) (n_perp, n_z) /
  |(n_perp, n_z)|``: an isotropic decay gives a unit normal ``(a, b)``, the
  forward pole is the origin, and there is no edge and no seam (an azimuth would
  have one). ``forward`` returns the two objects ordered by pT (first column pair
  the leading one), the way the prepared data label them; reordering two objects
  is a permutation, so every draw is pT-ordered with no rejection. A pair
  labelled otherwise (the leptons by charge; ``ordered=False``) keeps its labels:
  the direction of object 1 on the whole sphere, ``a^2 + b^2 = -2 log((1 + n_par)
  / 2)``, again unit normal for an isotropic decay.

Column slots: the six indices ``(pt1, eta1, phi1, pt2, eta2, phi2)`` of the pair
hold ``(kx, y, ky, m, a, b)`` on the forward input. ``forward`` maps these to the
lab; the recoil columns are read in physics units and not changed, so the map is
triangular and its Jacobian is that of the pair alone. From the two-body phase
space of massless objects, ``d3p1/E1 d3p2/E2 = (m / 2) dm d2P_T dy dOmega*``, and
``dOmega* = n_par da db = exp(-(a^2 + b^2) / 2) da db``::

    log |det d(lab) / d(kx, y, ky, m, a, b)| = log(m / 2) - (a^2 + b^2) / 2
                                             - log pt1 - log pt2

Anchored frames (``anchor=True``) keep the lab direction of one object instead of
the rest-frame decay direction: slots ``(kx, eta_a, phi_a, m, w, ky)`` with ``w =
2 y - eta_a`` (y the pair's rapidity; w is the partner's eta for a pair at rest in
the transverse plane, so the second jet measures it about as directly as the
first jet measures eta_a). The pair's four-momentum P follows from ``(kx, ky, y,
m)`` and the recoil; the anchor ``a`` is
massless along the unit vector ``d_a`` of ``(eta_a, phi_a)`` and its partner
``P - p_a`` massless, which fixes ``E_a = m^2 / (2 (E - P.d_a))`` (positive and
below E for every direction). A jet measures its direction to about 0.03 rad, so
the anchor's angles stay direct coordinates of the flow (as in the lab), while the
mass line and the pT balance stay straight ones. A pT-ordered pair is labelled by
the detector (``conditional_input``: the (eta, phi) of the first matched detector
object; the anchor is the object closer to it in Delta R) and returned pT-ordered;
a pair labelled otherwise anchors its first object. From ``d3p1/E1 d3p2/E2 = (2
E_a^2 / m) dm d2P_T dy dOmega_a``, ``dOmega_a = sech^2(eta_a) deta_a dphi_a`` and
``dy = dw / 2``::

    log |det d(lab) / d(kx, eta_a, phi_a, m, w, ky)| = log pt_a - log m - log pt_b

Direction frames (``directions=True``) keep the lab directions of both objects:
slots ``(u, eta_a, phi_a, m, eta_b, phi_b)``, labelled like an anchored frame. With
``t_a, t_b`` the objects' transverse unit vectors, ``s = |sin((phi_a - phi_b) /
2)|`` and ``n = (t_a - t_b) / (2 s)``, the coordinate ``u = (P_T + recoil) . n =
s (pt_a - pt_b) + recoil . n`` is the hard process's transverse momentum along the
axis on which the two pTs pull apart; with ``pt_a pt_b = m^2 / (2 (cosh deta -
cos dphi))`` it fixes both pTs (one positive root). The jets' directions, the mass
line and the pT balance along n are then straight coordinates; the balance across
n is what the flow must learn (it ties the directions to the recoil)::

    log |det d(lab) / d(u, eta_a, phi_a, m, eta_b, phi_b)| =
        log pt_a + log pt_b - log(m / 2) - log s - log(pt_a + pt_b)

All arithmetic is in float64 (boosts of a 40 GeV rest-frame momentum to the TeV
scale lose digits in float32).
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp

from cinnflow.errors import ConfigError
from cinnflow.flows.preprocessing import pair_separation, scatter_columns, wrap_phi

tfb = tfp.bijectors

__all__ = [
    "PairFrame",
    "anchor_coordinates",
    "balance_gradient",
    "detector_frame_features",
    "detector_reference",
    "direction_coordinates",
    "frame_coordinates",
    "n_frame_features",
    "pair_balance",
    "reference_basis",
]

# Bounds of the recoil-solved detector pTs (GeV) among the condition features.
_SOLVED_PT_RANGE = (1.0, 5000.0)


def n_frame_features(recoil, anchor=False, directions=False):
    """Number of condition features of one frame (``detector_frame_features``)."""
    if not recoil:
        return 7
    return 17 if anchor or directions else 13


# Grid of the partner-rapidity scan (``partner_rapidity``): coarse points over
# +-_SCAN_HALF_WIDTH around the measured rapidity, then as many fine ones around
# the best coarse point.
_SCAN_POINTS = 48
_SCAN_HALF_WIDTH = 1.5


def partner_rapidity(eta_a, phi_a, eta_b, phi_b, rx, ry, m, y0):
    """Pair rapidity at which an anchored frame's partner points at (eta_b, phi_b).

    With the pair's transverse momentum ``-(rx, ry)`` (a balanced event), mass
    ``m`` and the anchor along ``(eta_a, phi_a)``, the partner's direction is a
    function of the pair rapidity alone; a jet measures it to about 0.03 rad,
    which pins the rapidity much better than the jets' pT ratio does. The
    function is not monotonic everywhere (boosted pairs), so the closest
    approach in Delta R is found by a scan: a coarse grid over ``y0 +- 1.5`` and
    a fine one around its best point.

    Returns:
        tuple ``(y, deta, dphi)`` of float64 tensors: the rapidity and the
        partner's remaining (eta, phi) offset from ``(eta_b, phi_b)`` there.
    """

    def offsets(y):
        zero = tf.zeros_like(y)
        _, partner = _anchor_objects(
            zero,
            eta_a[:, None] + zero,
            phi_a[:, None] + zero,
            m[:, None] + zero,
            2.0 * y - eta_a[:, None],
            zero,
            rx[:, None] + zero,
            ry[:, None] + zero,
            ordered=False,
        )[0]
        deta = partner[1] - eta_b[:, None]
        dphi = wrap_phi(partner[2] - phi_b[:, None])
        distance = tf.square(deta) + tf.square(dphi)
        distance = tf.where(tf.math.is_finite(distance), distance, 1e30)
        return deta, dphi, distance

    step = 2.0 * _SCAN_HALF_WIDTH / (_SCAN_POINTS - 1)
    grid = tf.constant([i * step - _SCAN_HALF_WIDTH for i in range(_SCAN_POINTS)])
    coarse = y0[:, None] + tf.cast(grid, y0.dtype)[None, :]
    best = tf.gather(coarse, tf.argmin(offsets(coarse)[2], axis=1), batch_dims=1)
    fine = best[:, None] + tf.cast(grid, y0.dtype)[None, :] * (
        step / (2.0 * _SCAN_HALF_WIDTH)
    )
    deta, dphi, distance = offsets(fine)
    index = tf.argmin(distance, axis=1)
    return tuple(tf.gather(v, index, batch_dims=1) for v in (fine, deta, dphi))


# Floor of n_par in the equal-area map: a decay exactly perpendicular to the pair's
# transverse direction (measure zero) gives a large but finite (a, b).
_EQUATOR_FLOOR = 1e-12


def _lab_vectors(pt, eta, phi):
    """(E, px, py, pz) of massless objects."""
    return (
        pt * tf.cosh(eta),
        pt * tf.cos(phi),
        pt * tf.sin(phi),
        pt * tf.sinh(eta),
    )


def _pair_mass(pt1, eta1, phi1, pt2, eta2, phi2):
    """Invariant mass of two massless objects, without cancellation."""
    return tf.sqrt(2.0 * pt1 * pt2 * pair_separation(eta1, phi1, eta2, phi2))


def _recoil(x, recoil):
    """Sum of the transverse momenta (px, py) of the recoil (pt, phi) columns."""
    rx = tf.zeros_like(x[..., 0])
    ry = tf.zeros_like(x[..., 0])
    for pt_col, phi_col in recoil:
        rx += x[..., pt_col] * tf.cos(x[..., phi_col])
        ry += x[..., pt_col] * tf.sin(x[..., phi_col])
    return rx, ry


def _rest_direction(pt1, eta1, phi1, pt2, eta2, phi2):
    """Pair kinematics and object 1's rest-frame direction in the frame axes.

    Returns:
        tuple ``(px, py, pz, m, rapidity, n)`` with ``n = (n_par, n_perp, n_z)``.
    """
    e1, x1, y1, z1 = _lab_vectors(pt1, eta1, phi1)
    e2, x2, y2, z2 = _lab_vectors(pt2, eta2, phi2)
    energy, px, py, pz = e1 + e2, x1 + x2, y1 + y2, z1 + z2
    m = _pair_mass(pt1, eta1, phi1, pt2, eta2, phi2)
    pt_pair = tf.sqrt(tf.square(px) + tf.square(py))
    rapidity = tf.asinh(pz / tf.sqrt(tf.square(m) + tf.square(pt_pair)))
    # Pure boost of object 1 into the pair's rest frame.
    dot = px * x1 + py * y1 + pz * z1
    shift = dot / (m * (energy + m)) - e1 / m
    sx, sy, sz = x1 + shift * px, y1 + shift * py, z1 + shift * pz
    norm = tf.sqrt(tf.square(sx) + tf.square(sy) + tf.square(sz))
    nx, ny, nz = sx / norm, sy / norm, sz / norm
    phi_pair = tf.atan2(py, px)
    cos_w, sin_w = tf.cos(phi_pair), tf.sin(phi_pair)
    n = (nx * cos_w + ny * sin_w, -nx * sin_w + ny * cos_w, nz)
    return px, py, pz, m, rapidity, n


def reference_basis(reference):
    """Orthonormal basis ``(e1, e2, e3)`` with ``e1`` along ``reference`` (n, 3).

    ``e2`` is the frame's beam axis made orthogonal to ``e1`` (undefined only for a
    reference exactly along the beam). None gives the frame axes themselves.
    """
    if reference is None:
        return None
    ref = tf.cast(reference, tf.float64)
    norm = tf.maximum(tf.norm(ref, axis=-1), 1e-300)
    p, q, r = (ref[..., i] / norm for i in range(3))
    d = tf.sqrt(tf.maximum(1.0 - tf.square(r), 1e-12))
    e2 = (-r * p / d, -r * q / d, d)
    e3 = (q * e2[2] - r * e2[1], r * e2[0] - p * e2[2], p * e2[1] - q * e2[0])
    return (p, q, r), e2, e3


def _dot(u, v):
    return u[0] * v[0] + u[1] * v[1] + u[2] * v[2]


def frame_coordinates(
    pt1, eta1, phi1, pt2, eta2, phi2, rx=0.0, ry=0.0, reference=None, ordered=True
):
    """Rest-frame coordinates of massless pairs (the inverse of ``PairFrame``).

    Args:
        pt1, eta1, phi1, pt2, eta2, phi2: float64 tensors of the two objects.
        rx, ry: transverse momentum of the recoil objects (GeV).
        reference: None, or (n, 3) directions in the frame axes that take the
            place of the pair's transverse direction as the pole of the direction
            map (``PairFrame(reference=True)``).
        ordered: True for a pair of like objects labelled by pT (the direction
            of the forward one, on a hemisphere); False for a pair labelled
            otherwise (by charge): object 1's direction on the whole sphere.

    Returns:
        tuple ``(kx, y, ky, m, a, b, n_par)`` of float64 tensors; ``n_par`` is the
        cosine between the forward object's rest-frame direction and the pole.
    """
    px, py, _, m, rapidity, n = _rest_direction(pt1, eta1, phi1, pt2, eta2, phi2)
    basis = reference_basis(reference)
    if basis is not None:
        n = tuple(_dot(n, e) for e in basis)
    if ordered:
        # The object that goes forwards along the pole (object 2 goes along -n).
        sign = tf.where(n[0] < 0.0, -tf.ones_like(n[0]), tf.ones_like(n[0]))
        n = tuple(sign * v for v in n)
        a, b = _equal_area(*n)
    else:
        a, b = _sphere_area(*n)
    return (px + rx, rapidity, py + ry, m, a, b, n[0])


def _equal_area(n_par, n_perp, nz):
    """(a, b) of a forward unit vector; -2 log n_par = -log1p(-t), t = |n_T|^2."""
    t = tf.minimum(tf.square(n_perp) + tf.square(nz), 1.0 - _EQUATOR_FLOOR)
    safe = tf.maximum(t, 1e-300)
    # sqrt(-log1p(-t) / t) -> 1 + t / 4 for small t (no 0 / 0 at the pole).
    ratio = tf.where(t < 1e-8, 1.0 + 0.25 * t, tf.sqrt(-tf.math.log1p(-safe) / safe))
    return ratio * n_perp, ratio * nz


def _sphere_area(u, v, w):
    """(a, b) of a unit vector on the whole sphere, pole (1, 0, 0) at the origin.

    ``a^2 + b^2 = -2 log((1 + u) / 2)``: isotropic directions give a unit normal
    (a, b); only the antipode (u = -1) is not reached.
    """
    t = tf.square(v) + tf.square(w)
    one_plus = tf.maximum(1.0 + u, _EQUATOR_FLOOR)
    # (1 - u) / 2 = t / (2 (1 + u)), without cancellation near the pole.
    half_gap = tf.minimum(t / (2.0 * one_plus), 1.0 - _EQUATOR_FLOOR)
    safe = tf.maximum(t, 1e-300)
    ratio = tf.where(
        t < 1e-12,
        tf.sqrt(1.0 / one_plus),
        tf.sqrt(-2.0 * tf.math.log1p(-half_gap) / safe),
    )
    return ratio * v, ratio * w


def _from_sphere_area(s, a, b):
    """Inverse of ``_sphere_area``: (u, v, w) from (a, b), s = a^2 + b^2."""
    e = tf.exp(-0.5 * s)
    safe = tf.maximum(s, 1e-300)
    # |(v, w)| / sqrt(s) = 2 sqrt(e (1 - e) / s) -> sqrt(2) (1 - 3 s / 8).
    ratio = tf.where(
        s < 1e-8,
        math.sqrt(2.0) * (1.0 - 0.375 * s),
        2.0 * tf.sqrt(e * -tf.math.expm1(-0.5 * safe) / safe),
    )
    return 2.0 * e - 1.0, ratio * a, ratio * b


def _lab_objects(kx, rapidity, ky, m, a, b, rx, ry, reference=None, ordered=True):
    """(pt, eta, phi) of both objects from frame coordinates (float64)."""
    px, py = kx - rx, ky - ry
    pt_pair = tf.sqrt(tf.square(px) + tf.square(py))
    m_t = tf.sqrt(tf.square(m) + tf.square(pt_pair))
    energy, pz = m_t * tf.cosh(rapidity), m_t * tf.sinh(rapidity)
    s = tf.square(a) + tf.square(b)
    if ordered:
        # Inverse of _equal_area: n_par = exp(-s / 2), |n_T| = sqrt(1 - exp(-s)).
        safe = tf.maximum(s, 1e-300)
        ratio = tf.where(
            s < 1e-8, 1.0 - 0.25 * s, tf.sqrt(-tf.math.expm1(-safe) / safe)
        )
        local = (tf.exp(-0.5 * s), ratio * a, ratio * b)
    else:
        local = _from_sphere_area(s, a, b)
    basis = reference_basis(reference)
    if basis is None:
        n_par, n_perp, nz = local
    else:
        n_par, n_perp, nz = (
            sum(local[k] * basis[k][i] for k in range(3)) for i in range(3)
        )
    # A pair at rest in the transverse plane has no direction: atan2(0, 0) = 0.
    phi_pair = tf.atan2(py, px)
    cos_w, sin_w = tf.cos(phi_pair), tf.sin(phi_pair)
    nx = n_par * cos_w - n_perp * sin_w
    ny = n_par * sin_w + n_perp * cos_w
    # Boost of (m/2)(1, +-n) to the lab: p = +-(m/2) n + P ((+-P.n) / (2 (E + m))
    # + 1/2).
    along = (px * nx + py * ny + pz * nz) / (2.0 * (energy + m))
    objects = []
    for sign in (1.0, -1.0):
        c = sign * along + 0.5
        qx = sign * 0.5 * m * nx + c * px
        qy = sign * 0.5 * m * ny + c * py
        qz = sign * 0.5 * m * nz + c * pz
        pt = tf.sqrt(tf.square(qx) + tf.square(qy))
        objects.append((pt, tf.asinh(qz / pt), tf.atan2(qy, qx)))
    if not ordered:
        return tuple(objects), s
    # Leading object first, as the prepared data label the pair.
    swap = objects[1][0] > objects[0][0]
    first = tuple(tf.where(swap, v2, v1) for v1, v2 in zip(*objects, strict=True))
    second = tuple(tf.where(swap, v1, v2) for v1, v2 in zip(*objects, strict=True))
    return (first, second), s


def _delta_r2(eta1, phi1, eta2, phi2):
    return tf.square(eta1 - eta2) + tf.square(wrap_phi(phi1 - phi2))


def _swap_where(swap, first, second):
    """Exchange two objects' (pt, eta, phi) where ``swap`` is true."""
    return (
        tuple(tf.where(swap, v2, v1) for v1, v2 in zip(first, second, strict=True)),
        tuple(tf.where(swap, v1, v2) for v1, v2 in zip(first, second, strict=True)),
    )


def _label_objects(first, second, label):
    """Object closer in Delta R to the detector ``(eta, phi)`` first (None: keep)."""
    if label is None:
        return first, second
    eta_d, phi_d = label
    swap = _delta_r2(*second[1:], eta_d, phi_d) < _delta_r2(*first[1:], eta_d, phi_d)
    return _swap_where(swap, first, second)


def _balance_axis(phi_a, phi_b, rx, ry):
    """``s = |sin(dphi / 2)|`` and ``recoil . n``, n = (t_a - t_b) / (2 s)."""
    s = tf.maximum(tf.abs(tf.sin(0.5 * (phi_a - phi_b))), 1e-12)
    along = rx * (tf.cos(phi_a) - tf.cos(phi_b)) + ry * (tf.sin(phi_a) - tf.sin(phi_b))
    return s, along / (2.0 * s)


def direction_coordinates(pt1, eta1, phi1, pt2, eta2, phi2, rx=0.0, ry=0.0, label=None):
    """Direction frame coordinates of massless pairs (inverse of a direction frame).

    Args:
        pt1, eta1, phi1, pt2, eta2, phi2: float64 tensors of the two objects.
        rx, ry: transverse momentum of the recoil objects (GeV).
        label: None (object 1 is object a), or ``(eta, phi)`` of a detector
            object: the object closer to it in Delta R is object a.

    Returns:
        tuple ``(u, eta_a, phi_a, m, eta_b, phi_b, pt_a, pt_b, s)`` of float64
        tensors (module docstring).
    """
    a, b = _label_objects((pt1, eta1, phi1), (pt2, eta2, phi2), label)
    m = _pair_mass(*a, *b)
    s, along = _balance_axis(a[2], b[2], rx, ry)
    u = s * (a[0] - b[0]) + along
    return (u, a[1], a[2], m, b[1], b[2], a[0], b[0], s)


def _direction_objects(u, eta_a, phi_a, m, eta_b, phi_b, rx, ry, ordered=True):
    """(pt, eta, phi) of both objects from direction coordinates (float64)."""
    s, along = _balance_axis(phi_a, phi_b, rx, ry)
    product = tf.square(m) / (2.0 * pair_separation(eta_a, phi_a, eta_b, phi_b))
    d = (u - along) / s
    root = tf.sqrt(tf.square(d) + 4.0 * product)
    # pt_a - pt_b = d, pt_a pt_b = product; the larger root without cancellation.
    big = 0.5 * (tf.abs(d) + root)
    small = product / big
    pt_a = tf.where(d >= 0.0, big, small)
    pt_b = tf.where(d >= 0.0, small, big)
    objects = (pt_a, eta_a, phi_a), (pt_b, eta_b, phi_b)
    if ordered:
        objects = _swap_where(pt_b > pt_a, *objects)
    return objects, (pt_a, pt_b, s)


def anchor_coordinates(pt1, eta1, phi1, pt2, eta2, phi2, rx=0.0, ry=0.0, label=None):
    """Anchored frame coordinates of massless pairs (inverse of an anchored frame).

    Args:
        pt1, eta1, phi1, pt2, eta2, phi2: float64 tensors of the two objects.
        rx, ry: transverse momentum of the recoil objects (GeV).
        label: None (object 1 is the anchor), or ``(eta, phi)`` of a detector
            object: the object closer to it in Delta R is the anchor.

    Returns:
        tuple ``(kx, eta_a, phi_a, m, w, ky, pt_a, pt_b)`` of float64 tensors,
        ``w = 2 y - eta_a``.
    """
    first, second = _label_objects((pt1, eta1, phi1), (pt2, eta2, phi2), label)
    px, py, _, m, rapidity, _ = _rest_direction(*first, *second)
    w = 2.0 * rapidity - first[1]
    return (px + rx, first[1], first[2], m, w, py + ry, first[0], second[0])


def _anchor_objects(kx, eta_a, phi_a, m, w, ky, rx, ry, ordered=True):
    """(pt, eta, phi) of both objects from anchored coordinates (float64)."""
    rapidity = 0.5 * (w + eta_a)
    px, py = kx - rx, ky - ry
    m_t = tf.sqrt(tf.square(m) + tf.square(px) + tf.square(py))
    energy, pz = m_t * tf.cosh(rapidity), m_t * tf.sinh(rapidity)
    cosh_a = tf.cosh(eta_a)
    dx, dy = tf.cos(phi_a) / cosh_a, tf.sin(phi_a) / cosh_a
    dz = tf.tanh(eta_a)
    # E - P.d_a > 0 (|d_a| = 1 and |P| < E); E_a = m^2 / (2 (E - P.d_a)).
    pt_a = tf.square(m) / (2.0 * (energy - px * dx - py * dy - pz * dz) * cosh_a)
    qx, qy = px - pt_a * tf.cos(phi_a), py - pt_a * tf.sin(phi_a)
    qz = pz - pt_a * tf.sinh(eta_a)
    pt_b = tf.sqrt(tf.square(qx) + tf.square(qy))
    anchor = (pt_a, eta_a, phi_a)
    partner = (pt_b, tf.asinh(qz / pt_b), tf.atan2(qy, qx))
    if not ordered:
        return (anchor, partner), (pt_a, pt_b)
    return _swap_where(pt_b > pt_a, anchor, partner), (pt_a, pt_b)


def _anchor_log_det(pt_a, pt_b, m):
    """log |det d(lab) / d(anchored coordinates)| (module docstring)."""
    return tf.math.log(pt_a) - tf.math.log(m) - tf.math.log(pt_b)


def _direction_log_det(pt_a, pt_b, m, s):
    """log |det d(lab) / d(direction coordinates)| (module docstring)."""
    return (
        tf.math.log(pt_a)
        + tf.math.log(pt_b)
        - tf.math.log(0.5 * m)
        - tf.math.log(s)
        - tf.math.log(pt_a + pt_b)
    )


def _detector_columns(c, pair):
    """The six (pt, eta, phi) columns ``pair`` of ``c``, both pts floored at 1 MeV.

    Zero-pt objects (a missing jet) would give NaN angles.
    """
    columns = [c[:, i] for i in pair]
    columns[0] = tf.maximum(columns[0], 1e-3)
    columns[3] = tf.maximum(columns[3], 1e-3)
    return columns


def pair_balance(x, pair, recoil):
    """Transverse momentum (magnitude) of a pair plus its recoil objects.

    Args:
        x: array (..., d) in GeV and radians.
        pair: six column indices (pt, eta, phi of both objects).
        recoil: (pt, phi) column indices of the recoil objects.

    Returns:
        float64 tensor (...).
    """
    objects = [(pair[0], pair[2]), (pair[3], pair[5]), *recoil]
    kx, ky = _recoil(tf.cast(x, tf.float64), objects)
    return tf.sqrt(tf.square(kx) + tf.square(ky))


def detector_reference(c_detector, pair):
    """Rest-frame direction (n, 3) of the first detector object, frame axes."""
    columns = _detector_columns(tf.cast(c_detector, tf.float64), pair)
    n = _rest_direction(*columns)[-1]
    n = [tf.where(tf.math.is_finite(v), v, tf.zeros_like(v)) for v in n]
    # A non-finite direction (collinear objects) becomes the frame's first axis.
    n[0] = tf.where(_dot(n, n) > 0.5, n[0], tf.ones_like(n[0]))
    return tf.cast(tf.stack(n, axis=-1), tf.float32)


class PairFrame(tfb.Bijector):
    """Lab coordinates of a massless pair <-> its rest-frame coordinates.

    See the module docstring for the coordinates and the Jacobian.
    """

    def __init__(
        self,
        pair,
        *,
        recoil=(),
        reference=False,
        ordered=True,
        anchor=False,
        directions=False,
        name="pair_frame_00",
    ):
        """Build the bijector.

        Args:
            pair: six column indices ``(pt1, eta1, phi1, pt2, eta2, phi2)``; on the
                forward input they hold ``(kx, y, ky, m, a, b)``.
            recoil: ``(pt, phi)`` column indices of objects whose transverse
                momentum is added to the pair's in ``(kx, ky)``; they must not be
                columns of the pair.
            reference: if True, the pole of the direction map is a direction
                (n, 3) in the frame axes passed as ``conditional_input`` (e.g. that
                of the matched detector objects, ``detector_reference``) instead
                of the pair's transverse direction: the forward object is the one
                closer to it, and a posterior around the measured decay is a
                posterior around the origin of ``(a, b)``.
            ordered: True (pT-ordered like objects: the forward object's
                direction on a hemisphere, and ``forward`` returns the objects
                ordered by pT) or False (objects labelled otherwise, e.g. by
                charge: object 1's direction on the whole sphere, no reordering;
                the log-det gains log 2).
            anchor: if True, the slots hold ``(kx, eta_a, phi_a, m, w, ky)``: one
                object keeps its lab direction (module docstring). An ordered
                anchored pair needs the (eta, phi) (n, 2) of the first matched
                detector object as ``conditional_input`` of ``inverse`` (the
                anchor is the object closer to it); not with ``reference``.
            directions: if True, the slots hold ``(u, eta_a, phi_a, m, eta_b,
                phi_b)``: both objects keep their lab directions (module
                docstring), labelled like an anchored frame; not with
                ``reference`` or ``anchor``.
            name: bijector name.

        Raises:
            ConfigError: for repeated columns, recoil columns inside the pair, or
                more than one of ``reference``, ``anchor``, ``directions``.
        """
        parameters = dict(locals())
        self._pair = tuple(int(i) for i in pair)
        self._recoil = tuple((int(p), int(f)) for p, f in recoil)
        self._reference = bool(reference)
        self._ordered = bool(ordered)
        self._anchor = bool(anchor)
        self._directions = bool(directions)
        if self._reference + self._anchor + self._directions > 1:
            msg = (
                f"pair frame {name!r}: reference={self._reference}, anchor="
                f"{self._anchor}, directions={self._directions}; an anchored or "
                "direction frame keeps lab directions and has no decay-direction map "
                "whose pole a reference could set: expected at most one of the three"
            )
            raise ConfigError(msg)
        recoil_columns = [i for p in self._recoil for i in p]
        if len(self._pair) != 6 or len(set(self._pair)) != 6:
            msg = f"pair columns {self._pair!r}: expected six distinct columns"
            raise ConfigError(msg)
        if set(recoil_columns) & set(self._pair) or len(set(recoil_columns)) != len(
            recoil_columns
        ):
            msg = (
                f"recoil columns {self._recoil!r}: expected distinct (pt, phi) "
                f"columns outside the pair {self._pair!r}"
            )
            raise ConfigError(msg)
        super().__init__(
            forward_min_event_ndims=1,
            validate_args=False,
            parameters=parameters,
            name=name,
        )

    @property
    def pair(self):
        """Column indices ``(pt1, eta1, phi1, pt2, eta2, phi2)``."""
        return self._pair

    @property
    def recoil(self):
        """``(pt, phi)`` column indices of the recoil objects."""
        return self._recoil

    @property
    def reference(self):
        """Whether the direction map's pole is a conditional input."""
        return self._reference

    @property
    def ordered(self):
        """Whether the pair is labelled by pT (hemisphere map, sorted output)."""
        return self._ordered

    @property
    def anchor(self):
        """Whether one object keeps its lab direction (slots kx, eta, phi, m, y, ky)."""
        return self._anchor

    @property
    def directions(self):
        """Whether both objects keep their lab directions (slots u, eta, phi, m)."""
        return self._directions

    @property
    def needs_label(self):
        """Whether ``inverse`` needs the detector (eta, phi) that picks the anchor."""
        return (self._anchor or self._directions) and self._ordered

    @property
    def mass_slot(self):
        """Column index that holds the pair mass on the forward input."""
        return self._pair[3]

    @property
    def flow_kinds(self):
        """Kinds of the six slots on the forward input (for ``ColumnTransform``)."""
        if self._anchor:
            return ("other", "eta", "phi", "mass", "eta", "other")
        if self._directions:
            return ("other", "eta", "phi", "mass", "eta", "phi")
        return ("other", "eta", "other", "mass", "other", "other")

    def _columns(self, x):
        return [tf.cast(x[..., i], tf.float64) for i in self._pair]

    def _recoil64(self, x):
        rx, ry = _recoil(tf.cast(x, tf.float64), self._recoil)
        return rx, ry

    def _pole(self, conditional_input):
        if not self._reference:
            return None
        if conditional_input is None:
            msg = (
                f"bijector {self.name!r} was built with reference=True and needs "
                "the reference directions (n, 3) as conditional_input"
            )
            raise ValueError(msg)
        return conditional_input

    def _label(self, conditional_input):
        if not self.needs_label:
            return None
        if conditional_input is None:
            msg = (
                f"bijector {self.name!r} is an ordered anchored or direction frame "
                "and needs the "
                "(eta, phi) (n, 2) of the first matched detector object as "
                "conditional_input"
            )
            raise ValueError(msg)
        label = tf.cast(conditional_input, tf.float64)
        return label[..., 0], label[..., 1]

    def _forward(self, x, conditional_input=None):
        rx, ry = self._recoil64(x)
        if self._anchor:
            objects, _ = _anchor_objects(*self._columns(x), rx, ry, self._ordered)
        elif self._directions:
            objects, _ = _direction_objects(*self._columns(x), rx, ry, self._ordered)
        else:
            pole = self._pole(conditional_input)
            objects, _ = _lab_objects(*self._columns(x), rx, ry, pole, self._ordered)
        return scatter_columns(x, self._pair, [v for obj in objects for v in obj])

    def _inverse(self, y, conditional_input=None):
        rx, ry = self._recoil64(y)
        if self._anchor:
            label = self._label(conditional_input)
            coords = anchor_coordinates(*self._columns(y), rx, ry, label)
        elif self._directions:
            label = self._label(conditional_input)
            coords = direction_coordinates(*self._columns(y), rx, ry, label)
        else:
            pole = self._pole(conditional_input)
            coords = frame_coordinates(*self._columns(y), rx, ry, pole, self._ordered)
        return scatter_columns(y, self._pair, coords[:6])

    def _forward_log_det_jacobian(self, x, conditional_input=None):
        rx, ry = self._recoil64(x)
        columns = self._columns(x)
        if self._anchor:
            _, (pt_a, pt_b) = _anchor_objects(*columns, rx, ry, self._ordered)
            return tf.cast(_anchor_log_det(pt_a, pt_b, columns[3]), x.dtype)
        if self._directions:
            _, (pt_a, pt_b, s) = _direction_objects(*columns, rx, ry, self._ordered)
            return tf.cast(_direction_log_det(pt_a, pt_b, columns[3], s), x.dtype)
        pole = self._pole(conditional_input)
        kx, rapidity, ky, m, a, b = columns
        objects, s = _lab_objects(
            kx, rapidity, ky, m, a, b, rx, ry, pole, self._ordered
        )
        value = (
            tf.math.log((0.5 if self._ordered else 1.0) * m)
            - 0.5 * s
            - tf.math.log(objects[0][0])
            - tf.math.log(objects[1][0])
        )
        return tf.cast(value, x.dtype)

    def _inverse_log_det_jacobian(self, y, conditional_input=None):
        rx, ry = self._recoil64(y)
        columns = self._columns(y)
        if self._anchor:
            label = self._label(conditional_input)
            coords = anchor_coordinates(*columns, rx, ry, label)
            m, pt_a, pt_b = coords[3], coords[6], coords[7]
            return tf.cast(-_anchor_log_det(pt_a, pt_b, m), y.dtype)
        if self._directions:
            label = self._label(conditional_input)
            coords = direction_coordinates(*columns, rx, ry, label)
            m, pt_a, pt_b, s = coords[3], coords[6], coords[7], coords[8]
            return tf.cast(-_direction_log_det(pt_a, pt_b, m, s), y.dtype)
        pole = self._pole(conditional_input)
        _, _, _, m, a, b, _ = frame_coordinates(*columns, rx, ry, pole, self._ordered)
        s = tf.square(a) + tf.square(b)
        value = (
            -tf.math.log((0.5 if self._ordered else 1.0) * m)
            + 0.5 * s
            + tf.math.log(columns[0])
            + tf.math.log(columns[3])
        )
        return tf.cast(value, y.dtype)


def detector_frame_features(
    c_detector,
    pair,
    recoil,
    ordered=True,
    anchor=False,
    line_mass=None,
    directions=False,
):
    """Frame coordinates of detector objects, bounded, as condition features.

    With recoil objects, the pair's transverse momentum is also read off the
    recoil (``P_T = -sum of the recoil pTs``, exact up to the primordial kT): with
    the two measured directions it fixes both pTs, ``P_T = pt1 n1 + pt2 n2``, much
    more precisely than the measured pTs wherever ``sin(phi2 - phi1)`` is not small
    (the solve amplifies the recoil's error by its inverse).

    Args:
        c_detector: float tensor (n, n_detector).
        pair: six detector column indices (pt, eta, phi of both objects).
        recoil: (pt, phi) detector column indices of the recoil objects.
        ordered: the frame's ``ordered`` (hemisphere or whole-sphere direction).
        anchor: the frame's ``anchor``: with recoil, the rapidity of the pair with
            the solved pTs as well, and that at which the partner points at the
            second object (``partner_rapidity``, with the pair mass ``line_mass``
            or the measured one) with the remaining (eta, phi) offset: an
            anchored frame's partner direction is a function of the pair's
            rapidity, which the measured pTs give only to about the jets' pT
            ratio.
        line_mass: the frame line's mass (GeV), or None.
        directions: the frame's ``directions``: with recoil, the detector's
            ``u`` (module docstring), the two pTs that the measured directions
            give for ``u = 0`` on the line (``line_mass`` or the measured mass)
            and the transverse-momentum balance across the axis that is then
            left (GeV): how far the measured directions are from a balanced
            event, which the flow's directions must absorb.

    Returns:
        float32 tensor (n, n_frame_features(recoil, anchor, directions)): kx,
        ky (GeV), y,
        log(m + 1 GeV), a, b, n_par of the measured objects; with recoil also the
        log of the two recoil-solved pTs (measured pT where the solve gives none
        in [1, 5000] GeV), log |sin(phi2 - phi1)|, and log(m + 1 GeV), a, b (and
        y if anchored) of the pair with the solved pTs; anchored, also the
        partner rapidity and its (eta, phi) offset; with directions, the four
        numbers above.
    """
    c = tf.cast(c_detector, tf.float64)
    columns = _detector_columns(c, pair)
    rx, ry = _recoil(c, recoil)
    kx, rapidity, ky, m, a, b, n_par = frame_coordinates(
        *columns, rx, ry, ordered=ordered
    )
    features = [kx, ky, rapidity, tf.math.log(m + 1.0), a, b, n_par]
    if recoil:
        phi1, phi2 = columns[2], columns[5]
        sine = tf.sin(phi2 - phi1)
        safe = tf.where(tf.abs(sine) < 1e-9, 1e-9 * tf.ones_like(sine), sine)
        solved1 = (-rx * tf.sin(phi2) + ry * tf.cos(phi2)) / safe
        solved2 = (rx * tf.sin(phi1) - ry * tf.cos(phi1)) / safe
        low, high = _SOLVED_PT_RANGE
        valid = (solved1 > low) & (solved1 < high) & (solved2 > low) & (solved2 < high)
        solved1 = tf.where(valid, solved1, columns[0])
        solved2 = tf.where(valid, solved2, columns[3])
        solved = list(columns)
        solved[0], solved[3] = solved1, solved2
        _, y_s, _, m_s, a_s, b_s, _ = frame_coordinates(
            *solved, rx, ry, ordered=ordered
        )
        # The pair mass of the solves: the frame's line, else the measured one.
        mass = m if line_mass is None else tf.ones_like(m) * float(line_mass)
        if anchor:
            y_p, deta_p, dphi_p = partner_rapidity(
                columns[1], columns[2], columns[4], columns[5], rx, ry, mass, rapidity
            )
            features += [y_s, y_p, deta_p, dphi_p]
        if directions:
            features += _balance_features(columns, rx, ry, mass)
        features += [
            tf.math.log(solved1),
            tf.math.log(solved2),
            tf.math.log(tf.maximum(tf.abs(sine), 1e-3)),
            tf.math.log(m_s + 1.0),
            a_s,
            b_s,
        ]
    features = [tf.where(tf.math.is_finite(f), f, tf.zeros_like(f)) for f in features]
    return tf.cast(tf.stack(features, axis=-1), tf.float32)


def _across_balance(eta_a, phi_a, eta_b, phi_b, rx, ry, mass):
    """Balance across the axis n for ``u = 0`` on ``mass``, and the pTs it gives.

    Returns:
        tuple ``(across, pt_a, pt_b)`` of float64 tensors (GeV): the transverse
        momentum of the pair plus the recoil along n turned by +90 degrees
        (continuous in the angles wherever n is defined, whichever side of the
        +-pi seam they are) and the two pTs of the pair with ``u = 0`` on the
        line.
    """
    zero = tf.zeros_like(eta_a)
    (a, b), (_, _, s) = _direction_objects(
        zero, eta_a, phi_a, mass, eta_b, phi_b, rx, ry, ordered=False
    )
    # n = (t_a - t_b) / |t_a - t_b|, |t_a - t_b| = 2 s.
    nx, ny = tf.cos(phi_a) - tf.cos(phi_b), tf.sin(phi_a) - tf.sin(phi_b)
    vx = a[0] * tf.cos(phi_a) + b[0] * tf.cos(phi_b) + rx
    vy = a[0] * tf.sin(phi_a) + b[0] * tf.sin(phi_b) + ry
    return (ny * vx - nx * vy) / (2.0 * s), a[0], b[0]


def _balance_features(columns, rx, ry, mass):
    """``u``, log pTs solved on ``mass`` and the leftover balance (detector)."""
    eta_a, phi_a, eta_b, phi_b = columns[1], columns[2], columns[4], columns[5]
    u = direction_coordinates(*columns, rx, ry)[0]
    across, pt_a, pt_b = _across_balance(eta_a, phi_a, eta_b, phi_b, rx, ry, mass)
    low, high = _SOLVED_PT_RANGE
    return [
        u,
        tf.math.log(tf.clip_by_value(pt_a, low, high)),
        tf.math.log(tf.clip_by_value(pt_b, low, high)),
        across,
    ]


# Step (rad) of the central differences of ``balance_gradient``.
_GRADIENT_STEP = 1e-6


def balance_gradient(c_detector, pair, recoil, line_mass=None):
    """How the balance across the axis moves with the four measured angles.

    A direction frame's coordinates make the pair mass and the balance along
    the axis n straight; the balance across n (``_across_balance``: the pair on
    the line with ``u = 0`` plus the recoil, zero up to the primordial kT) is a
    function of the four directions, and a narrow one: the flow has to learn
    that the directions' posterior moves along its level sets. The gradient at
    the measured directions says which combination of angles that constraint
    fixes, event by event; ``ConditionalReflection`` makes it one axis of the
    flow (``align`` of a direction frame).

    Args:
        c_detector: float tensor (n, n_detector).
        pair: six detector column indices (pt, eta, phi of both objects).
        recoil: (pt, phi) detector column indices of the recoil objects.
        line_mass: the frame line's mass (GeV), else the measured pair mass.

    Returns:
        float64 tensor (n, 4): d(across) / d(eta_a, phi_a, eta_b, phi_b) in GeV
        per unit of angle, zero where it is not finite.
    """
    c = tf.cast(c_detector, tf.float64)
    columns = _detector_columns(c, pair)
    rx, ry = _recoil(c, recoil)
    if line_mass is None:
        mass = _pair_mass(*columns)
    else:
        mass = tf.ones_like(rx) * float(line_mass)
    angles = [columns[1], columns[2], columns[4], columns[5]]
    gradient = []
    for k in range(4):
        up = [a + _GRADIENT_STEP if i == k else a for i, a in enumerate(angles)]
        down = [a - _GRADIENT_STEP if i == k else a for i, a in enumerate(angles)]
        change = _across_balance(*up, rx, ry, mass)[0]
        change = change - _across_balance(*down, rx, ry, mass)[0]
        gradient.append(change / (2.0 * _GRADIENT_STEP))
    gradient = tf.stack(gradient, axis=-1)
    finite = tf.reduce_all(tf.math.is_finite(gradient), axis=-1, keepdims=True)
    return tf.where(finite, gradient, tf.zeros_like(gradient))
