"""Physics content: parton-level observables and posterior files."""

from cinnflow.physics.observables import (
    DEFAULT_DEFINITIONS,
    DERIVED_KINDS,
    all_observables,
    derived_observables,
    observable_kinds,
    observable_label,
    observable_unit,
    validate_definitions,
)
from cinnflow.physics.posterior import Posterior, load_posterior

__all__ = [
    "DEFAULT_DEFINITIONS",
    "DERIVED_KINDS",
    "Posterior",
    "all_observables",
    "derived_observables",
    "load_posterior",
    "observable_kinds",
    "observable_label",
    "observable_unit",
    "validate_definitions",
]
