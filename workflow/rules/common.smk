import sys

from cinnflow.config import load_process, validate_config
from cinnflow.errors import ConfigError

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
