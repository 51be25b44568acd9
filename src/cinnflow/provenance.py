"""Where a result came from: package versions, git commit and configuration."""

import hashlib
import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path

from cinnflow.io.atomic import atomic_path

__all__ = ["file_sha256", "provenance", "write_provenance"]

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
    "scipy",
    "snakemake",
    "dvc",
)


def _git(*args):
    try:
        result = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=False, cwd=Path.cwd()
        )
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def provenance(config=None):
    """Return a JSON-serialisable record of versions, commit and configuration.

    Args:
        config: the configuration the result was made with (recorded as given).

    Returns:
        dict with ``python``, ``platform``, ``packages`` (name to version, None if
        not installed), ``git_commit`` (None outside a git checkout), ``git_dirty``
        (uncommitted changes to tracked files) and ``config``.
    """
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "config": config,
    }


def file_sha256(path):
    """SHA-256 of a file, or of a directory's files (relative paths and contents)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = (
        sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    )
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_provenance(path, config, results):
    """Write a JSON record of how ``results`` were made (atomically).

    Args:
        path: the JSON file to write.
        config: the configuration of the run.
        results: paths of the result files or directories, recorded with their
            SHA-256 so the record names exactly what it describes.
    """
    record = provenance(config)
    record["results"] = {str(p): {"sha256": file_sha256(p)} for p in results}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
