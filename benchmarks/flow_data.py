"""A fixed synthetic ZW -> (l l)(q q) dataset for the flow benchmark (numpy only).

Not physics-grade: bosons with Breit-Wigner masses, exponential pT and Gaussian
rapidity decay isotropically in their rest frames; the detector smears the
momenta (jets 10 % in pT, leptons 2 %, 0.02 in eta and phi) and gives jets a mass.
It has the shapes and scales of the real inputs (12 parton columns, 16 detector
columns, narrow resonances), which is what a speed benchmark needs. Shared by
``bench_flows.py`` (TensorFlow) and ``freia_peer.py`` (PyTorch), so it imports
neither.
"""

import numpy as np

PARTON_OBJECTS = ("q1", "q2", "l1", "l2")
PARTON_FIELDS = ("pt", "eta", "phi")
DETECTOR_OBJECTS = ("j1", "j2", "l1", "l2")
DETECTOR_FIELDS = ("pt", "eta", "phi", "mass")
PARTON_NAMES = [f"{o}_{f}" for o in PARTON_OBJECTS for f in PARTON_FIELDS]
PARTON_KINDS = [f for _ in PARTON_OBJECTS for f in PARTON_FIELDS]
DETECTOR_NAMES = [f"{o}_{f}" for o in DETECTOR_OBJECTS for f in DETECTOR_FIELDS]
DETECTOR_KINDS = [f for _ in DETECTOR_OBJECTS for f in DETECTOR_FIELDS]

_BOSONS = {"W": (80.377, 2.085), "Z": (91.1876, 2.4952)}


def _decay(rng, n, mass, width):
    """Massless two-body decays of bosons; returns (pt, eta, phi) of both daughters."""
    m = mass + width / 2.0 * np.tan(rng.uniform(-1.2, 1.2, n))  # truncated BW
    pt = rng.exponential(40.0, n) + 5.0
    y = rng.normal(0.0, 1.2, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    mt = np.sqrt(m**2 + pt**2)
    boson = np.stack(
        [mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)], -1
    )
    cos_t = rng.uniform(-1.0, 1.0, n)
    sin_t = np.sqrt(1.0 - cos_t**2)
    phi_d = rng.uniform(-np.pi, np.pi, n)
    half = m / 2.0
    rest = np.stack(
        [
            half,
            half * sin_t * np.cos(phi_d),
            half * sin_t * np.sin(phi_d),
            half * cos_t,
        ],
        -1,
    )
    daughters = []
    beta = boson[:, 1:] / boson[:, :1]
    b2 = np.sum(beta**2, -1, keepdims=True)
    gamma = 1.0 / np.sqrt(1.0 - b2)
    for sign in (1.0, -1.0):
        p = rest.copy()
        p[:, 1:] *= sign
        bp = np.sum(beta * p[:, 1:], -1, keepdims=True)
        vec = p[:, 1:] + ((gamma - 1.0) * bp / b2 + gamma * p[:, :1]) * beta
        pt_d = np.hypot(vec[:, 0], vec[:, 1])
        eta_d = np.arcsinh(vec[:, 2] / pt_d)
        phi_dd = np.arctan2(vec[:, 1], vec[:, 0])
        daughters.append(np.stack([pt_d, eta_d, phi_dd], -1))
    # pT-ordered quarks / (negative, positive) leptons: order by pT for both here.
    first, second = daughters
    swap = second[:, 0] > first[:, 0]
    lead = np.where(swap[:, None], second, first)
    sub = np.where(swap[:, None], first, second)
    return lead, sub


def make_dataset(n_events, seed):
    """Arrays ``x_parton`` (n, 12) and ``c_detector`` (n, 16), float32."""
    rng = np.random.default_rng(seed)
    q1, q2 = _decay(rng, n_events, *_BOSONS["W"])
    l1, l2 = _decay(rng, n_events, *_BOSONS["Z"])
    x = np.concatenate([q1, q2, l1, l2], axis=1)
    columns = []
    for obj, resolution in ((q1, 0.10), (q2, 0.10), (l1, 0.02), (l2, 0.02)):
        pt = obj[:, 0] * np.exp(rng.normal(0.0, resolution, n_events))
        eta = obj[:, 1] + rng.normal(0.0, 0.02, n_events)
        phi = obj[:, 2] + rng.normal(0.0, 0.02, n_events)
        phi = (phi + np.pi) % (2.0 * np.pi) - np.pi
        if resolution > 0.05:
            mass = pt * rng.uniform(0.02, 0.15, n_events)
        else:
            mass = np.full(n_events, 0.000511)
        columns.append(np.stack([pt, eta, phi, mass], -1))
    c = np.concatenate(columns, axis=1)
    return x.astype(np.float32), c.astype(np.float32)
