"""Load and validate the workflow configuration before any job starts."""

import difflib
from pathlib import Path

import jsonschema
import yaml

from cinnflow.errors import ConfigError

__all__ = [
    "check_pair_frames",
    "check_pair_masses",
    "load_process",
    "load_yaml",
    "process_files",
    "validate_config",
]


def load_yaml(path):
    """Read a YAML file safely; errors name the file."""
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: no such file (expected a YAML file)"
        raise ConfigError(msg)
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        msg = f"{path}: not valid YAML: {err}"
        raise ConfigError(msg) from err


def _where(error):
    return ".".join(str(part) for part in error.absolute_path) or "<top level>"


def _describe(error, schema):
    """One line per error: key path, value seen, what is allowed, a suggestion."""
    where = _where(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        lines = []
        for key in extra:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            lines.append(
                f"{where}: unknown key {key!r}{hint} (allowed: {', '.join(allowed)})"
            )
        return "\n".join(lines)
    return f"{where}: value {error.instance!r} is not allowed: {error.message}"


def validate_config(config, schema_path, *, source="config"):
    """Validate ``config`` against a JSON schema (draft 2020-12).

    Args:
        config: the configuration dict.
        schema_path: YAML file holding the JSON schema.
        source: name of the configuration file, for the messages.

    Raises:
        ConfigError: listing every problem with its key path and the allowed values.
    """
    schema = load_yaml(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.path))
    if errors:
        lines = "\n".join(_describe(error, schema) for error in errors)
        msg = f"{source} is not valid:\n{lines}"
        raise ConfigError(msg)
    events = config["events"]
    if events["source"] == "lhe" and not events.get("lhe_file"):
        msg = (
            f"{source}: events.source is 'lhe' but events.lhe_file is "
            f"{events.get('lhe_file')!r}; expected the path of an LHE file"
        )
        raise ConfigError(msg)
    # Checked here, before any job: Snakemake would otherwise keep chunks that an
    # earlier (Pythia) run left behind and run on with them.
    if events["source"] == "lhe" and not Path(events["lhe_file"]).is_file():
        msg = (
            f"{source}: events.lhe_file {events['lhe_file']!r} does not exist "
            f"(relative paths start at {Path.cwd()}); expected the path of an LHE "
            "file (plain or gzip)"
        )
        raise ConfigError(msg)
    fractions = config["preparation"]["split"]
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        msg = (
            f"{source}: preparation.split fractions {dict(fractions)} add up to "
            f"{total:g}, expected 1"
        )
        raise ConfigError(msg)
    return config


def load_process(path):
    """Read a process description and check the keys the workflow relies on.

    A process file may name another one under ``base`` (a path relative to its own
    folder): the top-level sections it does not set itself are taken from that file
    (one level, no chains), so a second hard process can share the parton, detector
    and derived sections of the first one instead of a copy that drifts apart.

    Args:
        path: the process YAML file.

    Returns:
        dict: the process description, ``base`` resolved (the key itself removed).

    Raises:
        ConfigError: a missing or unreadable file, a ``base`` that is missing, not
            a string or itself has a ``base``, or a missing required key.
    """
    path = Path(path)
    process = load_yaml(path)
    if isinstance(process, dict) and "base" in process:
        base_name = process["base"]
        if not isinstance(base_name, str):
            msg = f"{path}: key 'base' is {base_name!r}; expected a process file path"
            raise ConfigError(msg)
        base_path = path.parent / base_name
        if not base_path.is_file():
            msg = (
                f"{path}: key 'base' names {base_name!r}, but {base_path} is no "
                "file; expected a process file beside this one"
            )
            raise ConfigError(msg)
        base = load_yaml(base_path)
        if not isinstance(base, dict) or "base" in base:
            seen = base.get("base") if isinstance(base, dict) else base
            msg = (
                f"{path}: base process {base_path} must be a mapping without a "
                f"'base' of its own (one level only), got {seen!r}"
            )
            raise ConfigError(msg)
        own = {key: value for key, value in process.items() if key != "base"}
        process = {**base, **own}
    for key in ("name", "parton", "detector"):
        if not isinstance(process, dict) or key not in process:
            msg = f"{path}: process description lacks the key {key!r}"
            raise ConfigError(msg)
    return process


def process_files(path):
    """The process file and the file it takes sections from (``base``), if any.

    Args:
        path: the process YAML file.

    Returns:
        list[str]: ``[path]`` or ``[path, base path]``, for rule inputs.
    """
    path = Path(path)
    data = load_yaml(path)
    files = [str(path)]
    if isinstance(data, dict) and isinstance(data.get("base"), str):
        files.append(str(path.parent / data["base"]))
    return files


def check_sampling(sampling, key="sampling"):
    """Check the sampling keys that only act together.

    Args:
        sampling: the ``sampling`` section of the config.
        key: config key for the message.

    Raises:
        ConfigError: ``balance_quantile`` without ``support_margin`` (the bound
            is part of the support truncation, which null switches off).
    """
    quantile = sampling.get("balance_quantile")
    if quantile is not None and sampling.get("support_margin") is None:
        msg = (
            f"{key}.balance_quantile = {quantile!r} with {key}.support_margin = "
            "null: the balance bound is part of the support truncation, which "
            "support_margin null switches off; expected a support_margin >= 0 "
            "(the main job: 0.5) or balance_quantile null"
        )
        raise ConfigError(msg)


def check_pair_frames(frames, process, *, pair_masses=None, key="model.pair_frames"):
    """Check before any job runs that the pair frames name parton objects.

    Args:
        frames: the config value, e.g. ``[{"pair": ["q1", "q2"], "recoil": ["l1",
            "l2"]}]``, or None.
        process: the loaded process (``load_process``).
        pair_masses: the ``model.pair_masses`` value; an object may be in a frame
            or a mass pair, not both.
        key: config key for the message.

    Raises:
        ConfigError: unknown or repeated objects, recoil objects inside their own
            pair, or an object in two frames or in a frame and a mass pair.
    """
    if not frames:
        return
    pairs = [list(f["pair"]) for f in frames]
    for i, pair in enumerate(pairs):
        check_pair_masses([pair], process, key=f"{key}[{i}].pair")
    names = [str(o.get("name")) for o in process.get("parton", {}).get("objects", [])]
    used = [str(o) for p in pairs + [list(p) for p in pair_masses or []] for o in p]
    twice = sorted({o for o in used if used.count(o) > 1})
    if twice:
        msg = (
            f"{key} = {frames!r} and model.pair_masses = {pair_masses!r} use "
            f"{twice!r} more than once; expected each object in at most one pair"
        )
        raise ConfigError(msg)
    for i, frame in enumerate(frames):
        flags = [f for f in ("reference", "anchor", "directions") if frame.get(f)]
        if len(flags) > 1:
            msg = (
                f"{key}[{i}] = {frame!r} sets {' and '.join(flags)}: an anchored or "
                "direction frame keeps lab directions and has no decay-direction "
                "map whose pole reference could set; expected at most one of "
                "reference, anchor, directions"
            )
            raise ConfigError(msg)
        recoil = [str(o) for o in frame.get("recoil") or []]
        missing = [
            what
            for what, ok in (
                ("directions: true", frame.get("directions")),
                ("recoil objects", recoil),
            )
            if not ok
        ]
        if frame.get("align") and missing:
            msg = (
                f"{key}[{i}] = {frame!r} sets align without {' and '.join(missing)}: "
                "align turns the angles of a direction frame onto the balance "
                "against its recoil; expected directions: true and recoil objects "
                "with align: true"
            )
            raise ConfigError(msg)
        bad = [o for o in recoil if o not in names or o in map(str, frame["pair"])]
        if bad or len(set(recoil)) != len(recoil):
            msg = (
                f"{key} entry {frame!r}: recoil objects {recoil!r} must be distinct "
                f"parton objects outside the pair; got {bad or recoil!r}, parton "
                f"objects are {names!r}"
            )
            raise ConfigError(msg)


def check_pair_masses(
    pairs, process, *, key="model.pair_masses", lines=None, ordered=None
):
    """Check before any job runs that every pair names parton objects with pt, eta, phi.

    Args:
        pairs: the config value, e.g. ``[["q1", "q2"], ["l1", "l2"]]``, or None.
        process: the loaded process (``load_process``).
        key: config key for the message.
        lines: the ``pair_mass_lines`` value: None or one [mass, width] per pair.
        ordered: the ``pair_masses_ordered`` value: None or a subset of ``pairs``.

    Raises:
        ConfigError: an object that is not a parton object of the process, a
            process whose parton fields lack pt, eta or phi, or lines that do not
            match the pairs one to one.
    """
    if lines is not None and len(lines) != len(pairs or []):
        msg = (
            f"{key.replace('pair_masses', 'pair_mass_lines')} = {lines!r} has "
            f"{len(lines)} lines for the pairs {pairs!r}; expected one "
            "[mass, width] in GeV per pair"
        )
        raise ConfigError(msg)
    extra = [list(p) for p in ordered or [] if list(p) not in map(list, pairs or [])]
    if extra:
        msg = (
            f"{key.replace('pair_masses', 'pair_masses_ordered')} entries {extra!r} "
            f"are not in {key} = {pairs!r}; expected a subset of those pairs"
        )
        raise ConfigError(msg)
    if not pairs:
        return
    parton = process.get("parton", {})
    names = [str(o.get("name")) for o in parton.get("objects", [])]
    fields = [str(f) for f in parton.get("fields", [])]
    missing_fields = [f for f in ("pt", "eta", "phi") if f not in fields]
    if missing_fields:
        msg = (
            f"{key} = {pairs!r} needs parton fields pt, eta and phi; the process "
            f"{process.get('name')!r} has fields {fields!r}"
        )
        raise ConfigError(msg)
    for pair in pairs:
        if len(set(map(str, pair))) != len(pair):
            msg = (
                f"{key} entry {list(pair)!r} pairs an object with itself; expected "
                "two different parton objects, e.g. [q1, q2]"
            )
            raise ConfigError(msg)
        unknown = [str(o) for o in pair if str(o) not in names]
        if unknown:
            msg = (
                f"{key} entry {list(pair)!r}: {unknown!r} are not parton objects of "
                f"the process {process.get('name')!r}; expected names out of {names!r}"
            )
            raise ConfigError(msg)
