import sys

from cinnflow.config import load_process, validate_config
from cinnflow.errors import ConfigError
from cinnflow.sampling.ensemble import member_seed

try:
    validate_config(
        config, "workflow/schemas/config.schema.yaml", source="the configuration"
    )
    PROCESS = load_process(config["process"])
except ConfigError as err:
    sys.exit(f"cinnflow: {err}")


def event_files():
    """The event files to prepare: the user's Delphes files or the simulated chunks."""
    if config["preparation"].get("inputs"):
        return config["preparation"]["inputs"]
    return expand(
        "results/events/chunk_{chunk}.root", chunk=range(config["events"]["n_chunks"])
    )


def chunk_size(wildcards):
    """Events in one chunk: the total spread evenly, the remainder to the first."""
    n_events, n_chunks = config["events"]["n_events"], config["events"]["n_chunks"]
    chunk = int(wildcards.chunk)
    return n_events // n_chunks + (1 if chunk < n_events % n_chunks else 0)


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
