"""cinnflow: invert the LHC simulation chain with conditional invertible networks."""

__version__ = "0.1.0"
