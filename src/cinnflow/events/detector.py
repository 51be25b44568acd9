"""A parametrised detector in the spirit of Delphes' ATLAS card.

The detector turns the particle record of each event (Delphes ``Particle`` fields)
into reconstructed electrons, muons and jets. Every number comes from a card such
as ``config/detector/atlas.yaml``; the formulas are (E energy, pt transverse
momentum in GeV, eta pseudorapidity; each formula is piecewise in ``|eta|``, the
first bin with ``|eta| <= eta_max`` applies):

* lepton candidates: final-state (``Status == 1``) electrons and muons;
* electron energy resolution (Gaussian):
  ``sigma_E = sqrt(constant^2 E^2 + stochastic^2 E + noise_gev^2)``; the smeared pt
  is ``pt * E' / E`` (eta, phi unchanged);
* muon pt resolution (Gaussian): ``sigma_pt / pt = sqrt(constant^2 +
  (slope_per_gev pt)^2)``;
* lepton direction resolution (Gaussian, tracker): ``eta' = eta + sigma_eta N``,
  ``phi' = phi + sigma_phi N`` (wrapped), ``sigma`` from ``angular_resolution``;
* lepton efficiency x acceptance: ``value`` of the eta bin if the smeared
  ``pt > pt_min_gev``, 0 below and beyond the last bin;
* lepton isolation: ``sum pt(visible final-state particles, pt > pt_min_gev,
  Delta R < delta_r_max, lepton excluded) / pt_lepton < pt_ratio_max``;
* jets: anti-kT on visible final-state particles with ``|eta| <
  calorimeter.eta_max``, excluding the particles reconstructed as isolated
  leptons (clustering is done by the caller, see ``jet_input_mask``); then
  energy resolution (Gaussian on E, the whole four-vector is scaled):
  ``sigma_E / E = sqrt(stochastic^2 / E + constant^2 + noise_gev^2 / E^2)``;
  then energy scale ``s = sqrt((offset_gev - slope_eta |eta|)^2 / pt + 1)`` on pt
  and mass; then the jet pt and eta cuts; then overlap removal (jets within
  ``lepton_overlap_delta_r`` of an isolated lepton are dropped);
* b tagging: flavour b (c) if a b (c) quark with ``pt > parton_pt_min_gev`` lies
  within ``delta_r_max`` of the jet axis, tagged with ``efficiency_b`` (``_c``,
  ``_light``).

Limits: no calorimeter towers, tracks, pile-up, photons, taus or missing ET; the
resolutions are Gaussian (Delphes 3.5 uses log-normal for some energies) and jets
whose smeared energy would be negative are dropped.

All randomness comes from the ``numpy.random.Generator`` passed in.
"""

import logging
from collections.abc import Mapping
from pathlib import Path

import awkward as ak
import numpy as np
import yaml

from cinnflow.errors import ConfigError

__all__ = ["Detector", "delta_r", "same_event_pairs"]

logger = logging.getLogger(__name__)

_LEPTONS = {"electron": 11, "muon": 13}


def delta_r(eta1, phi1, eta2, phi2):
    """Return Delta R = sqrt(Delta eta^2 + Delta phi^2), Delta phi wrapped."""
    dphi = np.mod(phi1 - phi2 + np.pi, 2 * np.pi) - np.pi
    return np.hypot(eta1 - eta2, dphi)


def same_event_pairs(event_a, event_b):
    """All index pairs (i, j) with ``event_a[i] == event_b[j]``.

    Args:
        event_a: event index of each object of kind a, sorted ascending.
        event_b: event index of each object of kind b, sorted ascending.

    Returns:
        tuple: (i, j) int64 arrays of equal length.
    """
    start = np.searchsorted(event_b, event_a, side="left")
    stop = np.searchsorted(event_b, event_a, side="right")
    counts = stop - start
    i = np.repeat(np.arange(len(event_a)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    j = np.arange(counts.sum()) - first + np.repeat(start, counts)
    return i, j


def _get(card, dotted, kind=(int, float)):
    value = card
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            msg = f"detector card lacks key {dotted!r} (missing {part!r})"
            raise ConfigError(msg)
        value = value[part]
    if kind is not None and not isinstance(value, kind):
        msg = f"detector card key {dotted!r} is {value!r}; expected {kind}"
        raise ConfigError(msg)
    return value


def _bins(card, dotted, keys):
    bins = _get(card, dotted, kind=list)
    if not bins:
        msg = f"detector card key {dotted!r} is an empty list; expected eta bins"
        raise ConfigError(msg)
    edges = []
    for row in bins:
        for key in ("eta_max", *keys):
            _get(row, key)
        edges.append(float(row["eta_max"]))
    if np.any(np.diff(edges) <= 0):
        msg = f"detector card {dotted!r}: eta_max values {edges} must increase"
        raise ConfigError(msg)
    table = np.array([[row[k] for k in keys] for row in bins], dtype=float)
    return np.asarray(edges), table


def _lookup(edges, table, eta):
    """Row of ``table`` for each |eta| and a mask of |eta| inside the last edge."""
    index = np.searchsorted(edges, np.abs(eta), side="left")
    inside = index < len(edges)
    return table[np.minimum(index, len(edges) - 1)], inside


class Detector:
    """Detector response from a card (mapping), see the module docstring.

    Args:
        card: parsed detector card (``config/detector/atlas.yaml`` layout).

    Raises:
        ConfigError: missing or ill-typed card keys.
    """

    def __init__(self, card):
        self.card = card
        self.calorimeter_eta_max = float(_get(card, "calorimeter.eta_max"))
        self._lepton = {}
        for flavour in _LEPTONS:
            eff_edges, eff = _bins(card, f"{flavour}.efficiency", ("value",))
            if flavour == "electron":
                res = _bins(
                    card,
                    "electron.energy_resolution",
                    ("constant", "stochastic", "noise_gev"),
                )
            else:
                res = _bins(card, "muon.pt_resolution", ("constant", "slope_per_gev"))
            iso = {
                k: float(_get(card, f"{flavour}.isolation.{k}"))
                for k in ("delta_r_max", "pt_min_gev", "pt_ratio_max")
            }
            angular = {
                k: float(_get(card, f"{flavour}.angular_resolution.{k}"))
                for k in ("eta", "phi")
            }
            for key, value in angular.items():
                if value < 0:
                    msg = (
                        f"detector card key {flavour}.angular_resolution.{key} is "
                        f"{value!r}; expected a resolution >= 0"
                    )
                    raise ConfigError(msg)
            self._lepton[flavour] = {
                "pt_min": float(_get(card, f"{flavour}.pt_min_gev")),
                "efficiency": (eff_edges, eff[:, 0]),
                "resolution": res,
                "angular": angular,
                "isolation": iso,
            }
        self._jet_resolution = _bins(
            card, "jet.energy_resolution", ("constant", "stochastic", "noise_gev")
        )
        self._jes = (
            float(_get(card, "jet.energy_scale.offset_gev")),
            float(_get(card, "jet.energy_scale.slope_eta")),
        )
        self._overlap_dr = float(_get(card, "jet.lepton_overlap_delta_r"))
        self._btag = {
            k: float(_get(card, f"jet.btag.{k}"))
            for k in (
                "delta_r_max",
                "parton_pt_min_gev",
                "efficiency_b",
                "efficiency_c",
                "efficiency_light",
            )
        }

    @classmethod
    def from_yaml(cls, path):
        """Build a Detector from a YAML card file."""
        path = Path(path)
        if not path.is_file():
            msg = f"detector card {str(path)!r} does not exist"
            raise ConfigError(msg)
        with path.open() as handle:
            card = yaml.safe_load(handle)
        if not isinstance(card, Mapping):
            kind = type(card).__name__
            msg = f"detector card {str(path)!r} holds {kind}; expected a mapping"
            raise ConfigError(msg)
        return cls(card)

    @classmethod
    def coerce(cls, card):
        """Return ``card`` if a Detector, else build one from a path or mapping."""
        if isinstance(card, cls):
            return card
        if isinstance(card, Mapping):
            return cls(card)
        return cls.from_yaml(card)

    # ------------------------------------------------------------ formulas

    def efficiency(self, flavour, pt, eta):
        """Efficiency x acceptance of ``flavour`` ('electron'/'muon') leptons."""
        cfg = self._lepton[flavour]
        edges, values = cfg["efficiency"]
        value, inside = _lookup(edges, values, eta)
        return np.where(inside & (pt > cfg["pt_min"]), value, 0.0)

    def electron_energy_sigma(self, energy, eta):
        """Absolute electron energy resolution sigma_E in GeV (0 outside bins)."""
        edges, table = self._lepton["electron"]["resolution"]
        row, inside = _lookup(edges, table, eta)
        c, s, n = row[:, 0], row[:, 1], row[:, 2]
        sigma = np.sqrt(c**2 * energy**2 + s**2 * energy + n**2)
        return np.where(inside, sigma, 0.0)

    def muon_pt_relative_sigma(self, pt, eta):
        """Relative muon pt resolution sigma_pt / pt (0 outside bins)."""
        edges, table = self._lepton["muon"]["resolution"]
        row, inside = _lookup(edges, table, eta)
        sigma = np.sqrt(row[:, 0] ** 2 + (row[:, 1] * pt) ** 2)
        return np.where(inside, sigma, 0.0)

    def jet_energy_relative_sigma(self, energy, eta):
        """Relative jet energy resolution sigma_E / E (0 outside bins)."""
        edges, table = self._jet_resolution
        row, inside = _lookup(edges, table, eta)
        c, s, n = row[:, 0], row[:, 1], row[:, 2]
        energy = np.maximum(energy, 1e-9)
        sigma = np.sqrt(s**2 / energy + c**2 + n**2 / energy**2)
        return np.where(inside, sigma, 0.0)

    def jet_energy_scale(self, pt, eta):
        """Multiplicative jet energy scale applied to pt and mass."""
        offset, slope = self._jes
        return np.sqrt((offset - slope * np.abs(eta)) ** 2 / np.maximum(pt, 1e-9) + 1)

    # -------------------------------------------------------------- leptons

    def smear_leptons(self, flavour, pt, eta, energy, rng):
        """Return smeared pt (flat arrays) for ``flavour`` leptons."""
        noise = rng.standard_normal(len(pt))
        if flavour == "electron":
            sigma = self.electron_energy_sigma(energy, eta)
            factor = 1 + noise * sigma / np.maximum(energy, 1e-9)
        else:
            factor = 1 + noise * self.muon_pt_relative_sigma(pt, eta)
        return pt * np.maximum(factor, 0.0)

    def smear_directions(self, flavour, eta, phi, rng):
        """Return smeared (eta, phi) (flat arrays) for ``flavour`` leptons."""
        sigma = self._lepton[flavour]["angular"]
        eta = eta + sigma["eta"] * rng.standard_normal(len(eta))
        phi = phi + sigma["phi"] * rng.standard_normal(len(phi))
        return eta, np.mod(phi + np.pi, 2 * np.pi) - np.pi

    def leptons(self, particles, rng):
        """Reconstruct isolated electrons and muons.

        Args:
            particles: jagged records with PID, Status, PT, Eta, Phi, E, Charge and
                a boolean ``Visible`` field.
            rng: numpy Generator.

        Returns:
            tuple: (electrons, muons, used) where electrons and muons are jagged
            records (PT, Eta, Phi, Charge) sorted by decreasing PT, and ``used`` a
            jagged boolean mask over ``particles`` of the particles that became
            isolated leptons.
        """
        counts = ak.to_numpy(ak.num(particles, axis=1))
        n_events = len(counts)
        event = np.repeat(np.arange(n_events), counts)
        flat = {
            k: ak.to_numpy(ak.flatten(particles[k]))
            for k in ("PID", "Status", "PT", "Eta", "Phi", "E", "Charge", "Visible")
        }
        final = flat["Status"] == 1
        used = np.zeros(len(event), dtype=bool)
        out = {}
        for flavour, pid in _LEPTONS.items():
            cand = np.nonzero(final & (np.abs(flat["PID"]) == pid))[0]
            pt = self.smear_leptons(
                flavour, flat["PT"][cand], flat["Eta"][cand], flat["E"][cand], rng
            )
            eta, phi = self.smear_directions(
                flavour, flat["Eta"][cand], flat["Phi"][cand], rng
            )
            eff = self.efficiency(flavour, pt, eta)
            passed = rng.random(len(cand)) < eff
            cand, pt, eta, phi = cand[passed], pt[passed], eta[passed], phi[passed]
            isolated = self._isolated(flavour, cand, pt, flat, event, final)
            cand, pt = cand[isolated], pt[isolated]
            eta, phi = eta[isolated], phi[isolated]
            order = np.lexsort((-pt, event[cand]))
            cand, pt, eta, phi = cand[order], pt[order], eta[order], phi[order]
            used[cand] = True
            out[flavour] = _collection(
                event[cand],
                n_events,
                {
                    "PT": pt.astype(np.float32),
                    "Eta": eta.astype(np.float32),
                    "Phi": phi.astype(np.float32),
                    "Charge": flat["Charge"][cand].astype(np.int32),
                },
            )
        return out["electron"], out["muon"], ak.unflatten(used, counts)

    def _isolated(self, flavour, cand, pt, flat, event, final):
        iso = self._lepton[flavour]["isolation"]
        others = np.nonzero(final & flat["Visible"] & (flat["PT"] > iso["pt_min_gev"]))[
            0
        ]
        i, j = same_event_pairs(event[cand], event[others])
        lep, oth = cand[i], others[j]
        dr = delta_r(
            flat["Eta"][lep], flat["Phi"][lep], flat["Eta"][oth], flat["Phi"][oth]
        )
        near = (dr < iso["delta_r_max"]) & (lep != oth)
        cone = np.bincount(i[near], weights=flat["PT"][oth][near], minlength=len(cand))
        return cone < iso["pt_ratio_max"] * pt

    # ----------------------------------------------------------------- jets

    def jet_input_mask(self, particles, used):
        """Jagged mask of particles that enter jet clustering.

        Visible final-state particles within the calorimeter acceptance, minus the
        particles reconstructed as isolated leptons (``used``).
        """
        return (
            (particles.Status == 1)
            & particles.Visible
            & (abs(particles.Eta) < self.calorimeter_eta_max)
            & ~used
        )

    def jets(self, jets_p4, electrons, muons, particles, rng, *, pt_min_gev, eta_max):
        """Smear, calibrate, select and b-tag clustered jets.

        Args:
            jets_p4: jagged records px, py, pz, E (GeV) from the jet clustering.
            electrons: isolated electrons (``leptons`` output).
            muons: isolated muons.
            particles: the Particle records (for b/c quarks).
            rng: numpy Generator.
            pt_min_gev: minimum smeared and calibrated jet pt.
            eta_max: maximum jet |eta|.

        Returns:
            ak.Array: jagged Jet records (PT, Eta, Phi, Mass, BTag), by decreasing PT.
        """
        counts = ak.to_numpy(ak.num(jets_p4, axis=1))
        n_events = len(counts)
        event = np.repeat(np.arange(n_events), counts)
        px, py, pz, energy = (
            ak.to_numpy(ak.flatten(jets_p4[k])).astype(np.float64)
            for k in ("px", "py", "pz", "E")
        )
        pt = np.hypot(px, py)
        eta = np.arcsinh(pz / np.maximum(pt, 1e-9))
        phi = np.arctan2(py, px)
        phi = np.where(phi >= np.pi, phi - 2 * np.pi, phi)
        mass = np.sqrt(np.maximum(energy**2 - px**2 - py**2 - pz**2, 0.0))

        sigma = self.jet_energy_relative_sigma(energy, eta)
        factor = 1 + sigma * rng.standard_normal(len(pt))
        positive = factor > 0
        factor = np.where(positive, factor, 0.0)
        pt, mass = pt * factor, mass * factor
        scale = self.jet_energy_scale(pt, eta)
        pt, mass = pt * scale, mass * scale

        keep = positive & (pt > pt_min_gev) & (np.abs(eta) < eta_max)
        keep &= ~self._near_leptons(event, eta, phi, electrons, muons)
        flavour = self._flavour(event, eta, phi, particles)
        eff = np.select(
            [flavour == 5, flavour == 4],
            [self._btag["efficiency_b"], self._btag["efficiency_c"]],
            self._btag["efficiency_light"],
        )
        btag = (rng.random(len(pt)) < eff).astype(np.int32)

        idx = np.nonzero(keep)[0]
        idx = idx[np.lexsort((-pt[idx], event[idx]))]
        return _collection(
            event[idx],
            n_events,
            {
                "PT": pt[idx].astype(np.float32),
                "Eta": eta[idx].astype(np.float32),
                "Phi": phi[idx].astype(np.float32),
                "Mass": mass[idx].astype(np.float32),
                "BTag": btag[idx],
            },
        )

    def _near_leptons(self, event, eta, phi, electrons, muons):
        near = np.zeros(len(event), dtype=bool)
        for leptons in (electrons, muons):
            lep_event = np.repeat(np.arange(len(leptons)), ak.to_numpy(ak.num(leptons)))
            i, j = same_event_pairs(event, lep_event)
            lep_eta = ak.to_numpy(ak.flatten(leptons.Eta))[j]
            lep_phi = ak.to_numpy(ak.flatten(leptons.Phi))[j]
            close = delta_r(eta[i], phi[i], lep_eta, lep_phi) < self._overlap_dr
            near[i[close]] = True
        return near

    def _flavour(self, event, eta, phi, particles):
        cfg = self._btag
        heavy = (abs(particles.PID) >= 4) & (abs(particles.PID) <= 5)
        heavy = heavy & (particles.PT > cfg["parton_pt_min_gev"])
        quarks = particles[heavy]
        q_event = np.repeat(np.arange(len(quarks)), ak.to_numpy(ak.num(quarks)))
        i, j = same_event_pairs(event, q_event)
        q_eta = ak.to_numpy(ak.flatten(quarks.Eta))[j]
        q_phi = ak.to_numpy(ak.flatten(quarks.Phi))[j]
        q_pid = np.abs(ak.to_numpy(ak.flatten(quarks.PID)))[j]
        close = delta_r(eta[i], phi[i], q_eta, q_phi) < cfg["delta_r_max"]
        flavour = np.zeros(len(event), dtype=np.int64)
        np.maximum.at(flavour, i[close], q_pid[close])
        return flavour


def _collection(event, n_events, fields):
    """Jagged records from flat ``fields`` whose objects belong to sorted ``event``."""
    counts = np.bincount(event, minlength=n_events)
    return ak.unflatten(ak.zip(fields), counts) if len(fields) else None
