"""Exceptions raised by cinnflow.

Every message names where the problem is (file, tree, branch or config key), the
value seen and what was expected.
"""

__all__ = [
    "CinnflowError",
    "ConfigError",
    "InputFileError",
    "TrainingError",
    "TrainingInterrupted",
]


class CinnflowError(Exception):
    """Base class of all cinnflow errors."""


class ConfigError(CinnflowError):
    """A configuration value is missing, misspelt, of the wrong type or out of range."""


class InputFileError(CinnflowError):
    """An event file is missing, unreadable, truncated or lacks a tree or branch."""


class TrainingError(CinnflowError):
    """Training cannot go on, for example because the loss became NaN or infinite."""


class TrainingInterrupted(TrainingError):
    """Training stopped on SIGTERM or SIGINT; the last checkpoint is kept for resume."""
