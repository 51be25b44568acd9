"""From event files to training, validation and test arrays with their provenance."""

import hashlib
import json
import logging
import zipfile
from pathlib import Path

import awkward as ak
import numpy as np

from cinnflow.errors import InputFileError
from cinnflow.io.atomic import atomic_path
from cinnflow.io.delphes import read_delphes
from cinnflow.io.npz import load_npz
from cinnflow.preparation.pairing import (
    OPTIONAL_COLLECTIONS,
    READ_COLLECTIONS,
    column_names,
    detector_level,
    parton_level,
)
from cinnflow.provenance import provenance

__all__ = [
    "REQUIRED_KEYS",
    "SPLITS",
    "load_arrays",
    "prepare",
    "prepare_sample",
    "save_arrays",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: Keys every prepared (and posterior) array file holds.
REQUIRED_KEYS = ("x_parton", "c_detector", "parton_names", "parton_kinds")


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pair_file(path, process):
    """Read one Delphes-schema file and return its paired, selected events.

    Args:
        path: ROOT file in the Delphes tree schema.
        process: a process description (``config/processes/*.yaml``) as a dict.

    Returns:
        tuple: ``(x_parton, c_detector, event_index, cutflow)`` for the events that
        pass both the parton-level and the detector-level selection.
    """
    events = read_delphes(
        path, collections=READ_COLLECTIONS, optional=OPTIONAL_COLLECTIONS
    )
    _check_mothers(path, events["Particle"])
    x_parton, found = parton_level(events["Particle"], process["parton"])
    c_detector, selected, cutflow = detector_level(events, process["detector"])
    cutflow["parton_level_found"] = int((selected & found).sum())
    keep = selected & found
    logger.info("%s: cut flow %s", path, cutflow)
    return x_parton[keep], c_detector[keep], np.flatnonzero(keep), cutflow


def _check_mothers(path, particles):
    """Particle.M1 must index a particle of the same event (or be -1: none)."""
    n_particles = ak.num(particles, axis=1)
    bad = (particles.M1 < -1) | (particles.M1 >= n_particles)
    n_bad = int(ak.sum(bad))
    if n_bad:
        event = int(np.flatnonzero(ak.to_numpy(ak.any(bad, axis=1)))[0])
        value = int(particles.M1[event][bad[event]][0])
        msg = (
            f"branch Particle.M1 of {str(path)!r} holds {n_bad} mother indices "
            f"outside their event (first: {value} in event {event} of "
            f"{int(n_particles[event])} particles); expected -1 or an index in "
            "[0, number of particles)"
        )
        raise InputFileError(msg)


def prepare(inputs, process, *, fractions, seed, outputs, provenance_path, config):
    """Select, pair, shuffle and split events; write one npz per split.

    Args:
        inputs: event files (ROOT, Delphes schema), read in order.
        process: the process description as a dict.
        fractions: dict with the ``train``, ``val`` and ``test`` fractions.
        seed: seed of the shuffle that precedes the split.
        outputs: dict from split name to the npz path to write.
        provenance_path: JSON file recording inputs, hashes, cut flows and seed.
        config: the full configuration, recorded in the provenance.

    Raises:
        InputFileError: when no event survives the selection, or too few to fill
            every split with at least one event.
    """
    parts, cutflows = [], {}
    for file_number, path in enumerate(inputs):
        x_parton, c_detector, index, cutflow = pair_file(path, process)
        cutflows[str(path)] = cutflow
        ids = np.stack([np.full(len(index), file_number), index], axis=1)
        parts.append((x_parton, c_detector, ids))
    x_parton = np.concatenate([p[0] for p in parts]).astype(np.float32)
    c_detector = np.concatenate([p[1] for p in parts]).astype(np.float32)
    ids = np.concatenate([p[2] for p in parts]).astype(np.int64)

    n_events = len(x_parton)
    if n_events < len(SPLITS):
        msg = (
            f"{', '.join(map(str, inputs))}: {n_events} events pass the selection of "
            f"process {process['name']!r}, expected at least {len(SPLITS)} to fill "
            f"the {'/'.join(SPLITS)} splits; cut flow per file: {cutflows}"
        )
        raise InputFileError(msg)

    rng = np.random.default_rng(seed)
    order = rng.permutation(n_events)
    total = sum(fractions[name] for name in SPLITS)
    edges = np.cumsum([fractions[name] / total for name in SPLITS])
    bounds = np.concatenate([[0], np.round(edges * n_events).astype(int)])
    bounds = np.maximum.accumulate(np.clip(bounds, 0, n_events))

    parton_objects = [obj["name"] for obj in process["parton"]["objects"]]
    parton_names, parton_kinds = column_names(
        parton_objects, process["parton"]["fields"]
    )
    detector_objects = process["detector"]["jets"] + process["detector"]["leptons"]
    detector_names, detector_kinds = column_names(
        detector_objects, process["detector"]["fields"]
    )
    # Every split is checked before the first file is written, so a bad split
    # leaves no output behind.
    rows_of = {name: order[bounds[i] : bounds[i + 1]] for i, name in enumerate(SPLITS)}
    for name, rows in rows_of.items():
        if len(rows) == 0:
            msg = (
                f"{', '.join(map(str, inputs))}: split {name!r} would be empty: "
                f"{n_events} selected events with preparation.split "
                f"{dict(fractions)}; expected at least one event per split "
                "(generate more events or change preparation.split)"
            )
            raise InputFileError(msg)
    sizes = {}
    for name, rows in rows_of.items():
        save_arrays(
            outputs[name],
            x_parton=x_parton[rows],
            c_detector=c_detector[rows],
            event_id=ids[rows],
            parton_names=np.array(parton_names),
            parton_kinds=np.array(parton_kinds),
            detector_names=np.array(detector_names),
            detector_kinds=np.array(detector_kinds),
        )
        sizes[name] = int(len(rows))
    logger.info("selected %d events, split %s", n_events, sizes)

    record = provenance(config)
    record.update(
        inputs=[{"path": str(p), "sha256": _sha256(p)} for p in inputs],
        cutflow=cutflows,
        n_selected=n_events,
        split_sizes=sizes,
        split_seed=seed,
        process=process,
    )
    with atomic_path(provenance_path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2, sort_keys=True))
    return sizes


def prepare_sample(inputs, process, *, output, summary_path, config):
    """Select and pair the events of one sample, without a split (e.g. a signal).

    The selection and pairing are those of :func:`prepare`, so the arrays have the
    columns of the training sample of the same parton and detector sections.

    Args:
        inputs: event files (ROOT, Delphes schema), read in order.
        process: the process description as a dict.
        output: npz file to write (keys as a prepared split).
        summary_path: JSON file with the cut flow per file, the number of events
            read and selected and the acceptance (selected / read), plus the
            provenance of :func:`cinnflow.provenance.provenance`.
        config: the full configuration, recorded in the summary.

    Returns:
        dict: ``n_read``, ``n_selected``, ``acceptance``.

    Raises:
        InputFileError: when no event survives the selection.
    """
    parts, cutflows = [], {}
    for file_number, path in enumerate(inputs):
        x_parton, c_detector, index, cutflow = pair_file(path, process)
        cutflows[str(path)] = cutflow
        ids = np.stack([np.full(len(index), file_number), index], axis=1)
        parts.append((x_parton, c_detector, ids))
    n_read = sum(cutflow["all"] for cutflow in cutflows.values())
    n_selected = sum(len(p[0]) for p in parts)
    if n_selected == 0:
        msg = (
            f"{', '.join(map(str, inputs))}: no event of {n_read} passes the "
            f"selection of process {process['name']!r}; expected at least one; cut "
            f"flow per file: {cutflows}"
        )
        raise InputFileError(msg)
    parton_objects = [obj["name"] for obj in process["parton"]["objects"]]
    parton_names, parton_kinds = column_names(
        parton_objects, process["parton"]["fields"]
    )
    detector_objects = process["detector"]["jets"] + process["detector"]["leptons"]
    detector_names, detector_kinds = column_names(
        detector_objects, process["detector"]["fields"]
    )
    save_arrays(
        output,
        x_parton=np.concatenate([p[0] for p in parts]).astype(np.float32),
        c_detector=np.concatenate([p[1] for p in parts]).astype(np.float32),
        event_id=np.concatenate([p[2] for p in parts]).astype(np.int64),
        parton_names=np.array(parton_names),
        parton_kinds=np.array(parton_kinds),
        detector_names=np.array(detector_names),
        detector_kinds=np.array(detector_kinds),
    )
    summary = {
        "n_read": int(n_read),
        "n_selected": int(n_selected),
        "acceptance": n_selected / n_read if n_read else float("nan"),
    }
    logger.info(
        "%s: %d of %d events selected (acceptance %.4f), wrote %s",
        process["name"],
        n_selected,
        n_read,
        summary["acceptance"],
        output,
    )
    record = provenance(config)
    record.update(
        summary,
        inputs=[{"path": str(p), "sha256": _sha256(p)} for p in inputs],
        cutflow=cutflows,
        process=process,
    )
    with atomic_path(summary_path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2, sort_keys=True))
    return summary


def save_arrays(path, **arrays):
    """Write arrays to an uncompressed npz file atomically (no object arrays).

    The file is byte-for-byte reproducible: the zip members carry a fixed date
    instead of the time of writing (``numpy.savez`` stamps the clock), so equal
    arrays give equal files and equal DVC hashes, and a re-run whose arrays did
    not change does not make DVC re-run what follows.
    """
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, array in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with archive.open(info, "w", force_zip64=True) as stream:
                    np.lib.format.write_array(
                        stream, np.asanyarray(array), allow_pickle=False
                    )


def load_arrays(path, *, required=REQUIRED_KEYS):
    """Load an npz file written by :func:`save_arrays` without pickle.

    Args:
        path: npz file.
        required: keys the file must hold.

    Returns:
        dict: key -> numpy array.

    Raises:
        InputFileError: see :func:`cinnflow.io.npz.load_npz`.
    """
    return load_npz(path, required=required)
