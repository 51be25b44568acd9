"""Capture what C++ libraries (Pythia, FastJet) print on file descriptor 1."""

import contextlib
import ctypes
import logging
import os
import re
import sys
import tempfile

__all__ = ["captured_stdout"]

_LIBC = ctypes.CDLL(None)
# Lines that deserve a WARNING in the log; all other captured lines go to DEBUG.
_ALARM = re.compile(r"PYTHIA (Error|Abort) (in|from)|\bERROR\b")


def _flush():
    sys.stdout.flush()
    _LIBC.fflush(None)


@contextlib.contextmanager
def captured_stdout(logger, label):
    """Redirect fd 1 to a temporary file and forward its text to ``logger``.

    Args:
        logger: logger that receives the captured lines.
        label: short prefix naming the call (e.g. ``"pythia init"``).

    Yields:
        list: filled with the captured lines when the block exits.
    """
    lines = []
    _flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            yield lines
        finally:
            _flush()
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            lines.extend(line for line in text.splitlines() if line.strip())
            for line in lines:
                level = logging.DEBUG
                if _ALARM.search(line):
                    level = logging.WARNING
                logger.log(level, "%s: %s", label, line)
