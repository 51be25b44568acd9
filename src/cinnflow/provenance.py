"""Where a result came from: package versions, git commit and configuration."""

import importlib.metadata
import platform
import subprocess
from pathlib import Path

__all__ = ["provenance"]

_PACKAGES = (
    "cinnflow",
    "tensorflow",
    "tf-keras",
    "tensorflow-probability",
    "pythia8mc",
    "fastjet",
    "uproot",
    "awkward",
    "numpy",
    "snakemake",
    "dvc",
)


def _git_commit():
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path.cwd(),
        )
    except OSError:
        return None
    return result.stdout.strip() or None


def provenance(config=None):
    """Return a JSON-serialisable record of versions, commit and configuration."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "packages": versions,
        "git_commit": _git_commit(),
        "config": config,
    }
