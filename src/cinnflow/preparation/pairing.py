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
    "OPTIONAL_COLLECTIONS",
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
#: Collections of READ_COLLECTIONS that a file may lack (no leptons of a flavour).
OPTIONAL_COLLECTIONS = ("Electron", "Muon")

# Lepton objects the detector level can form: none, one, or one opposite-sign,
# same-flavour pair.
_MAX_LEPTONS = 2
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
            ``objects``, each with ``name``, ``pid`` and optionally ``mother_pid``
            (PIDs allowed for the first mother; absent: any mother), ``status``
            (overrides the section's list for this object) and ``rank`` (0: the
            hardest candidate).

    Returns:
        tuple: ``(x_parton, found)``; ``x_parton`` float64 (n_events, n_columns),
        NaN where an object is missing, and ``found`` bool (n_events,), true where
        every object was found.
    """
    _check_parton_spec(spec)
    mother = ak.where(particles.M1 >= 0, particles.M1, 0)
    mother_pid = ak.where(particles.M1 >= 0, particles.PID[mother], 0)

    columns = []
    found = np.ones(len(particles), dtype=bool)
    for obj in spec["objects"]:
        status = obj.get("status", spec["status"])
        mask = _isin(abs(particles.Status), status) & _isin(particles.PID, obj["pid"])
        if "mother_pid" in obj:
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


_OBJECT_KEYS = {"name", "pid", "mother_pid", "status", "rank"}


def _check_parton_spec(spec):
    """Raise ConfigError for a ``parton`` section the selection cannot use."""
    for key in ("status", "fields", "objects"):
        if key not in spec:
            msg = f"process parton section lacks the key {key!r}; got {sorted(spec)}"
            raise ConfigError(msg)
    for obj in spec["objects"]:
        unknown = sorted(set(obj) - _OBJECT_KEYS)
        if unknown or "name" not in obj or "pid" not in obj:
            msg = (
                f"parton object {obj!r}: expected keys 'name' and 'pid', optionally "
                f"{sorted(_OBJECT_KEYS - {'name', 'pid'})}; unknown keys {unknown}"
            )
            raise ConfigError(msg)


def _check_detector_spec(spec):
    """Raise ConfigError for a ``detector`` section the selection cannot use."""
    for key in ("n_jets", "jets", "leptons", "fields"):
        if key not in spec:
            msg = f"process detector section lacks the key {key!r}; got {sorted(spec)}"
            raise ConfigError(msg)
    n_jets = spec["n_jets"]
    if len(n_jets) != 2 or n_jets[0] < len(spec["jets"]) or n_jets[1] < n_jets[0]:
        msg = (
            f"detector n_jets is {n_jets!r} for the jet columns {spec['jets']!r}; "
            "expected [min, max] with len(jets) <= min <= max"
        )
        raise ConfigError(msg)
    if len(spec["leptons"]) > _MAX_LEPTONS:
        msg = (
            f"detector leptons is {spec['leptons']!r}; expected at most "
            f"{_MAX_LEPTONS} lepton objects"
        )
        raise ConfigError(msg)


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
    ``spec["n_jets"]`` and exactly as many leptons (electrons and muons) as
    ``spec["leptons"]`` names: none, one, or two of the same flavour and opposite
    charge, the first one the negative one.

    Args:
        events: dict with jagged record arrays ``Jet``, ``Electron``, ``Muon``.
        spec: the ``detector`` section of a process file: ``n_jets`` ([min, max]),
            ``jets`` and ``leptons`` (object names, at most 2 leptons), ``fields``.

    Returns:
        tuple: ``(c_detector, selected, cutflow)``; ``c_detector`` float64
        (n_events, n_columns) with NaN for unselected events, ``selected`` bool
        (n_events,), and ``cutflow`` a dict of event counts after each cut
        (``all``, ``jet_multiplicity``, ``lepton_multiplicity`` and, for a pair,
        ``opposite_sign_same_flavour``).

    Raises:
        ConfigError: a ``detector`` section with missing keys, a jet multiplicity
            range below the number of jet columns, or more than two leptons.
    """
    _check_detector_spec(spec)
    jets = events["Jet"]
    jets = jets[ak.argsort(jets.PT, ascending=False)]
    n_min, n_max = spec["n_jets"]
    n_jets = ak.to_numpy(ak.num(jets, axis=1))
    jets_ok = (n_jets >= n_min) & (n_jets <= n_max)

    n_leptons = len(spec["leptons"])
    leptons = _leptons(events)
    leptons = leptons[ak.argsort(leptons.Charge)]  # negative first
    count_ok = ak.to_numpy(ak.num(leptons, axis=1) == n_leptons)
    padded = ak.pad_none(leptons, _MAX_LEPTONS, axis=1)
    first, second = padded[:, 0], padded[:, 1]
    leptons_ok = count_ok
    if n_leptons == _MAX_LEPTONS:
        os_sf = ak.fill_none(
            (first.Charge * second.Charge < 0) & (first.Flavour == second.Flavour),
            False,
        )
        leptons_ok = count_ok & ak.to_numpy(os_sf)
    selected = jets_ok & leptons_ok

    objects = []
    padded_jets = ak.pad_none(jets, max(len(spec["jets"]), 1), axis=1)
    objects += [padded_jets[:, i] for i in range(len(spec["jets"]))]
    objects += [first, second][:n_leptons]
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
        "lepton_multiplicity": int((jets_ok & count_ok).sum()),
    }
    if n_leptons == _MAX_LEPTONS:
        cutflow["opposite_sign_same_flavour"] = int(selected.sum())
    return c_detector, selected, cutflow
