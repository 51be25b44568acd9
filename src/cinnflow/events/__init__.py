"""Event chain: Pythia 8, jets, parametrised detector, Delphes-schema files."""

from cinnflow.events.detector import Detector
from cinnflow.events.generate import merge, simulate

__all__ = ["Detector", "merge", "simulate"]
