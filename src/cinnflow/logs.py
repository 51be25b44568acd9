"""Logging set-up for the entry-point scripts (library modules never configure it)."""

import logging
import sys

from cinnflow.errors import CinnflowError

__all__ = ["setup_logging"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_file=None, level=logging.INFO):
    """Send log records to ``log_file`` and to stderr (the terminal).

    Args:
        log_file: path of the rule's log file, or None for stderr only.
        level: logging level of the root logger.
    """
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=level, format=_FORMAT, handlers=handlers, force=True)
    # TensorFlow's checkpointing reports every shard at INFO through absl.
    logging.getLogger("absl").setLevel(logging.WARNING)
    sys.excepthook = _log_uncaught


def _log_uncaught(exc_type, exc, tb):
    """Write an exception that ends the script into the log file, not only stderr.

    A ``CinnflowError`` says what is wrong in its message, so only the message is
    logged; anything else is a bug and keeps its traceback. The exit status stays 1.
    """
    logger = logging.getLogger("cinnflow")
    if issubclass(exc_type, CinnflowError):
        logger.error("%s: %s", exc_type.__name__, exc)
    else:
        logger.critical("uncaught exception", exc_info=(exc_type, exc, tb))
