"""A small hyperparameter grid over ``model`` and ``training`` keys, and its winner.

``ensemble.grid`` maps keys of the ``model`` or ``training`` section to lists of
values; the grid points are their Cartesian product (in the order the keys are
written, the last key varying fastest). Each point trains ``ensemble.members``
seed members, member k with the same seed at every point, so the points differ only
by their settings. The point with the lowest validation loss, averaged over its
members, is selected and its seed ensemble is sampled.

A point is named by its settings, ``key=value`` joined by ``_``, e.g.
``learning_rate=0.0003_n_blocks=12``; lists are written ``128x128``. The
validation loss is the mean negative log-likelihood in physics units (GeV,
radians, with the Jacobian of the preprocessing), so points with different
preprocessing (``phi_reference``) are comparable.
"""

import csv
import itertools
import json
import logging
import math
from pathlib import Path

from cinnflow.errors import ConfigError, InputFileError
from cinnflow.io.atomic import atomic_path

__all__ = [
    "GRID_KEYS",
    "grid_points",
    "point_config",
    "point_name",
    "select_point",
    "selected_paths",
    "summarise_losses",
    "write_grid_metrics",
]

logger = logging.getLogger(__name__)

#: Keys a grid may vary, by config section (workflow/schemas/config.schema.yaml
#: lists the same under ensemble.grid; tests/test_grid.py checks both against the
#: model and the trainer). Not in the grid: max_minutes and jit_compile (they
#: depend on the machine), deterministic, the mmd_widths_gev mapping, and
#: clip_norm (no workflow config key).
GRID_KEYS = {
    "model": (
        "n_blocks",
        "subnet_hidden",
        "condition_hidden",
        "condition_dim",
        "clamp",
        "condition_regression",
        "phi_reference",
        "pair_masses",
        "pair_mass_lines",
        "pair_masses_ordered",
        "pair_frames",
        "pair_features",
    ),
    "training": (
        "batch_size",
        "learning_rate",
        "lr_decay",
        "epochs",
        "weight_decay",
        "patience",
        "mmd",
        "mmd_weight",
        "symmetries",
    ),
}


def _format_value(value):
    if isinstance(value, dict):
        # A pair frame: its objects, recoil and flags (q1xq2-recoil-l1xl2-ref).
        parts = ["x".join(map(str, value.get("pair", [])))]
        if value.get("recoil"):
            parts.append("recoil-" + "x".join(map(str, value["recoil"])))
        if value.get("line"):
            parts.append("line")
        if value.get("reference"):
            parts.append("ref")
        if value.get("anchor"):
            parts.append("anchor")
        if value.get("directions"):
            parts.append("directions")
        if value.get("ordered") is False:
            parts.append("unordered")
        return "-".join(parts)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        if not value:
            return "none"
        # Lists of lists (pair_masses: [[q1, q2], [l1, l2]] -> q1xq2+l1xl2) or of
        # pair frames.
        if all(isinstance(v, (list, tuple, dict)) for v in value):
            return "+".join(_format_value(v) for v in value)
        return "x".join(_format_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def point_name(settings):
    """Directory name of one grid point, e.g. ``learning_rate=0.0003_n_blocks=12``.

    Args:
        settings: dict of grid key to value, in grid order.

    Returns:
        str
    """
    return "_".join(f"{key}={_format_value(v)}" for key, v in settings.items())


def _section_of(key):
    sections = [name for name, keys in GRID_KEYS.items() if key in keys]
    if not sections:
        allowed = sorted(k for keys in GRID_KEYS.values() for k in keys)
        msg = (
            f"ensemble.grid: unknown key {key!r}; expected a key of the model or "
            f"training section ({', '.join(allowed)})"
        )
        raise ConfigError(msg)
    return sections[0]


def grid_points(config):
    """The grid points of ``config["ensemble"]["grid"]``, in order.

    Args:
        config: the workflow configuration (``model``, ``training`` and optionally
            ``ensemble.grid``).

    Returns:
        dict of point name to its settings (grid key to value); empty without a
        grid.

    Raises:
        ConfigError: for a key the grid may not vary, an empty or non-list value
            list, or two points with the same name.
    """
    grid = (config.get("ensemble") or {}).get("grid") or {}
    if not grid:
        return {}
    for key, values in grid.items():
        _section_of(key)
        if not isinstance(values, list) or not values:
            msg = (
                f"ensemble.grid.{key} = {values!r}; expected a non-empty list of "
                f"values of {_section_of(key)}.{key}"
            )
            raise ConfigError(msg)
    points = {}
    for combination in itertools.product(*grid.values()):
        settings = dict(zip(grid, combination, strict=True))
        name = point_name(settings)
        if name in points:
            msg = (
                f"ensemble.grid: two points are both named {name!r} "
                f"({points[name]} and {settings}); expected distinct values"
            )
            raise ConfigError(msg)
        points[name] = settings
    return points


def point_config(config, settings):
    """The ``model`` and ``training`` sections of ``config`` at one grid point.

    Args:
        config: the workflow configuration.
        settings: dict of grid key to value (from :func:`grid_points`).

    Returns:
        dict with the ``model`` and ``training`` sections, the point's values set.
    """
    sections = {name: dict(config[name]) for name in GRID_KEYS}
    for key, value in settings.items():
        sections[_section_of(key)][key] = value
    return sections


def _read_losses(path):
    path = Path(path)
    try:
        with open(path, newline="") as stream:
            rows = list(csv.DictReader(stream))
    except OSError as err:
        msg = f"{path}: cannot read the training loss CSV ({err})"
        raise InputFileError(msg) from err
    if not rows or "val_loss" not in rows[0] or "epoch" not in rows[0]:
        seen = list(rows[0]) if rows else "no rows"
        msg = (
            f"{path}: expected a loss CSV with columns epoch and val_loss and at "
            f"least one epoch; saw {seen!r}"
        )
        raise InputFileError(msg)
    try:
        values = [(int(row["epoch"]), float(row["val_loss"])) for row in rows]
    except ValueError as err:
        msg = f"{path}: column epoch or val_loss is not a number ({err})"
        raise InputFileError(msg) from err
    if not all(math.isfinite(loss) for _, loss in values):
        msg = f"{path}: val_loss {[loss for _, loss in values]!r} is not all finite"
        raise InputFileError(msg)
    return values


def summarise_losses(loss_csvs):
    """Best validation loss of each member of one grid point.

    Args:
        loss_csvs: list of loss CSV paths (``epoch``, ``val_loss`` columns), one per
            seed member, member 0 first.

    Returns:
        dict with ``val_loss`` (the mean over members of each member's best
        validation loss) and ``members``: member index (str) to ``best_val_loss``,
        ``best_epoch`` (the first epoch with it) and ``epochs`` (epochs trained).

    Raises:
        InputFileError: for a missing or malformed loss CSV.
    """
    members = {}
    for member, path in enumerate(loss_csvs):
        values = _read_losses(path)
        best_epoch, best = min(values, key=lambda pair: pair[1])
        members[str(member)] = {
            "best_val_loss": best,
            "best_epoch": best_epoch,
            "epochs": len(values),
        }
    mean = sum(m["best_val_loss"] for m in members.values()) / len(members)
    return {"val_loss": mean, "members": members}


def select_point(points, loss_csvs):
    """The grid point with the lowest validation loss, with every point's record.

    Args:
        points: dict of point name to settings (from :func:`grid_points`).
        loss_csvs: dict of point name to its members' loss CSV paths.

    Returns:
        dict with ``best_point`` (name), ``best_val_loss`` and ``points``: name to
        ``settings``, ``val_loss`` and ``members`` (see :func:`summarise_losses`).
        Ties go to the first point in grid order.

    Raises:
        ConfigError: when ``points`` is empty or a point has no loss files.
        InputFileError: for a missing or malformed loss CSV.
    """
    if not points:
        msg = "ensemble.grid has no points; expected at least one to select from"
        raise ConfigError(msg)
    records = {}
    for name, settings in points.items():
        if not loss_csvs.get(name):
            msg = f"grid point {name!r} has no loss CSV; expected one per member"
            raise ConfigError(msg)
        records[name] = {
            "settings": dict(settings),
            **summarise_losses(loss_csvs[name]),
        }
    best = min(records, key=lambda name: records[name]["val_loss"])
    for name, record in records.items():
        logger.info(
            "grid point %s: mean best val_loss %.5f over %d members%s",
            name,
            record["val_loss"],
            len(record["members"]),
            " (selected)" if name == best else "",
        )
    return {
        "best_point": best,
        "best_val_loss": records[best]["val_loss"],
        "points": records,
    }


def write_grid_metrics(path, selection):
    """Write the selection of :func:`select_point` as a JSON metrics file."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(selection, indent=2, sort_keys=False) + "\n")


def selected_paths(grid_json, paths):
    """The paths of the selected grid point among ``paths``, in their order.

    Args:
        grid_json: path of the metrics file :func:`write_grid_metrics` wrote.
        paths: model folders or loss CSVs of every grid point, each with the point
            name as one path component (``results/models/{point}/{member}``).

    Returns:
        list of the paths under the point named ``best_point`` in ``grid_json``.

    Raises:
        InputFileError: when ``grid_json`` is unreadable, lacks ``best_point`` or no
            path belongs to that point.
    """
    grid_json = Path(grid_json)
    try:
        best = json.loads(grid_json.read_text())["best_point"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        msg = (
            f"{grid_json}: expected a JSON object with the key 'best_point' "
            f"({type(err).__name__}: {err})"
        )
        raise InputFileError(msg) from err
    chosen = [str(path) for path in paths if best in Path(path).parts]
    if not chosen:
        msg = (
            f"{grid_json}: best_point {best!r} matches none of the paths "
            f"{[str(p) for p in paths]!r}; expected one with that folder name"
        )
        raise InputFileError(msg)
    logger.info("grid point %s selected: %s", best, ", ".join(chosen))
    return chosen
