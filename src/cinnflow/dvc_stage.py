"""Run one Snakemake rule as a DVC stage without throwing away finished work.

Every stage of ``dvc.yaml`` runs ``python -m cinnflow.dvc_stage RULE -- OUTPUTS``.
Its outputs are ``persist: true``, so DVC never deletes them before the stage runs;
this module decides whether Snakemake must redo the rule or may keep what is there:

- DVC recorded the stage in ``dvc.lock`` and the output files are still the ones it
  recorded (same MD5): DVC re-runs the stage because a dependency, a parameter or
  the code changed since, so the rule is forced (``--forcerun RULE``).
- The stage is not in ``dvc.lock`` (for example the results come from ``make run``)
  or its output files differ from the recorded ones (Snakemake produced them since):
  Snakemake decides as usual (missing or outdated outputs, changed params or code),
  so results it already made are kept and DVC records them.

Only the ``dvc repro`` process itself talks to DVC: no job that Snakemake starts,
in parallel or on a cluster, calls ``dvc`` (DVC takes a repository-wide lock).
"""

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from cinnflow.logs import setup_logging

__all__ = ["main", "outputs_as_recorded", "snakemake_command"]

logger = logging.getLogger(__name__)


def _md5(path):
    digest = hashlib.md5()  # noqa: S324 - DVC's own content hash, not security
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def outputs_as_recorded(stage, lock_path="dvc.lock"):
    """Whether ``dvc.lock`` records ``stage`` and its output files are unchanged.

    Args:
        stage: the stage name (the Snakemake rule).
        lock_path: path of ``dvc.lock``.

    Returns:
        bool: True if the lock file has the stage and every output file it lists
        (directories are not compared) exists with the recorded MD5.
    """
    lock_path = Path(lock_path)
    if not lock_path.is_file():
        return False
    lock = yaml.safe_load(lock_path.read_text()) or {}
    entry = lock.get("stages", {}).get(stage)
    if not entry:
        return False
    for out in entry.get("outs", []):
        md5 = out.get("md5", "")
        if md5.endswith(".dir"):
            continue
        path = lock_path.parent / out["path"]
        if not path.is_file() or _md5(path) != md5:
            logger.info("%s: %s differs from dvc.lock", stage, out["path"])
            return False
    return True


def snakemake_command(rule, outputs, *, force, snakemake="snakemake", cores="all"):
    """The Snakemake command line that makes ``outputs`` with ``rule`` alone."""
    command = [snakemake, "--cores", str(cores), "--rerun-incomplete"]
    command += ["--allowed-rules", rule]
    if force:
        command += ["--forcerun", rule]
    return [*command, "--", *outputs]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rule")
    parser.add_argument("outputs", nargs="+")
    parser.add_argument("--cores", default=os.environ.get("CINNFLOW_CORES", "all"))
    args = parser.parse_args(argv)
    setup_logging()
    snakemake = shutil.which("snakemake") or str(
        Path(sys.executable).with_name("snakemake")
    )
    force = outputs_as_recorded(args.rule)
    command = snakemake_command(
        args.rule, args.outputs, force=force, snakemake=snakemake, cores=args.cores
    )
    logger.info(
        "%s: %s", args.rule, "forced (DVC saw a change)" if force else "as needed"
    )
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
