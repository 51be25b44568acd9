"""Turn a Pythia ``nextBatch`` record into a Delphes ``Particle`` collection.

Conventions follow Delphes' Pythia 8 interface (``DelphesPythia8``) and its HepMC
reader, so that our files and real Delphes files read the same way:

* Pythia's system entry (index 0, id 90) is dropped; every index shifts by one, so
  ``M1``, ``M2``, ``D1``, ``D2`` index the ``Particle`` list of the same event and
  ``-1`` means none.
* ``Status`` is Pythia's ``Particle::statusHepMC()``: 1 for final-state particles,
  4 for the beams, 2 for hadrons, muons and taus that decayed normally, and the
  absolute Pythia status otherwise (21 incoming, 22 intermediate, 23 outgoing of
  the hard process; 44, 51, 62 ... for shower copies).
* One deliberate addition: a hard-process particle that reaches the final state
  untouched (Pythia status +21..+29, e.g. a Z lepton that neither radiated nor
  recoiled) is stored twice, as the Pythia 6 record and Pythia 8's own recoil
  copies do: at its hard-process status (23, ``D1 = D2 =`` the copy) and as a
  status-1 copy appended at the end of the event (``M1 = M2 =`` the original).
  ``statusHepMC`` alone would store it only as status 1 (real Delphes files made
  from Pythia 8 via HepMC do so), and a reader looking for status 23 would lose it.

So in our files the hard process of ``f f~ -> Z W`` always reads: incoming partons
at status 21, the Z and W at status 22 (plus shower-recoil copies at status
44/51/52/62 with the same PID), and exactly four decay products (leptons 11/13,
quarks 1-5) at status 23 whose ``M1`` points at the last copy of their boson. W and
Z may also radiate photons (status 51, ``M1`` at the boson); ``Status == 1`` is the
complete final state.
"""

import logging

import awkward as ak
import numpy as np

__all__ = ["PARTICLE_RECORDS", "ParticleTable", "particles_from_batch"]

logger = logging.getLogger(__name__)

PARTICLE_RECORDS = ("full", "hard")
# Eta stored for particles along the beam axis (Delphes' GenParticle convention).
_ETA_BEAM = 999.9
_PT_BEAM = 1e-5
# Particles always kept in the "hard" record: W, Z, Higgs and top copies.
_HEAVY_PIDS = (6, 23, 24, 25)
_MIN_DECAY_STATUS, _MAX_DECAY_STATUS = 91, 94
_MIN_HARD_STATUS, _MAX_HARD_STATUS = 21, 29


class ParticleTable:
    """Per-PID charge, visibility and hadron flag from Pythia's particle data.

    Lookups are vectorised: unique PIDs of a batch are looked up once and cached.

    Args:
        particle_data: ``pythia.particleData``.
    """

    def __init__(self, particle_data):
        self._data = particle_data
        self._cache = {}

    def _row(self, pid):
        row = self._cache.get(pid)
        if row is None:
            d = self._data
            row = (int(round(d.charge(pid))), bool(d.isVisible(pid)), d.isHadron(pid))
            self._cache[pid] = row
        return row

    def lookup(self, pid):
        """Return (charge int32, visible bool, hadron bool) arrays for flat ``pid``."""
        uniq, inverse = np.unique(pid, return_inverse=True)
        rows = np.array([self._row(int(p)) for p in uniq], dtype=np.int32).reshape(
            -1, 3
        )
        rows = rows[inverse]
        return rows[:, 0], rows[:, 1].astype(bool), rows[:, 2].astype(bool)


def _kinematics(px, py, pz):
    pt = np.hypot(px, py)
    phi = np.arctan2(py, px)
    phi = np.where(phi >= np.pi, phi - 2 * np.pi, phi)
    along_beam = pt < _PT_BEAM
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(pz / np.where(along_beam, 1.0, pt))
    eta = np.where(along_beam, np.copysign(_ETA_BEAM, pz), eta)
    return pt, eta, phi


def particles_from_batch(prt, table, *, record="full"):
    """Convert ``batch.prt`` (one nextBatch call) into Delphes Particle records.

    Args:
        prt: awkward array (n_events, var) of Pythia particles as returned by
            ``Pythia.nextBatch(...).prt`` (fields id, status, mother1, mother2,
            daughter1, daughter2, p{px,py,pz,e}, m).
        table: ``ParticleTable`` of the same Pythia instance.
        record: ``"full"`` keeps every particle; ``"hard"`` keeps the beams, the hard
            process and resonance decays (status 21-29), every W/Z/h/top copy and
            the final state; references to dropped particles become -1, and D1/D2
            then name single daughters rather than a range.

    Returns:
        tuple: (particles, aux). ``particles`` is a jagged record array with the
        Delphes fields PID, Status, M1, M2, D1, D2, Charge, Mass, E, Px, Py, Pz, PT,
        Eta, Phi. ``aux`` holds the same-shaped jagged boolean ``Visible``.
    """
    if record not in PARTICLE_RECORDS:
        msg = f"particle record {record!r} not supported; use one of {PARTICLE_RECORDS}"
        raise NotImplementedError(msg)
    counts_all = ak.to_numpy(ak.num(prt, axis=1))
    offsets_all = np.concatenate([[0], np.cumsum(counts_all)[:-1]])
    flat = ak.flatten(prt)
    pid = ak.to_numpy(flat.id)
    status_py = ak.to_numpy(flat.status)
    d1_py = ak.to_numpy(flat.daughter1)

    # statusHepMC needs the daughter's status: gather through global indices.
    event_of = np.repeat(np.arange(len(counts_all)), counts_all)
    d1_global = offsets_all[event_of] + d1_py
    charge_all, visible_all, hadron = table.lookup(pid)
    decays = (
        (d1_py > 0)
        & (pid[d1_global] != pid)
        & (np.abs(status_py[d1_global]) >= _MIN_DECAY_STATUS)
        & (np.abs(status_py[d1_global]) <= _MAX_DECAY_STATUS)
    )
    decayed = (status_py < 0) & decays & (hadron | np.isin(np.abs(pid), (13, 15)))
    status = np.where(status_py < 0, -status_py, status_py).astype(np.int32)
    status = np.where(status_py > 0, 1, status)
    status = np.where(status_py == -12, 4, status)
    status = np.where(decayed, 2, status)
    status = np.where(status_py < -200, 0, status)
    # Hard-process particles that reached the final state untouched stay at 23 and
    # get a status-1 copy (see _append_final_copies).
    status = np.where(
        (status_py >= _MIN_HARD_STATUS) & (status_py <= _MAX_HARD_STATUS),
        status_py,
        status,
    )

    # Index fields first, on the whole record; the momenta, charges and the
    # kinematics only for the particles kept (``Source`` names their flat entry).
    fields = {
        "PID": pid,
        "Status": status,
        "M1": ak.to_numpy(flat.mother1) - 1,
        "M2": ak.to_numpy(flat.mother2) - 1,
        "D1": d1_py - 1,
        "D2": ak.to_numpy(flat.daughter2) - 1,
        "Source": np.arange(len(pid)),
    }
    hard_final = (status_py >= _MIN_HARD_STATUS) & (status_py <= _MAX_HARD_STATUS)
    fields, event_of, counts_all = _append_final_copies(
        fields, hard_final, event_of, counts_all
    )
    offsets_all = np.concatenate([[0], np.cumsum(counts_all)[:-1]])
    status, pid = fields["Status"], fields["PID"]
    local = np.arange(len(pid)) - offsets_all[event_of]
    keep = local > 0
    if record == "hard":
        keep &= (
            (status == 1)
            | (status == 4)
            | ((status >= 21) & (status <= 29))
            | np.isin(np.abs(pid), _HEAVY_PIDS)
        )
    counts = np.bincount(event_of[keep], minlength=len(counts_all))
    source = fields.pop("Source")[keep]
    kept = {name: values[keep] for name, values in fields.items()}
    if record == "hard":
        _remap_indices(kept, keep, offsets_all, event_of[keep])

    momentum = flat.p
    px = ak.to_numpy(momentum.px)[source]
    py = ak.to_numpy(momentum.py)[source]
    pz = ak.to_numpy(momentum.pz)[source]
    pt, eta, phi = _kinematics(px, py, pz)
    charge, visible = charge_all[source], visible_all[source]
    kept.update(
        {
            "Charge": charge,
            "Mass": ak.to_numpy(flat.m)[source],
            "E": ak.to_numpy(momentum.e)[source],
            "Px": px,
            "Py": py,
            "Pz": pz,
            "PT": pt,
            "Eta": eta,
            "Phi": phi,
        }
    )
    aux = {"Visible": ak.unflatten(visible, counts)}
    return ak.unflatten(ak.zip(kept), counts), aux


def _append_final_copies(fields, hard_final, event_of, counts_all):
    """Give each untouched final hard-process particle a status-1 copy.

    The original keeps its hard-process status (23) and ``D1 = D2 = copy``; the copy
    is appended at the end of its event with status 1 and ``M1 = M2 = original``,
    as Pythia itself appends recoil copies. Indices of all other particles are
    unchanged.

    Args:
        fields: flat Delphes fields over the unsliced record (system entry
            included, index fields already shifted by -1).
        hard_final: flat mask of the particles to copy.
        event_of: event index of each flat entry, ascending.
        counts_all: entries per event.

    Returns:
        tuple: (fields, event_of, counts_all) with the copies inserted.
    """
    originals = np.nonzero(hard_final)[0]
    if len(originals) == 0:
        return fields, event_of, counts_all
    copy_event = event_of[originals]
    rank = np.arange(len(originals)) - np.searchsorted(copy_event, copy_event)
    offsets = np.concatenate([[0], np.cumsum(counts_all)[:-1]])
    # Delphes index = Pythia index - 1; the copy gets Pythia index counts + rank.
    copy_index = counts_all[copy_event] + rank - 1
    original_index = originals - offsets[copy_event] - 1
    copies = {name: values[originals].copy() for name, values in fields.items()}
    copies["Status"][:] = 1
    copies["M1"] = original_index
    copies["M2"] = original_index
    copies["D1"][:] = -1
    copies["D2"][:] = -1
    fields["D1"] = fields["D1"].copy()
    fields["D2"] = fields["D2"].copy()
    fields["D1"][originals] = copy_index
    fields["D2"][originals] = copy_index
    # Scatter originals and copies to their places (no sort): an event's entries
    # move by the copies of the events before it, its copies follow its entries.
    n_copies = np.bincount(copy_event, minlength=len(counts_all))
    shift = np.concatenate([[0], np.cumsum(n_copies)[:-1]])
    to_original = np.arange(len(event_of)) + shift[event_of]
    to_copy = offsets[copy_event] + shift[copy_event] + counts_all[copy_event] + rank
    n_total = len(event_of) + len(originals)
    merged = {}
    copies["_event"] = copy_event
    for name, values in {**fields, "_event": event_of}.items():
        column = np.empty(n_total, dtype=np.result_type(values, copies[name]))
        column[to_original] = values
        column[to_copy] = copies[name]
        merged[name] = column
    return merged, merged.pop("_event"), counts_all + n_copies


def _remap_indices(kept, keep, offsets_all, event_kept):
    """Rewrite M1/M2/D1/D2 of the kept particles in place (-1 if the target is gone).

    Args:
        kept: flat fields of the kept particles (indices still address the unsliced
            record, already shifted by -1 for the system entry).
        keep: flat mask over the unsliced record.
        offsets_all: first flat entry of each event in the unsliced record.
        event_kept: event index of each kept particle.
    """
    new_global = np.cumsum(keep) - 1
    kept_before_event = np.concatenate([[0], np.cumsum(keep)])[offsets_all]
    # +1 undoes the system-entry shift to address the unsliced record.
    base = offsets_all[event_kept] + 1
    first_kept = kept_before_event[event_kept]
    for name in ("M1", "M2", "D1", "D2"):
        old = kept[name]
        valid = old >= 0
        safe = np.where(valid, base + old, 0)
        kept[name] = np.where(valid & keep[safe], new_global[safe] - first_kept, -1)
