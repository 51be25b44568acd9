"""Physics sanity plots of the simulated (or user) events at detector level."""

import logging
from pathlib import Path

import awkward as ak
import hist
import mplhep
import numpy as np
import vector

from cinnflow.io.atomic import atomic_path
from cinnflow.io.delphes import read_delphes
from cinnflow.plotting.style import add_label, new_figure, save_figure, style_context

__all__ = ["event_sanity_histograms", "plot_event_sanity"]

logger = logging.getLogger(__name__)

_COLLECTIONS = {
    "Jet": ["PT", "Eta", "Phi", "Mass"],
    "Electron": ["PT", "Eta", "Phi"],
    "Muon": ["PT", "Eta", "Phi"],
}

#: name -> (axis label, bins, low, high)
_AXES = {
    "m_jj": (r"$m_{jj}$ [GeV] (two leading jets)", 60, 20.0, 200.0),
    "m_ll": (
        r"$m_{\ell\ell}$ [GeV] (two leading same-flavour leptons)",
        60,
        60.0,
        120.0,
    ),
    "n_jets": ("jet multiplicity", 8, -0.5, 7.5),
    "jet_pt": (r"jet $p_T$ [GeV]", 50, 0.0, 250.0),
    "lepton_pt": (r"lepton $p_T$ [GeV]", 50, 0.0, 250.0),
}


def _pair_mass(objects, mass):
    two = objects[ak.num(objects) >= 2][:, :2]
    vectors = vector.zip(
        {"pt": two.PT, "eta": two.Eta, "phi": two.Phi, "mass": mass(two)}
    )
    return ak.to_numpy((vectors[:, 0] + vectors[:, 1]).mass)


def event_sanity_histograms(paths):
    """Fill the sanity histograms from Delphes-schema files.

    Args:
        paths: event files; only the Jet, Electron and Muon branches are read.

    Returns:
        dict: name -> ``hist.Hist`` for m_jj, m_ll, n_jets, jet_pt, lepton_pt.
    """
    histograms = {
        name: hist.Hist(hist.axis.Regular(bins, low, high, name=name, label=label))
        for name, (label, bins, low, high) in _AXES.items()
    }
    for path in paths:
        events = read_delphes(
            path, collections=_COLLECTIONS, optional=("Electron", "Muon")
        )
        jets = events["Jet"]
        histograms["m_jj"].fill(_pair_mass(jets, lambda objects: objects.Mass))
        histograms["n_jets"].fill(ak.to_numpy(ak.num(jets)))
        histograms["jet_pt"].fill(ak.to_numpy(ak.flatten(jets.PT)))
        for collection in ("Electron", "Muon"):
            leptons = events[collection]
            histograms["m_ll"].fill(
                _pair_mass(leptons, lambda objects: ak.zeros_like(objects.PT))
            )
            histograms["lepton_pt"].fill(ak.to_numpy(ak.flatten(leptons.PT)))
        logger.info("sanity histograms: read %d events from %s", len(jets), path)
    return histograms


def plot_event_sanity(paths, *, plots_dir):
    """Write one PNG per sanity histogram into ``plots_dir`` (created atomically)."""
    histograms = event_sanity_histograms(paths)
    with atomic_path(plots_dir) as tmp:
        Path(tmp).mkdir()
        for name, histogram in histograms.items():
            with style_context():
                fig, axes = new_figure()
                ax = axes[0, 0]
                mplhep.histplot(histogram, ax=ax, yerr=np.sqrt(histogram.values()))
                ax.set_ylabel("events")
                add_label(ax)
            save_figure(fig, Path(tmp) / f"{name}.png")
