"""Read npz array files without pickle, with errors that name the file and key."""

import zipfile
from pathlib import Path

import numpy as np

from cinnflow.errors import InputFileError

__all__ = ["load_npz"]

_ZIP_MAGIC = b"PK\x03\x04"


def load_npz(path, *, required=(), what="array file"):
    """Load every array of an npz file; object (pickled) arrays are refused.

    Args:
        path: npz file.
        required: keys the file must hold.
        what: what the file is, for the messages (``"posterior file"``).

    Returns:
        dict: key -> numpy array.

    Raises:
        InputFileError: missing file, not an npz (zip) file, truncated or corrupt
            file, a pickled object array, or a missing key.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{what} {str(path)!r} does not exist; expected an npz file"
        raise InputFileError(msg)
    with path.open("rb") as stream:
        magic = stream.read(len(_ZIP_MAGIC))
    if magic != _ZIP_MAGIC:
        msg = (
            f"{what} {str(path)!r} is not an npz file: starts with {magic!r}, "
            f"expected the zip magic bytes {_ZIP_MAGIC!r}"
        )
        raise InputFileError(msg)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except ValueError as err:
        msg = (
            f"{what} {str(path)!r} holds a pickled object array ({err}); "
            "cinnflow never unpickles, expected plain numeric or string arrays"
        )
        raise InputFileError(msg) from err
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        msg = (
            f"cannot read {what} {str(path)!r}: {type(err).__name__}: {err}; "
            "the file may be truncated or corrupt"
        )
        raise InputFileError(msg) from err
    missing = [key for key in required if key not in arrays]
    if missing:
        msg = (
            f"{what} {str(path)!r} lacks the key {missing[0]!r}; found "
            f"{sorted(arrays)}, expected at least {list(required)}"
        )
        raise InputFileError(msg)
    return arrays
