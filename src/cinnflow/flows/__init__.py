"""Conditional invertible networks for p(x_parton | c_detector).

Direction convention (TFP): ``forward`` maps the latent ``z`` to parton level
``x_parton`` and is used for sampling; density evaluation uses ``inverse``.
"""

from cinnflow.flows.model import MODEL_CONFIG_KEYS, ConditionalINN

__all__ = ["MODEL_CONFIG_KEYS", "ConditionalINN"]
