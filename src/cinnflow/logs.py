"""Logging set-up for the entry-point scripts (library modules never configure it)."""

import logging
import sys

from cinnflow.errors import CinnflowError

__all__ = ["setup_logging"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_file=None, level=logging.INFO):
    """Send log records to ``log_file`` and to stderr (the terminal).

    The terminal gets records at ``level`` and above. The log file gets the same
    plus cinnflow's DEBUG records, among them the text Pythia and FastJet print
    (banner, settings tables, statistics; see ``cinnflow.events._capture``), so
    that it lands in the rule's log and not on the terminal.

    Args:
        log_file: path of the rule's log file, or None for stderr only.
        level: logging level of the terminal and of the other libraries.
    """
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setLevel(level)
    handlers = [terminal]
    if log_file:
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=level, format=_FORMAT, handlers=handlers, force=True)
    logging.getLogger("cinnflow").setLevel(logging.DEBUG if log_file else level)
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
