import sys

from cinnflow.closure.injection import check_injection
from cinnflow.config import load_process, process_files, validate_config
from cinnflow.errors import ConfigError
from cinnflow.sampling.ensemble import member_seed

try:
    validate_config(
        config, "workflow/schemas/config.schema.yaml", source="the configuration"
    )
    PROCESS = load_process(config["process"])
    if config["events"]["source"] == "lhe" and not config["events"].get("lhe_file"):
        raise ConfigError(
            "events.source is 'lhe' but events.lhe_file is "
            f"{config['events'].get('lhe_file')!r}; expected the path of an LHE file"
        )
    INJECTION = config["evaluation"].get("injection")
    if INJECTION:
        check_injection(INJECTION)
        INJECTION_PROCESS = load_process(INJECTION["process"])
except ConfigError as err:
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


def ensemble_members():
    """Members of the training ensemble, 0 .. ensemble.members - 1 (default one)."""
    n_members = config.get("ensemble", {}).get("members", 1)
    if config["sampling"]["n_draws"] % n_members:
        sys.exit(
            f"cinnflow: sampling.n_draws = {config['sampling']['n_draws']} is not a "
            f"multiple of ensemble.members = {n_members} (equal share per member)"
        )
    return list(range(n_members))


def training_key(wildcards):
    """Checkpoint folder of one member: a changed config starts afresh, not resumes."""
    import hashlib
    import json

    keys = ("seed", "process", "events", "preparation", "model", "training")
    text = json.dumps({key: config[key] for key in keys}, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"results/checkpoints/{wildcards.member}/{digest}"


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
    """Event settings of the injected process: those of the main job, from Pythia."""
    return {**config["events"], "source": "pythia", "lhe_file": None}
