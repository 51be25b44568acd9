"""Pair the parton-level hard process with detector-level objects, event by event.

The process file (``config/processes/*.yaml``) says which hard-process particles form
the parton level and which detector objects form the condition; nothing about the
process is written in code here. Everything is vectorised over events with awkward.
"""

import logging

import awkward as ak
import numpy as np

from cinnflow.errors import ConfigError

__all__ = [
    "LEPTON_MASS_GEV",
    "PARTICLE_FIELDS",
    "READ_COLLECTIONS",
    "column_names",
    "detector_level",
    "parton_level",
]

logger = logging.getLogger(__name__)

#: Lepton masses by flavour; Delphes leptons carry no mass branch.
LEPTON_MASS_GEV = {"Electron": 0.000511, "Muon": 0.10566}

PARTICLE_FIELDS = ["PID", "Status", "M1", "PT", "Eta", "Phi", "Mass"]

#: What the preparation reads from a Delphes-schema file.
READ_COLLECTIONS = {
    "Particle": PARTICLE_FIELDS,
    "Jet": ["PT", "Eta", "Phi", "Mass"],
    "Electron": ["PT", "Eta", "Phi", "Charge"],
    "Muon": ["PT", "Eta", "Phi", "Charge"],
}

_FIELD_KIND = {"pt": "pt", "eta": "eta", "phi": "phi", "mass": "mass"}
_DELPHES_FIELD = {"pt": "PT", "eta": "Eta", "phi": "Phi", "mass": "Mass"}


def column_names(objects, fields):
    """Names and kinds of the flat columns, object-major: ``q1_pt, q1_eta, ...``.

    Args:
        objects: object names, e.g. ``["q1", "q2", "l1", "l2"]``.
        fields: per-object fields, each one of ``pt``, ``eta``, ``phi``, ``mass``.

    Returns:
        tuple: ``(names, kinds)``, two lists of strings.
    """
    for field in fields:
        if field not in _FIELD_KIND:
            msg = f"field {field!r} is not one of {sorted(_FIELD_KIND)}"
            raise ConfigError(msg)
    names = [f"{obj}_{field}" for obj in objects for field in fields]
    kinds = [_FIELD_KIND[field] for _ in objects for field in fields]
    return names, kinds


def _isin(values, allowed):
    """Elementwise membership of a jagged integer array in ``allowed``."""
    flat = ak.flatten(values, axis=None)
    mask = np.isin(ak.to_numpy(flat), np.asarray(allowed))
    return ak.unflatten(mask, ak.num(values, axis=1))


def parton_level(particles, spec):
    """Select the hard-process particles named in the process file.

    Args:
        particles: jagged record array (n_events, var) with the fields of
            ``PARTICLE_FIELDS`` (Delphes names).
        spec: the ``parton`` section of a process file: ``status``, ``fields`` and
            ``objects`` (each with ``name``, ``pid``, ``mother_pid``, ``rank``).

    Returns:
        tuple: ``(x_parton, found)``; ``x_parton`` float64 (n_events, n_columns),
        NaN where an object is missing, and ``found`` bool (n_events,), true where
        every object was found.
    """
    status_ok = _isin(abs(particles.Status), spec["status"])
    mother = ak.where(particles.M1 >= 0, particles.M1, 0)
    mother_pid = ak.where(particles.M1 >= 0, particles.PID[mother], 0)

    columns = []
    found = np.ones(len(particles), dtype=bool)
    for obj in spec["objects"]:
        mask = status_ok & _isin(particles.PID, obj["pid"])
        mask = mask & _isin(mother_pid, obj["mother_pid"])
        candidates = particles[mask]
        candidates = candidates[ak.argsort(candidates.PT, ascending=False)]
        rank = obj.get("rank", 0)
        found &= ak.to_numpy(ak.num(candidates, axis=1) > rank)
        chosen = ak.pad_none(candidates, rank + 1, axis=1)[:, rank]
        for field in spec["fields"]:
            values = ak.fill_none(chosen[_DELPHES_FIELD[field]], np.nan)
            columns.append(ak.to_numpy(values).astype(np.float64))
    return np.stack(columns, axis=1), found


def _leptons(events):
    """Electrons and muons merged into one jagged array with a mass from flavour."""
    merged = []
    for flavour, (collection, mass) in enumerate(LEPTON_MASS_GEV.items()):
        leptons = events[collection]
        merged.append(
            ak.zip(
                {
                    "PT": leptons.PT,
                    "Eta": leptons.Eta,
                    "Phi": leptons.Phi,
                    "Mass": ak.ones_like(leptons.PT) * mass,
                    "Charge": leptons.Charge,
                    "Flavour": ak.zeros_like(leptons.Charge) + flavour,
                }
            )
        )
    return ak.concatenate(merged, axis=1)


def detector_level(events, spec):
    """Select detector events and build the condition columns.

    Jets are taken in falling pT; the event must have a jet multiplicity inside
    ``spec["n_jets"]`` and exactly two leptons of the same flavour and opposite
    charge; the first lepton is the negative one.

    Args:
        events: dict with jagged record arrays ``Jet``, ``Electron``, ``Muon``.
        spec: the ``detector`` section of a process file.

    Returns:
        tuple: ``(c_detector, selected, cutflow)``; ``c_detector`` float64
        (n_events, n_columns) with NaN for unselected events, ``selected`` bool
        (n_events,), and ``cutflow`` a dict of event counts after each cut.
    """
    jets = events["Jet"]
    jets = jets[ak.argsort(jets.PT, ascending=False)]
    n_min, n_max = spec["n_jets"]
    n_jets = ak.to_numpy(ak.num(jets, axis=1))
    jets_ok = (n_jets >= n_min) & (n_jets <= n_max)

    leptons = _leptons(events)
    leptons = leptons[ak.argsort(leptons.Charge)]  # negative first
    two = ak.to_numpy(ak.num(leptons, axis=1) == 2)
    padded = ak.pad_none(leptons, 2, axis=1)
    first, second = padded[:, 0], padded[:, 1]
    os_sf = ak.fill_none(
        (first.Charge * second.Charge < 0) & (first.Flavour == second.Flavour), False
    )
    leptons_ok = two & ak.to_numpy(os_sf)
    selected = jets_ok & leptons_ok

    objects = []
    padded_jets = ak.pad_none(jets, len(spec["jets"]), axis=1)
    objects += [padded_jets[:, i] for i in range(len(spec["jets"]))]
    objects += [first, second][: len(spec["leptons"])]
    columns = []
    for obj in objects:
        for field in spec["fields"]:
            values = ak.fill_none(obj[_DELPHES_FIELD[field]], np.nan)
            columns.append(ak.to_numpy(values).astype(np.float64))
    c_detector = np.stack(columns, axis=1)
    c_detector[~selected] = np.nan

    cutflow = {
        "all": int(len(n_jets)),
        "jet_multiplicity": int(jets_ok.sum()),
        "two_leptons": int((jets_ok & two).sum()),
        "opposite_sign_same_flavour": int(selected.sum()),
    }
    return c_detector, selected, cutflow
