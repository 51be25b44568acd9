"""Derived observables (invariant masses, pair momenta, angles) of parton-level objects.

The parton-level arrays hold (pt, eta, phi) per object in columns named
``{object}_{component}``, e.g. ``q1_pt``, ``l2_phi``. Objects are treated as massless
four-vectors unless a ``{object}_m`` or ``{object}_mass`` column exists (detector-level
jets have one). All functions work on arrays of shape ``(..., d)``, so the same call
serves the parton-level truth ``(n_events, d)`` and the posterior draws
``(n_events, n_draws, d)``.

A derived observable is defined in the process config as::

    m_qq: {kind: mass, of: [q1, q2]}
    dphi_qq: {kind: dphi, of: [q1, q2], label: '$\\Delta\\phi_{qq}$'}

``kind`` is one of :data:`DERIVED_KINDS`; ``of`` lists the objects; ``label`` is an
optional plot label.
"""

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import vector

from cinnflow.errors import ConfigError

__all__ = [
    "DEFAULT_DEFINITIONS",
    "DERIVED_KINDS",
    "all_observables",
    "derived_observables",
    "observable_kinds",
    "observable_label",
    "observable_unit",
    "validate_definitions",
]

logger = logging.getLogger(__name__)

#: Kinds of derived observables and the number of objects each one takes
#: (None: any number >= 1).
DERIVED_KINDS = {"mass": None, "pt": None, "rapidity": None, "dphi": 2, "dr": 2}

#: The ZW -> (l l)(j j) observables, for tests and as a documented example.
DEFAULT_DEFINITIONS = {
    "m_qq": {"kind": "mass", "of": ["q1", "q2"]},
    "m_ll": {"kind": "mass", "of": ["l1", "l2"]},
    "pt_W": {"kind": "pt", "of": ["q1", "q2"]},
    "pt_Z": {"kind": "pt", "of": ["l1", "l2"]},
    "dphi_qq": {"kind": "dphi", "of": ["q1", "q2"]},
}

_MASS_SUFFIXES = ("m", "mass")
_DEFINITION_KEYS = {"kind", "of", "label"}

# Plot labels: LaTeX symbols of the objects and of the column/derived kinds.
_OBJECT_SYMBOLS = {
    "q1": "q_{1}",
    "q2": "q_{2}",
    "l1": r"\ell^{-}",
    "l2": r"\ell^{+}",
    "j1": "j_{1}",
    "j2": "j_{2}",
}
_KIND_UNITS = {
    "pt": "GeV",
    "mass": "GeV",
    "m": "GeV",
    "eta": "",
    "phi": "rad",
    "rapidity": "",
    "dphi": "rad",
    "dr": "",
}


def _objects(names):
    """Map object name -> {component: column index} for ``{object}_{component}``."""
    objects = {}
    for index, name in enumerate(names):
        obj, sep, component = str(name).rpartition("_")
        if sep:
            objects.setdefault(obj, {})[component] = index
    return {
        obj: comps
        for obj, comps in objects.items()
        if {"pt", "eta", "phi"} <= comps.keys()
    }


def validate_definitions(definitions, names):
    """Check derived-observable definitions against the available columns.

    Args:
        definitions: mapping observable name -> ``{"kind", "of"[, "label"]}``.
        names: column names of the array the observables are computed from.

    Raises:
        ConfigError: unknown kind, unknown object, wrong number of objects, unknown
            keys, or a derived name that clashes with a column name.
    """
    if not isinstance(definitions, Mapping):
        msg = (
            f"derived observable definitions must be a mapping, got "
            f"{type(definitions).__name__}: {definitions!r}"
        )
        raise ConfigError(msg)
    objects = _objects(names)
    columns = {str(n) for n in names}
    for name, spec in definitions.items():
        where = f"derived observable {name!r}"
        if name in columns:
            msg = f"{where} has the same name as a column; rename it"
            raise ConfigError(msg)
        if not isinstance(spec, Mapping):
            msg = f"{where}: expected a mapping with 'kind' and 'of', got {spec!r}"
            raise ConfigError(msg)
        unknown = set(spec) - _DEFINITION_KEYS
        if unknown:
            msg = (
                f"{where}: unknown keys {sorted(unknown)!r}; "
                f"allowed keys are {sorted(_DEFINITION_KEYS)!r}"
            )
            raise ConfigError(msg)
        kind = spec.get("kind")
        if kind not in DERIVED_KINDS:
            msg = (
                f"{where}: unknown kind {kind!r}; valid kinds are "
                f"{sorted(DERIVED_KINDS)!r}"
            )
            raise ConfigError(msg)
        of = spec.get("of")
        if isinstance(of, str) or not isinstance(of, Sequence) or not of:
            msg = f"{where}: 'of' must be a non-empty list of object names, got {of!r}"
            raise ConfigError(msg)
        missing = [obj for obj in of if obj not in objects]
        if missing:
            msg = (
                f"{where}: unknown objects {missing!r}; valid objects (with pt, eta "
                f"and phi columns) are {sorted(objects)!r}"
            )
            raise ConfigError(msg)
        n_required = DERIVED_KINDS[kind]
        if n_required is not None and len(of) != n_required:
            msg = (
                f"{where}: kind {kind!r} takes exactly {n_required} objects, "
                f"got {len(of)}: {list(of)!r}"
            )
            raise ConfigError(msg)


def _four_vector(x, components):
    """Build a vector.MomentumNumpy4D of shape ``x.shape[:-1]`` from one object."""
    pt = np.asarray(x[..., components["pt"]], dtype=np.float64)
    mass_index = next((components[s] for s in _MASS_SUFFIXES if s in components), None)
    if mass_index is None:
        mass = np.zeros_like(pt)
    else:
        mass = np.asarray(x[..., mass_index], dtype=np.float64)
    return vector.array(
        {
            "pt": pt,
            "eta": np.asarray(x[..., components["eta"]], dtype=np.float64),
            "phi": np.asarray(x[..., components["phi"]], dtype=np.float64),
            "mass": mass,
        }
    )


def _wrap_phi(dphi):
    """Wrap angles to [-pi, pi)."""
    return (dphi + np.pi) % (2.0 * np.pi) - np.pi


def derived_observables(x, names, definitions):
    """Compute derived observables from the columns of ``x``.

    Args:
        x: array of shape ``(..., d)``, e.g. ``(n_events, d)`` truth or
            ``(n_events, n_draws, d)`` posterior draws; GeV and radians.
        names: the ``d`` column names, ``{object}_{component}``.
        definitions: mapping observable name -> ``{"kind", "of"[, "label"]}``.

    Returns:
        dict[str, np.ndarray]: observable name -> float64 array of shape
        ``x.shape[:-1]``. ``mass`` is the invariant mass of the summed four-vectors
        (GeV, clipped at 0 against rounding), ``pt`` its transverse momentum (GeV),
        ``rapidity`` its rapidity, ``dphi`` = phi(first) - phi(second) wrapped to
        [-pi, pi), ``dr`` = sqrt(deta^2 + dphi^2) with pseudorapidity.

    Raises:
        ConfigError: invalid definitions (see :func:`validate_definitions`) or a
            last axis of ``x`` that does not match ``names``.
    """
    x = np.asarray(x)
    names = [str(n) for n in names]
    if x.ndim < 1 or x.shape[-1] != len(names):
        msg = (
            f"array of shape {x.shape} does not match the {len(names)} column "
            f"names {names!r}; expected shape (..., {len(names)})"
        )
        raise ConfigError(msg)
    validate_definitions(definitions, names)
    objects = _objects(names)

    cache = {}

    def vec(obj):
        if obj not in cache:
            cache[obj] = _four_vector(x, objects[obj])
        return cache[obj]

    result = {}
    for name, spec in definitions.items():
        kind, of = spec["kind"], list(spec["of"])
        if kind in ("dphi", "dr"):
            first, second = vec(of[0]), vec(of[1])
            dphi = _wrap_phi(np.asarray(first.phi) - np.asarray(second.phi))
            if kind == "dphi":
                value = dphi
            else:
                deta = np.asarray(first.eta) - np.asarray(second.eta)
                value = np.hypot(deta, dphi)
        else:
            total = vec(of[0])
            for obj in of[1:]:
                total = total + vec(obj)
            if kind == "mass":
                value = np.sqrt(np.clip(np.asarray(total.mass2), 0.0, None))
            elif kind == "pt":
                value = np.asarray(total.pt)
            else:
                value = np.asarray(total.rapidity)
        result[name] = np.asarray(value, dtype=np.float64).reshape(x.shape[:-1])
    logger.debug("computed %d derived observables for shape %s", len(result), x.shape)
    return result


def all_observables(x, names, definitions=None):
    """Return the raw columns followed by the derived observables, by name.

    Args:
        x: array of shape ``(..., d)``.
        names: the ``d`` column names.
        definitions: derived-observable definitions, or None for the columns only.

    Returns:
        dict[str, np.ndarray]: column views ``x[..., i]`` (original dtype) and
        float64 derived observables, each of shape ``x.shape[:-1]``.
    """
    x = np.asarray(x)
    names = [str(n) for n in names]
    if x.ndim < 1 or x.shape[-1] != len(names):
        msg = (
            f"array of shape {x.shape} does not match the {len(names)} column "
            f"names {names!r}; expected shape (..., {len(names)})"
        )
        raise ConfigError(msg)
    result = {name: x[..., i] for i, name in enumerate(names)}
    if definitions:
        result.update(derived_observables(x, names, definitions))
    return result


def observable_kinds(names, kinds, definitions=None):
    """Map every observable (columns and derived) to its kind.

    Args:
        names: column names.
        kinds: column kinds (``pt``, ``eta``, ``phi``, ``mass``, ``other``).
        definitions: derived-observable definitions, or None.

    Returns:
        dict[str, str]: observable name -> kind; derived ones get their
        definition's kind (``mass``, ``pt``, ``rapidity``, ``dphi``, ``dr``).
    """
    result = {str(n): str(k) for n, k in zip(names, kinds, strict=True)}
    for name, spec in (definitions or {}).items():
        result[name] = spec["kind"]
    return result


def _column_parts(name):
    obj, sep, component = name.rpartition("_")
    return (obj, component) if sep else (None, name)


def _pair_symbol(of):
    return " ".join(_OBJECT_SYMBOLS.get(obj, obj) for obj in of)


def observable_label(name, definitions=None, *, with_unit=True):
    """LaTeX label of an observable for plot axes, with the unit in brackets.

    Args:
        name: column name (``q1_pt``) or derived observable name.
        definitions: derived-observable definitions, or None.
        with_unit: append `` [unit]`` for dimensioned observables (axis labels);
            False gives the bare symbol (legends).

    Returns:
        str: e.g. ``'$p_{T}^{q_{1}}$ [GeV]'``, ``'$m_{q_{1} q_{2}}$ [GeV]'``; names
        that are not understood are returned as they are (plus a unit if known).
    """
    unit = observable_unit(name, definitions)
    suffix = f" [{unit}]" if unit and with_unit else ""
    definitions = definitions or {}
    if name in definitions:
        spec = definitions[name]
        if "label" in spec:
            return f"{spec['label']}{suffix}"
        pair = _pair_symbol(spec["of"])
        templates = {
            "mass": f"$m_{{{pair}}}$",
            "pt": f"$p_{{T}}^{{{pair}}}$",
            "rapidity": f"$y_{{{pair}}}$",
            "dphi": f"$\\Delta\\phi_{{{pair}}}$",
            "dr": f"$\\Delta R_{{{pair}}}$",
        }
        return f"{templates[spec['kind']]}{suffix}"
    obj, component = _column_parts(name)
    symbol = _OBJECT_SYMBOLS.get(obj, obj)
    templates = {
        "pt": f"$p_{{T}}^{{{symbol}}}$",
        "eta": f"$\\eta^{{{symbol}}}$",
        "phi": f"$\\phi^{{{symbol}}}$",
        "m": f"$m^{{{symbol}}}$",
        "mass": f"$m^{{{symbol}}}$",
    }
    if obj is None or component not in templates:
        return f"{name}{suffix}"
    return f"{templates[component]}{suffix}"


def observable_unit(name, definitions=None):
    """Unit of an observable: ``'GeV'``, ``'rad'`` or ``''`` (dimensionless/unknown).

    Args:
        name: column name or derived observable name.
        definitions: derived-observable definitions, or None.

    Returns:
        str: the unit.
    """
    definitions = definitions or {}
    if name in definitions:
        return _KIND_UNITS.get(definitions[name]["kind"], "")
    return _KIND_UNITS.get(_column_parts(name)[1], "")
