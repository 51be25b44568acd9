"""Posterior sampling of parton-level events from a trained conditional INN."""

from cinnflow.sampling.posterior import sample_posterior

__all__ = ["sample_posterior"]
