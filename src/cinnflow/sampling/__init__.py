"""Posterior sampling of parton-level events from a trained conditional INN."""

from cinnflow.sampling.ensemble import member_seed, sample_ensemble
from cinnflow.sampling.posterior import sample_posterior

__all__ = ["member_seed", "sample_ensemble", "sample_posterior"]
