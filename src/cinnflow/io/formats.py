"""Recognise event-file formats from their first bytes, for clearer errors.

cinnflow reads Delphes-schema ROOT files and showers LHE files. When a file of
another kind arrives (HepMC, a gzip archive, an LHE file given as ROOT input),
``foreign_format`` names what it looks like, so that the error can say what to do.
"""

import zlib

__all__ = ["foreign_format", "looks_like", "sniff"]

# Enough to see the HepMC version line or the LHE root tag after a short header.
_N_HEAD_BYTES = 4096
_GZIP_MAGIC = b"\x1f\x8b"


def sniff(path):
    """Return the first bytes of ``path``, decompressed if it is gzip."""
    with open(path, "rb") as handle:
        head = handle.read(_N_HEAD_BYTES)
    if head[:2] == _GZIP_MAGIC:
        try:
            return b"gzip:" + zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head)
        except zlib.error:
            return b"gzip:"
    return head


def foreign_format(path):
    """Describe a file that is neither ROOT nor LHE, or return None.

    Args:
        path: an existing file.

    Returns:
        str or None: e.g. ``"a HepMC2 ASCII event file (HepMC::Version 2.06.09)"``
        with a hint on converting it, or None when the format is not recognised.
    """
    head = sniff(path)
    text = head.decode("latin-1")
    if "HepMC::Version" in text or "HepMC::Asciiv3" in text:
        version = text.split("HepMC::Version", 1)[-1].split()[:1]
        where = f" (HepMC::Version {version[0]})" if version else ""
        return (
            f"a HepMC event file{where}; HepMC is not a supported input: run it "
            "through Delphes (DelphesHepMC2/DelphesHepMC3) and give the ROOT file "
            "as preparation.inputs, or shower the LHE file it came from"
        )
    if "<LesHouchesEvents" in text:
        return "an LHE file; give it as events.lhe_file with events.source: lhe"
    if text.startswith("root"):
        return "a ROOT file; give it as preparation.inputs"
    if head.startswith(b"gzip:"):
        return "gzip-compressed data of an unknown format"
    return None


def looks_like(path):
    """``"; it looks like <format>"`` for an error message, or ``""``."""
    found = foreign_format(path)
    return f"; it looks like {found}" if found else ""
