import os
import sys

# TensorFlow's C++ info and warning lines (oneDNN, XLA, "no CUDA drivers") in
# every job's output; its errors still show. Set it in the environment to change.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cinnflow.closure.injection import check_injection
from cinnflow.config import (
    check_pair_frames,
    check_pair_masses,
    check_sampling,
    load_process,
    process_files,
    validate_config,
)
from cinnflow.errors import ConfigError, InputFileError
from cinnflow.io.delphes import check_delphes_schema
from cinnflow.io.lhe import check_lhe_head, check_lhe_tail
from cinnflow.preparation.pairing import OPTIONAL_COLLECTIONS, READ_COLLECTIONS
from cinnflow.sampling.ensemble import member_seed
from cinnflow.training.grid import grid_points, point_config

try:
    validate_config(
        config, "workflow/schemas/config.schema.yaml", source="the configuration"
    )
    PROCESS = load_process(config["process"])
    # Hyperparameter grid (ensemble.grid): point name to its settings; empty
    # without a grid, and then the rules and paths are those of a single training.
    GRID_POINTS = grid_points(config)
    _model = config["model"]
    check_pair_masses(
        _model.get("pair_masses"),
        PROCESS,
        lines=_model.get("pair_mass_lines"),
        ordered=_model.get("pair_masses_ordered"),
    )
    check_pair_frames(
        _model.get("pair_frames"), PROCESS, pair_masses=_model.get("pair_masses")
    )
    check_pair_masses(_model.get("pair_features"), PROCESS, key="model.pair_features")
    check_sampling(config["sampling"])
    for _point, _settings in GRID_POINTS.items():
        check_pair_masses(
            _settings.get("pair_masses", _model.get("pair_masses")),
            PROCESS,
            key=f"ensemble.grid.pair_masses ({_point})",
            lines=_settings.get("pair_mass_lines", _model.get("pair_mass_lines")),
            ordered=_settings.get(
                "pair_masses_ordered", _model.get("pair_masses_ordered")
            ),
        )
        check_pair_frames(
            _settings.get("pair_frames", _model.get("pair_frames")),
            PROCESS,
            pair_masses=_settings.get("pair_masses", _model.get("pair_masses")),
            key=f"model.pair_frames (grid point {_point})",
        )
        check_pair_masses(
            _settings.get("pair_features", _model.get("pair_features")),
            PROCESS,
            key=f"model.pair_features (grid point {_point})",
        )
    # The user's files, by their header, tree metadata and end (the jobs read
    # them whole): a wrong file is reported now, before Snakemake removes the
    # outputs that a job would replace and before other jobs ran.
    if config["preparation"].get("inputs"):
        for _path in config["preparation"]["inputs"]:
            check_delphes_schema(
                _path, collections=READ_COLLECTIONS, optional=OPTIONAL_COLLECTIONS
            )
    elif config["events"]["source"] == "lhe":
        check_lhe_head(config["events"]["lhe_file"])
        check_lhe_tail(config["events"]["lhe_file"])
    INJECTION = config["evaluation"].get("injection")
    # The injected events go through cinnflow's own detector model, so they are
    # not mixed into the user's own Delphes files.
    if config["preparation"].get("inputs"):
        INJECTION = None
    if INJECTION:
        check_injection(INJECTION)
        INJECTION_PROCESS = load_process(INJECTION["process"])
except (ConfigError, InputFileError) as err:
    sys.exit(f"cinnflow: {err}")


def event_files():
    """The event files to prepare: the user's Delphes files or the simulated chunks."""
    if config["preparation"].get("inputs"):
        return config["preparation"]["inputs"]
    return expand(
        "results/events/chunk_{chunk}.root", chunk=range(config["events"]["n_chunks"])
    )


def lhe_input():
    """The LHE file the chunks shower (events.source: lhe), else nothing."""
    if config["events"]["source"] == "lhe":
        return [config["events"]["lhe_file"]]
    return []


def _chunk_size(chunk):
    n_events, n_chunks = config["events"]["n_events"], config["events"]["n_chunks"]
    return n_events // n_chunks + (1 if chunk < n_events % n_chunks else 0)


def chunk_size(wildcards):
    """Events in one chunk: the total spread evenly, the remainder to the first."""
    return _chunk_size(int(wildcards.chunk))


def chunk_offset(wildcards):
    """Events of the chunks before this one: the first event number of the chunk.

    With an LHE input it is also the number of LHE events the chunk skips, so the
    chunks shower disjoint, consecutive slices of the file.
    """
    return sum(_chunk_size(chunk) for chunk in range(int(wildcards.chunk)))


wildcard_constraints:
    member=r"\d+",
    chunk=r"\d+",
    # Grid point names are key=value pairs (cinnflow.training.grid.point_name).
    point=r"[^/]+=[^/]*",


def ensemble_members():
    """Members of the training ensemble, 0 .. ensemble.members - 1 (default one)."""
    n_members = config.get("ensemble", {}).get("members", 1)
    if config["sampling"]["n_draws"] % n_members:
        sys.exit(
            f"cinnflow: sampling.n_draws = {config['sampling']['n_draws']} is not a "
            f"multiple of ensemble.members = {n_members} (equal share per member)"
        )
    return list(range(n_members))


def _point(wildcards):
    """The grid point of a training job, or None for the training without a grid."""
    return getattr(wildcards, "point", None)


def point_section(section):
    """Input function: the ``model`` or ``training`` section at the job's point."""

    def section_at_point(wildcards):
        point = _point(wildcards)
        if point is None:
            return config[section]
        return point_config(config, GRID_POINTS[point])[section]

    return section_at_point


def training_seed(wildcards):
    """Member 0 trains with the master seed, member k with seed + 1000 k.

    Member k has the same seed at every grid point: the points differ only by their
    settings.
    """
    return member_seed(config["seed"], wildcards.member)


def training_key(wildcards):
    """Checkpoint folder of one member: a changed config starts afresh, not resumes."""
    import hashlib
    import json

    keys = ("seed", "process", "events", "preparation", "model", "training")
    sections = {key: config[key] for key in keys}
    point = _point(wildcards)
    if point is not None:
        sections.update(point_config(config, GRID_POINTS[point]))
    text = json.dumps(sections, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    folder = wildcards.member if point is None else f"{point}/{wildcards.member}"
    return f"results/checkpoints/{folder}/{digest}"


def grid_loss_csvs():
    """Loss CSVs of every grid point: point name to its members' files."""
    return {
        point: [
            f"results/training/{point}/loss_{member}.csv"
            for member in ensemble_members()
        ]
        for point in GRID_POINTS
    }


def grid_loss_files():
    """Every grid point's loss CSVs in one list (point by point, member 0 first)."""
    return [path for files in grid_loss_csvs().values() for path in files]


def grid_metrics():
    """The grid's selection metrics file, or nothing without a grid."""
    return ["results/metrics/grid.json"] if GRID_POINTS else []


def trained_models():
    """Model folders the sampling chooses from: every member of every grid point.

    Without a grid, ``results/models/{member}``; with one, the point is chosen after
    training (results/metrics/grid.json), so every point's models are inputs.
    """
    if not GRID_POINTS:
        return expand("results/models/{member}", member=ensemble_members())
    return expand(
        "results/models/{point}/{member}",
        point=list(GRID_POINTS),
        member=ensemble_members(),
    )


def training_losses():
    """Loss CSVs of the plotted training: member 0, or member 0 of every grid point."""
    if not GRID_POINTS:
        return ["results/training/loss_0.csv"]
    return [files[0] for files in grid_loss_csvs().values()]


def injection_targets():
    """The injection metrics and plots when evaluation.injection is set, else none."""
    if not INJECTION:
        return []
    return ["results/metrics/injection.json", "results/plots/injection"]


def injection_files():
    """The injected process file and the file it takes its sections from."""
    return process_files(INJECTION["process"])


def injection_chunks():
    """Event files of the injected process, one per chunk."""
    return expand(
        "results/injection/events/chunk_{chunk}.root",
        chunk=range(INJECTION["n_chunks"]),
    )


def _injection_chunk_size(chunk):
    n_events, n_chunks = INJECTION["n_events"], INJECTION["n_chunks"]
    return n_events // n_chunks + (1 if chunk < n_events % n_chunks else 0)


def injection_chunk_size(wildcards):
    """Injected events in one chunk: the total spread evenly, the remainder first."""
    return _injection_chunk_size(int(wildcards.chunk))


def injection_chunk_offset(wildcards):
    """First event number of an injected chunk."""
    return sum(_injection_chunk_size(chunk) for chunk in range(int(wildcards.chunk)))


def injection_seed(wildcards):
    """Seed of an injected chunk: seed + 101 + chunk (apart from the main chunks)."""
    return config["seed"] + 101 + int(wildcards.chunk)


def injection_events():
    """Event settings of the injected process: those of the main job, from Pythia.

    Without the main job's event count, chunks and LHE file (the W' has its own
    count and chunks), so that changing them does not re-simulate the W'.
    """
    events = {
        k: v for k, v in config["events"].items() if k not in ("n_events", "n_chunks")
    }
    return {**events, "source": "pythia", "lhe_file": None}
