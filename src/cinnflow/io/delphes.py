"""Read and write ROOT files in the Delphes tree schema.

The tree (``Delphes`` by default) holds one entry per event. Each collection
(``Jet``, ``Electron``, ``Muon``, ``Particle``, ``Event`` ...) is a variable-length
list of objects per event, stored as a counter branch ``<Collection>_size`` and one
branch per field, ``<Collection>.<Field>`` (``Jet.PT``, ``Particle.M1``). Real
Delphes files nest the field branches under a split ``TClonesArray`` branch
(``Jet/Jet.PT``); files written here keep them at the top level, as uproot writes
jagged records. The reader accepts both layouts.

Limits: the reader only reads the branches that are asked for (real files hold
``fBits`` leaves that uproot cannot deserialise), and when two top-level branches
share a name (seen in a real Delphes 3.4 file with two ``Particle`` branches) the
first one wins, as with uproot's ``tree["Particle"]``.
"""

import difflib
import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from cinnflow.errors import CinnflowError, InputFileError
from cinnflow.io.atomic import atomic_path
from cinnflow.io.formats import looks_like

__all__ = [
    "SCHEMA",
    "DelphesWriter",
    "check_delphes_schema",
    "read_all_collections",
    "read_delphes",
    "write_delphes",
]

logger = logging.getLogger(__name__)

# Field types written for each collection (Delphes uses Int_t and Float_t leaves;
# Event.Number is Long64_t).
SCHEMA = {
    "Event": {"Number": np.int64},
    "Particle": {
        "PID": np.int32,
        "Status": np.int32,
        "M1": np.int32,
        "M2": np.int32,
        "D1": np.int32,
        "D2": np.int32,
        "Charge": np.int32,
        "Mass": np.float32,
        "E": np.float32,
        "Px": np.float32,
        "Py": np.float32,
        "Pz": np.float32,
        "PT": np.float32,
        "Eta": np.float32,
        "Phi": np.float32,
    },
    "Electron": {
        "PT": np.float32,
        "Eta": np.float32,
        "Phi": np.float32,
        "Charge": np.int32,
    },
    "Muon": {
        "PT": np.float32,
        "Eta": np.float32,
        "Phi": np.float32,
        "Charge": np.int32,
    },
    "Jet": {
        "PT": np.float32,
        "Eta": np.float32,
        "Phi": np.float32,
        "Mass": np.float32,
        "BTag": np.int32,
    },
}

_N_NEAREST = 5
# LZ4 writes about 4x faster than uproot's default ZLIB(1) for a 15% larger file,
# and ROOT and uproot both read it.
COMPRESSION = uproot.LZ4(1)


def _counter_name(collection):
    return f"{collection}_size"


def _field_name(collection, field):
    return f"{collection}.{field}"


def _cast(collection, records):
    """Return ``records`` with exactly the SCHEMA fields of ``collection``, typed."""
    fields = SCHEMA[collection]
    missing = sorted(set(fields) - set(ak.fields(records)))
    if missing:
        msg = (
            f"collection {collection!r} to write lacks fields {missing}; "
            f"expected fields {list(fields)}"
        )
        raise ValueError(msg)
    return ak.zip(
        {name: ak.values_astype(records[name], dtype) for name, dtype in fields.items()}
    )


class DelphesWriter:
    """Append events, chunk by chunk, to a ROOT file in the Delphes tree schema.

    Use as a context manager; the file is written under a temporary name and moved
    onto ``path`` only when the block exits without an exception.

    Args:
        path: output ROOT file.
        tree: name of the tree.

    Examples:
        >>> with DelphesWriter("events.root") as writer:  # doctest: +SKIP
        ...     writer.write({"Event": event, "Jet": jets, "Particle": particles})
    """

    def __init__(self, path, *, tree="Delphes"):
        self.path = Path(path)
        self.tree_name = tree
        self.n_events = 0
        self._atomic = None
        self._file = None
        self._tree = None
        self._collections = None

    def __enter__(self):
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._file = uproot.recreate(tmp, compression=COMPRESSION)
        return self

    def __exit__(self, exc_type, exc, tb):
        self._file.close()
        if exc_type is None and self._tree is None:
            msg = f"no events were written to {self.path}; refusing to create it"
            exc = CinnflowError(msg)
            self._atomic.__exit__(CinnflowError, exc, None)
            raise exc
        return self._atomic.__exit__(exc_type, exc, tb)

    def write(self, collections: Mapping[str, ak.Array]) -> None:
        """Append one chunk of events.

        Args:
            collections: collection name (a key of ``SCHEMA``) -> jagged record
                array (n_events, var) with at least the schema fields. Every chunk
                must hold the same collections.
        """
        data = {name: _cast(name, arr) for name, arr in collections.items()}
        lengths = {name: len(arr) for name, arr in data.items()}
        if len(set(lengths.values())) != 1:
            msg = f"collections differ in number of events: {lengths}"
            raise ValueError(msg)
        if self._tree is None:
            self._collections = sorted(data)
            self._tree = self._file.mktree(
                self.tree_name,
                {name: arr.type.content for name, arr in data.items()},
                counter_name=_counter_name,
                field_name=_field_name,
            )
        elif sorted(data) != self._collections:
            msg = (
                f"chunk holds collections {sorted(data)}, "
                f"expected {self._collections} as in the first chunk"
            )
            raise ValueError(msg)
        self._tree.extend(data)
        self.n_events += next(iter(lengths.values()))


def write_delphes(path, collections, *, tree="Delphes"):
    """Write one chunk of events to ``path`` atomically (see ``DelphesWriter``)."""
    with DelphesWriter(path, tree=tree) as writer:
        writer.write(collections)


# --------------------------------------------------------------------- reading


def check_root_header(path):
    """Raise InputFileError if ``path`` is missing, not ROOT, or shorter than fEND.

    Reads 25 bytes: cheap enough for the workflow to check the user's files when
    it is parsed, before any job runs.
    """
    path = Path(path)
    if not path.exists():
        msg = f"event file {str(path)!r} does not exist; expected a ROOT file"
        raise InputFileError(msg)
    if not path.is_file():
        msg = f"event file {str(path)!r} is not a regular file; expected a ROOT file"
        raise InputFileError(msg)
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.read(25)
    if header[:4] != b"root":
        msg = (
            f"event file {str(path)!r} is not a ROOT file: starts with "
            f"{header[:4]!r}, expected the magic bytes b'root'{looks_like(path)}"
        )
        raise InputFileError(msg)
    if len(header) < 25:
        msg = f"event file {str(path)!r} is truncated: {size} bytes, header incomplete"
        raise InputFileError(msg)
    (version,) = struct.unpack(">i", header[4:8])
    if version < 1000000:
        (end,) = struct.unpack(">i", header[12:16])
    else:
        (end,) = struct.unpack(">q", header[12:20])
    if size < end:
        msg = (
            f"event file {str(path)!r} is truncated: {size} bytes on disk, "
            f"the ROOT header says the file ends at byte {end}"
        )
        raise InputFileError(msg)


def _nearest(name, candidates):
    found = difflib.get_close_matches(name, list(candidates), n=_N_NEAREST, cutoff=0.4)
    return found or sorted(candidates)[:_N_NEAREST]


def _collection_branches(tree, collection):
    """Map field name -> TBranch of ``collection``, or None if it is absent."""
    for branch in tree.branches:
        if branch.name == collection and branch.branches:
            prefix = f"{collection}."
            return {
                sub.name[len(prefix) :]: sub
                for sub in branch.branches
                if sub.name.startswith(prefix)
            }
    prefix = f"{collection}."
    flat = {
        b.name[len(prefix) :]: b for b in tree.branches if b.name.startswith(prefix)
    }
    return flat or None


def _empty_collection(n_events, fields):
    content = ak.zip({f: np.zeros(0, dtype=np.float32) for f in fields})
    return ak.unflatten(content, np.zeros(n_events, dtype=np.int64))


def _read_branch(path, branch, entry_stop):
    try:
        return branch.array(library="ak", entry_stop=entry_stop)
    except Exception as err:  # uproot raises many types for damaged baskets
        msg = (
            f"cannot read branch {branch.name!r} of event file {str(path)!r}: "
            f"{type(err).__name__}: {err}; the file may be truncated or corrupt"
        )
        raise InputFileError(msg) from err


def _check_finite(path, tree_name, collection, field, values):
    flat = ak.to_numpy(ak.flatten(values, axis=None))
    if flat.dtype.kind != "f":
        return
    bad = ~np.isfinite(flat)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        where = ""
        if values.ndim == 2:  # jagged: the event (entry) that holds it
            ends = np.cumsum(ak.to_numpy(ak.num(values, axis=1)))
            where = f" in event {int(np.searchsorted(ends, first, side='right'))}"
        msg = (
            f"branch {collection}.{field} of tree {tree_name!r} in {str(path)!r} holds "
            f"{int(bad.sum())} non-finite values (first: {float(flat[first])!r}"
            f"{where}); expected finite numbers"
        )
        raise InputFileError(msg)


def _open_events(path):
    """The uproot handle of a Delphes-schema event file (header checked first)."""
    check_root_header(path)
    try:
        return uproot.open(path)
    except Exception as err:
        msg = (
            f"cannot open event file {str(path)!r} as ROOT: {type(err).__name__}: {err}"
        )
        raise InputFileError(msg) from err


def _event_tree(handle, path, tree):
    """The TTree ``tree`` of an open file, or an error that says what is there."""
    classes = {k.split(";")[0]: c for k, c in handle.classnames().items()}
    trees = [k for k, c in classes.items() if c == "TTree"]
    if tree not in trees:
        other = ""
        if tree in classes:
            other = (
                f"; {tree!r} there is a {classes[tree]}, expected a TTree (uproot "
                "writes a dict assigned to a file key as an RNTuple; use mktree)"
            )
        msg = (
            f"event file {str(path)!r} has no tree {tree!r}; trees there: "
            f"{trees}{other}"
        )
        raise InputFileError(msg)
    return handle[tree]


def _check_schema(ttree, path, tree, collections, optional):
    """Map collection -> {field: TBranch}, None for an absent optional one."""
    out = {}
    for collection, fields in collections.items():
        branches = _collection_branches(ttree, collection)
        if branches is None:
            if collection in optional:
                out[collection] = None
                continue
            top = {b.name for b in ttree.branches if not b.name.endswith("_size")}
            msg = (
                f"tree {tree!r} in {str(path)!r} has no collection "
                f"{collection!r} (branch {collection}.*); nearest: "
                f"{_nearest(collection, top)}"
            )
            raise InputFileError(msg)
        missing = [f for f in fields if f not in branches]
        if missing:
            msg = (
                f"tree {tree!r} in {str(path)!r} has no branch "
                f"{collection}.{missing[0]}; nearest fields of {collection}: "
                f"{_nearest(missing[0], branches)}"
            )
            raise InputFileError(msg)
        out[collection] = branches
    return out


def check_delphes_schema(path, *, collections, tree="Delphes", optional=()):
    """Raise InputFileError unless ``path`` has the tree, collections and fields.

    Reads the file's header and the tree's metadata only, no baskets: cheap enough
    for the workflow to check the user's files when it is parsed, so that a file
    without a needed branch is reported before any job runs (and before Snakemake
    removes the outputs it would replace).

    Args:
        path: ROOT file.
        collections: collection name -> field names (Delphes spelling).
        tree: name of the tree.
        optional: collections that may be absent.
    """
    path = Path(path)
    with _open_events(path) as handle:
        _check_schema(
            _event_tree(handle, path, tree), path, tree, collections, set(optional)
        )


def read_delphes(
    path,
    *,
    collections: Mapping[str, Sequence[str]],
    tree: str = "Delphes",
    optional: Iterable[str] = (),
    entry_stop: int | None = None,
) -> dict[str, ak.Array]:
    """Read the requested collections of a Delphes-schema ROOT file.

    Only the branches ``<Collection>.<Field>`` that are asked for are read.

    Args:
        path: ROOT file (ours or one written by Delphes 3.x).
        collections: collection name -> field names, Delphes spelling, e.g.
            ``{"Jet": ["PT", "Eta", "Phi", "Mass"], "Particle": ["PID", "M1"]}``.
        tree: name of the tree.
        optional: collections that may be absent; they come back as empty lists
            per event (float32 fields).
        entry_stop: read events ``[0, entry_stop)``; None reads all.

    Returns:
        dict: collection name -> jagged record array (n_events, var) with exactly
        the requested fields.

    Raises:
        InputFileError: missing, non-ROOT or truncated file; missing tree, collection
            or field (the message lists the nearest names); unreadable branch;
            NaN or infinite values.
    """
    path = Path(path)
    optional = set(optional)
    unknown = sorted(optional - set(collections))
    if unknown:
        msg = (
            f"optional collections {unknown} are not among the requested "
            f"{list(collections)}"
        )
        raise ValueError(msg)
    with _open_events(path) as handle:
        ttree = _event_tree(handle, path, tree)
        branch_map = _check_schema(ttree, path, tree, collections, optional)
        n_events = (
            ttree.num_entries
            if entry_stop is None
            else min(ttree.num_entries, entry_stop)
        )
        out = {}
        for collection, fields in collections.items():
            branches = branch_map[collection]
            if branches is None:
                logger.info(
                    "%s: collection %s absent, using empty lists", path, collection
                )
                out[collection] = _empty_collection(n_events, fields)
                continue
            arrays = {}
            for field in fields:
                values = _read_branch(path, branches[field], entry_stop)
                _check_finite(path, tree, collection, field, values)
                arrays[field] = values
            out[collection] = (
                ak.zip(arrays) if arrays else _empty_collection(n_events, ())
            )
    logger.debug("read %d events from %s", n_events, path)
    return out


def read_all_collections(path, *, tree="Delphes"):
    """Read every SCHEMA collection present in a file we wrote (used by merge).

    Args:
        path: ROOT file written by ``DelphesWriter``.
        tree: name of the tree.

    Returns:
        dict: collection name -> jagged record array with the SCHEMA fields.
    """
    path = Path(path)
    with _open_events(path) as handle:
        names = {b.name for b in _event_tree(handle, path, tree).branches}
    wanted = {c: list(f) for c, f in SCHEMA.items() if _counter_name(c) in names}
    if not wanted:
        msg = (
            f"tree {tree!r} in {str(path)!r} holds none of the collections "
            f"{list(SCHEMA)}; expected a file written by cinnflow"
        )
        raise InputFileError(msg)
    return read_delphes(path, collections=wanted, tree=tree)
