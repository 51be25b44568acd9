"""Write files so that a killed job never leaves a file that looks finished."""

import contextlib
import os
import shutil
from pathlib import Path

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary sibling of ``path``; rename it onto ``path`` on success.

    The temporary name keeps the suffix of ``path`` so that libraries which infer the
    format from the extension (numpy, matplotlib, uproot) still work. On any exception
    the temporary file or directory is removed and ``path`` is left untouched.

    Args:
        path: final file or directory path.

    Yields:
        pathlib.Path: the temporary path to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path) if not tmp.is_dir() else _replace_dir(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _replace_dir(tmp, path):
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
