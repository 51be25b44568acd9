"""Check Les Houches Event (LHE) files before they are showered.

``check_lhe`` reads the file once, plain or gzip-compressed (detected from the
content, not the suffix), and checks the structure Pythia relies on: a
``<LesHouchesEvents>`` root, an ``<init>`` block, and ``<event>`` blocks whose first
line holds ``NUP IDPRUP XWGTUP SCALUP AQEDUP AQCDUP`` followed by ``NUP`` particle
lines of 13 numbers (``IDUP ISTUP MOTHUP(2) ICOLUP(2) PUP(5) VTIMUP SPINUP``).
Lines after the particles (``#`` comments, ``<wgt>``, ``<rwgt>``, ``<mgrwgt>``,
``<scales>``) are allowed. It does not check physics content (momentum balance,
colour flow).
"""

import gzip
import logging
import zlib
from pathlib import Path

from cinnflow.errors import InputFileError
from cinnflow.io.formats import looks_like

__all__ = ["check_lhe", "check_lhe_head", "check_lhe_tail"]

logger = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
_N_EVENT_HEADER = 6
_N_PARTICLE_FIELDS = 13
# Only the start of the file is searched for the root tag.
_N_HEAD_LINES = 50
# ... and the end of a plain file for the closing tag.
_TAIL_BYTES = 4096


def _open_text(path):
    with path.open("rb") as handle:
        magic = handle.read(2)
    if magic == _GZIP_MAGIC:
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open("rt", encoding="utf-8", errors="replace")


def _numbers(line, count):
    fields = line.split()
    if len(fields) < count:
        return None
    try:
        return [float(x) for x in fields[:count]]
    except ValueError:
        return None


def _not_lhe(path):
    msg = (
        f"file {str(path)!r} is not an LHE file: no '<LesHouchesEvents' tag in "
        f"its first {_N_HEAD_LINES} lines{looks_like(path)}"
    )
    return InputFileError(msg)


def check_lhe_head(path):
    """Check the first lines of ``path`` for the LHE root tag (cheap, no events read).

    For the workflow to reject a file that is not LHE when it is parsed, before any
    job runs; ``check_lhe`` checks the whole file in the simulate job.

    Raises:
        InputFileError: missing, unreadable or not an LHE file.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"LHE file {str(path)!r} does not exist; expected a Les Houches file"
        raise InputFileError(msg)
    try:
        with _open_text(path) as lines:
            for lineno, line in enumerate(lines, start=1):
                if "<LesHouchesEvents" in line:
                    return
                if lineno >= _N_HEAD_LINES:
                    break
    except (OSError, EOFError, UnicodeError, zlib.error) as err:
        msg = (
            f"cannot read LHE file {str(path)!r}: {type(err).__name__}: {err}; "
            "expected a plain or gzip LHE file"
        )
        raise InputFileError(msg) from err
    raise _not_lhe(path)


def check_lhe_tail(path):
    """Check that a plain LHE file ends with ``</LesHouchesEvents>`` (cheap).

    Reads the last 4 KiB only: the workflow checks this when it is parsed, so that
    a file cut short is reported before any job runs (and before Snakemake removes
    the outputs that the simulate job would replace). A gzip file cannot be read
    from its end; ``check_lhe`` checks it whole in the simulate job.

    Raises:
        InputFileError: a plain file without the closing tag at its end.
    """
    path = Path(path)
    with path.open("rb") as handle:
        if handle.read(2) == _GZIP_MAGIC:
            return
        size = handle.seek(0, 2)
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
    if b"</LesHouchesEvents" not in tail:
        last = tail.rstrip().splitlines()[-1:] or [b""]
        msg = (
            f"LHE file {str(path)!r} is truncated: its last line is "
            f"{last[0].decode(errors='replace')[:80]!r}, expected the closing "
            "</LesHouchesEvents> tag at the end of the file"
        )
        raise InputFileError(msg)


def check_lhe(path) -> int:
    """Check that ``path`` is a well-formed LHE file.

    Args:
        path: ``.lhe`` or gzip-compressed ``.lhe.gz`` file.

    Returns:
        int: number of events in the file.

    Raises:
        InputFileError: missing file, not LHE (no ``<LesHouchesEvents`` tag, no
            ``<init>`` block, no events), truncated (no closing
            ``</LesHouchesEvents>``, or a gzip stream cut short), or a malformed
            ``<event>`` block; the message names the file, the event index (0-based)
            and the line number (1-based).
    """
    path = Path(path)
    if not path.is_file():
        msg = f"LHE file {str(path)!r} does not exist; expected a Les Houches file"
        raise InputFileError(msg)
    n_events = 0
    seen_root = seen_init = seen_end = False
    try:
        with _open_text(path) as lines:
            lineno = 0
            for line in lines:
                lineno += 1
                stripped = line.strip()
                if not seen_root:
                    if "<LesHouchesEvents" in stripped:
                        seen_root = True
                    elif lineno > _N_HEAD_LINES:
                        break
                    continue
                if stripped.startswith("</LesHouchesEvents"):
                    seen_end = True
                    break
                if stripped.startswith("<init"):
                    seen_init = True
                elif stripped.startswith("<event"):
                    lineno = _check_event(path, lines, lineno, n_events)
                    n_events += 1
    except (OSError, EOFError, UnicodeError, zlib.error) as err:
        msg = (
            f"cannot read LHE file {str(path)!r}: {type(err).__name__}: {err}; the "
            "file may be truncated or its gzip stream corrupt, expected a complete "
            "plain or gzip LHE file"
        )
        raise InputFileError(msg) from err
    if not seen_root:
        raise _not_lhe(path)
    if not seen_init:
        msg = f"LHE file {str(path)!r} has no <init> block; expected one before events"
        raise InputFileError(msg)
    if n_events == 0:
        msg = f"LHE file {str(path)!r} holds no <event> blocks; expected at least one"
        raise InputFileError(msg)
    if not seen_end:
        msg = (
            f"LHE file {str(path)!r} is truncated: it ends after {n_events} complete "
            "events without the closing </LesHouchesEvents> tag"
        )
        raise InputFileError(msg)
    logger.info("LHE file %s: %d events, structure ok", path, n_events)
    return n_events


def _check_event(path, lines, lineno, index):
    """Consume one event block after its ``<event>`` line; return the last line no."""

    def fail(what, line_number, line):
        if not line:  # next() hit the end of the file
            what = "file ends inside an event block (truncated?)"
        msg = (
            f"LHE file {str(path)!r}, event {index} (line {line_number}): {what}; "
            f"line is {line.rstrip()[:80]!r}"
        )
        raise InputFileError(msg)

    line = next(lines, "")
    lineno += 1
    header = _numbers(line, _N_EVENT_HEADER)
    if header is None:
        fail("expected 'NUP IDPRUP XWGTUP SCALUP AQEDUP AQCDUP'", lineno, line)
    n_particles = int(header[0])
    if n_particles < 1 or header[0] != n_particles:
        fail(f"NUP must be a positive integer, got {header[0]!r}", lineno, line)
    for _ in range(n_particles):
        line = next(lines, "")
        lineno += 1
        if _numbers(line, _N_PARTICLE_FIELDS) is None:
            fail(
                f"expected {_N_PARTICLE_FIELDS} numbers per particle line", lineno, line
            )
    for line in lines:
        lineno += 1
        stripped = line.strip()
        if stripped.startswith("</event"):
            return lineno
        if stripped.startswith("<event") or stripped.startswith("</LesHouches"):
            fail("event block not closed with </event>", lineno, line)
    fail("", lineno, "")
    return lineno
