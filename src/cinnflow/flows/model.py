"""The conditional invertible network ``ConditionalINN`` (arXiv:2006.06685).

Direction (TFP convention, used throughout cinnflow): ``forward`` maps the latent
``z ~ N(0, 1)`` to parton level ``x_parton`` (this is how the flow samples);
``log_prob`` evaluates the density through ``inverse``. FrEIA and BayesFlow name
the two directions the other way round.

Chain, from latent to parton level (``tfb.Chain`` lists it right to left)::

    z -> coupling_00 -> permute_00 -> ... -> coupling_{n-1} -> global_affine_00
      -> residual_scale_00 -> regression_00 -> standardise_00 -> columns_00
      -> x_parton

``residual_scale_00`` and ``regression_00`` exist only with
``condition_regression=True``: the standardised preprocessed parton columns ``u``
are modelled as ``u = A @ f(c) + b + sigma * r``, with ``A``, ``b``, ``sigma`` fitted
by least squares on the training set, so the couplings only learn the residual
``r``. All fixed statistics are non-trainable variables saved with the weights.

References:
    M. Bellagente et al., "Invertible networks or partons to detector and back
    again", SciPost Phys. 9, 074 (2020), https://arxiv.org/abs/2006.06685
"""

import difflib
import json
import logging
import math
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from cinnflow.errors import CinnflowError, ConfigError, InputFileError, TrainingError
from cinnflow.flows.bijectors import (
    ConditionalAffineCoupling,
    ConditionalReflection,
    ConditionalShift,
    GlobalAffine,
    make_mlp,
    make_permutation,
)
from cinnflow.flows.frames import (
    PairFrame,
    balance_gradient,
    detector_frame_features,
    detector_reference,
    n_frame_features,
    pair_balance,
)
from cinnflow.flows.preprocessing import (
    STD_FLOOR,
    ColumnTransform,
    PairMass,
    StandardScaling,
    check_kinds,
    condition_features,
    n_condition_features,
)
from cinnflow.io.atomic import atomic_path

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["MODEL_CONFIG_KEYS", "ConditionalINN"]

logger = logging.getLogger(__name__)

MODEL_CONFIG_KEYS = (
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
)
# Keys of MODEL_CONFIG_KEYS that may be left out (they default to False/True/none).
_OPTIONAL_KEYS = (
    "condition_regression",
    "phi_reference",
    "pair_masses",
    "pair_mass_lines",
    "pair_masses_ordered",
    "pair_frames",
    "pair_features",
)
_CONFIG_FILE = "config.json"
# Levels at which ``adapt`` records the quantiles of each recoil frame's balance
# (``ConditionalINN.balance``), for ``sampling.balance_quantile``.
BALANCE_LEVELS = (0.9, 0.99, 0.999, 0.9999, 1.0)
# Positions of the four angles (eta_a, phi_a, eta_b, phi_b) among a direction
# frame's six slots, the columns an aligned frame's reflection turns.
_ANGLE_SLOTS = (1, 2, 4, 5)
_WEIGHTS_PREFIX = "weights"
_FORMAT_VERSION = 1


class ConditionalINN(tf.Module):
    """Conditional INN for p(x_parton | c_detector) as a TFP TransformedDistribution.

    Use ``adapt`` on the training set before training; it fits the preprocessing
    statistics. Only rank-2 inputs (n_events, n_columns) are supported.
    """

    def __init__(
        self,
        parton_kinds,
        detector_kinds,
        *,
        n_blocks,
        subnet_hidden,
        condition_hidden,
        condition_dim,
        clamp,
        seed,
        condition_encoder=None,
        condition_regression=True,
        phi_reference=False,
        mass_pairs=(),
        mass_lines=None,
        mass_pairs_ordered=None,
        frames=(),
        feature_pairs=(),
        fuse_condition=True,
        jit_compile=True,
    ):
        """Build the network (weights are created immediately).

        Args:
            parton_kinds: kind of each parton column (``pt``, ``eta``, ``phi``,
                ``mass``, ``other``); d = len(parton_kinds) >= 2.
            detector_kinds: kind of each detector column.
            n_blocks: number of coupling blocks.
            subnet_hidden: hidden widths of every coupling subnet MLP.
            condition_hidden: hidden widths of the default condition encoder MLP.
            condition_dim: width of the condition embedding fed to every coupling.
            clamp: bound of the soft-clamped coupling log-scales.
            seed: integer seed of the weight initialisation and the permutations.
            condition_encoder: optional ``tf_keras`` layer or model mapping the
                standardised condition features (n_events, n_features) to
                (n_events, condition_dim); replaces the default MLP.
            condition_regression: model the residual of a least-squares linear fit
                of the parton columns on the condition features.
            phi_reference: model the k-th parton phi column relative to the k-th
                detector phi column (e.g. q1 to j1, l1 to l1), so that the seam of
                the phi map sits opposite the matched detector object; needs as many
                detector as parton phi columns.
            mass_pairs: sequence of six parton column indices ``(pt1, eta1, phi1,
                pt2, eta2, phi2)`` of massless pairs (e.g. the W's quarks); the flow
                models each pair's invariant mass in place of pt2 (``PairMass``), so
                that a narrow resonance is one narrow coordinate. ``log_prob`` and
                ``sample`` stay in the parton columns.
            mass_lines: None, or one ``(mass, width)`` in GeV per entry of
                ``mass_pairs``: the flow sees that pair's mass through the
                Breit-Wigner line's cumulative distribution and a probit (see
                ``ColumnTransform``), so the line is a unit Gaussian coordinate.
            mass_pairs_ordered: None, or one flag per entry of ``mass_pairs``:
                that pair is pT-ordered (pt1 > pt2 in every event) and the flow
                models ``log(pt1 / pt2 - 1)`` in place of pt1, so every draw is
                ordered too (``PairMass(ordered=...)``).
            frames: sequence of dicts ``{"pair": six column indices, "line": None
                or (mass, width) in GeV, "recoil": list of (pt, phi) column
                indices}`` and the flags ``reference``, ``ordered``, ``anchor``,
                ``directions``: the flow models that pair in frame coordinates
                (``PairFrame``: transverse momentum plus the recoil's, rapidity,
                mass on its line, decay direction or lab directions), and the
                condition gets the same coordinates of the matched detector
                objects.
            feature_pairs: sequence of six parton column indices of pairs whose
                matched detector objects add their pair kinematics (pT, rapidity,
                log mass, rest-frame direction; ``detector_frame_features``) to
                the condition features: a narrow line (the Z's leptons) shifts the
                posterior by a function of the measured pair mass, which the
                condition network would otherwise have to compute from the
                single objects to a fraction of a percent.
            fuse_condition: couplings compute the condition part of their
                subnets in one matmul, once per event when sampling (see
                ``ConditionalAffineCoupling``); a speed option, same weights.
            jit_compile: compile ``sample`` with XLA; a speed option.

        Raises:
            ConfigError: for unknown kinds or out-of-range sizes.
        """
        super().__init__(name="conditional_inn")
        self.parton_kinds = check_kinds(parton_kinds, what="parton_kinds")
        self.detector_kinds = check_kinds(detector_kinds, what="detector_kinds")
        _check_sizes(n_blocks, subnet_hidden, condition_hidden, condition_dim, clamp)
        if len(self.parton_kinds) < 2:
            msg = f"need at least 2 parton columns, got {len(self.parton_kinds)}"
            raise ConfigError(msg)
        self.init_args = {
            "parton_kinds": list(self.parton_kinds),
            "detector_kinds": list(self.detector_kinds),
            "n_blocks": int(n_blocks),
            "subnet_hidden": [int(h) for h in subnet_hidden],
            "condition_hidden": [int(h) for h in condition_hidden],
            "condition_dim": int(condition_dim),
            "clamp": float(clamp),
            "seed": int(seed),
            "condition_regression": bool(condition_regression),
            "phi_reference": bool(phi_reference),
            "mass_pairs": [[int(i) for i in p] for p in mass_pairs],
            "mass_lines": None
            if mass_lines is None
            else [[float(v) for v in line] for line in mass_lines],
            "mass_pairs_ordered": [bool(o) for o in mass_pairs_ordered]
            if mass_pairs_ordered is not None
            else [False] * len(mass_pairs),
            "frames": [_frame_args(f) for f in frames],
            "feature_pairs": [[int(i) for i in p] for p in feature_pairs],
            "fuse_condition": bool(fuse_condition),
            "jit_compile": bool(jit_compile),
        }
        self.custom_encoder = condition_encoder is not None
        dim = len(self.parton_kinds)
        self.frames = self._build_frames()
        self.feature_pairs = []
        for pair in self.init_args["feature_pairs"]:
            self._check_pair_kinds(pair, "feature pair")
            self.feature_pairs.append([self._detector_column(j) for j in pair])
        n_features = (
            n_condition_features(self.detector_kinds)
            + sum(
                n_frame_features(f.recoil, f.anchor, f.directions) for f in self.frames
            )
            + n_frame_features(()) * len(self.feature_pairs)
        )
        self.dim, self.n_features = dim, n_features

        # Fixed statistics, filled by adapt() and saved with the weights.
        def stat(value, name):
            return tf.Variable(value, trainable=False, dtype=tf.float32, name=name)

        self.parton_mean = stat(np.zeros(dim), "parton_mean")
        self.parton_std = stat(np.ones(dim), "parton_std")
        self.feature_mean = stat(np.zeros(n_features), "feature_mean")
        self.feature_std = stat(np.ones(n_features), "feature_std")
        self.regression_weight = stat(np.zeros((dim, n_features)), "regression_weight")
        self.regression_bias = stat(np.zeros(dim), "regression_bias")
        self.residual_std = stat(np.ones(dim), "residual_std")
        self.adapted = tf.Variable(False, trainable=False, name="adapted")
        # Range of the preprocessed training columns (numpy, saved in config.json;
        # None for models saved before it existed).
        self.support_min = self.support_max = None
        # (leading, trailing) pt columns of the pair_masses pairs that are ordered
        # in every training event; support truncation keeps that order.
        self.support_order = ()
        # log pt (min, max, std) of the pair columns the flow does not model as pt
        # (column index -> triple), their support box; empty without pairs.
        self.pair_pt_box = {}
        # Quantiles (at BALANCE_LEVELS) of the hard process's transverse momentum
        # per pair frame with recoil: the frame's pair plus its recoil, in GeV.
        self.balance_quantiles = {}

        rng = np.random.default_rng(seed)
        # Weight-initialisation seeds, one per MLP, drawn before the permutations.
        init_seeds = rng.integers(0, 2**20, size=n_blocks + 1)
        if condition_encoder is None:
            condition_encoder = make_mlp(
                self.init_args["condition_hidden"],
                int(condition_dim),
                seed=int(init_seeds[-1]),
                name="condition_encoder",
            )
        self.condition_encoder = condition_encoder
        self.coupling_names = [f"coupling_{i:02d}" for i in range(n_blocks)]
        self.couplings = []
        flow = []  # From latent to parton level; reversed for tfb.Chain below.
        for i, name in enumerate(self.coupling_names):
            coupling = ConditionalAffineCoupling(
                dim,
                subnet_hidden=subnet_hidden,
                clamp=clamp,
                seed=int(init_seeds[i]),
                name=name,
                fuse_condition=fuse_condition,
            )
            self.couplings.append(coupling)
            flow.append(coupling)
            if i < n_blocks - 1:
                flow.append(make_permutation(dim, rng=rng, name=f"permute_{i:02d}"))
        self.global_affine = GlobalAffine(dim, name="global_affine_00")
        flow.append(self.global_affine)
        # Direction frames with ``align``: the combination of their four angles
        # that the balance across the axis fixes is one axis of the couplings.
        self.reflections = [
            ConditionalReflection(
                [frame.pair[k] for k in _ANGLE_SLOTS], name=f"align_{i:02d}"
            )
            for i, frame in enumerate(self.frames)
            if frame.align
        ]
        flow.extend(self.reflections)
        self.regression_name = None
        if condition_regression:
            flow.append(
                StandardScaling(
                    tf.zeros([dim]), self.residual_std, name="residual_scale_00"
                )
            )
            self.regression_name = "regression_00"
            flow.append(
                ConditionalShift(
                    self.regression_weight,
                    self.regression_bias,
                    name=self.regression_name,
                )
            )
        flow.append(
            StandardScaling(self.parton_mean, self.parton_std, name="standardise_00")
        )
        self.pair_mass = None
        # Kinds of the columns the flow models: a pair's mass replaces its pt2.
        self.flow_kinds = list(self.parton_kinds)
        if self.init_args["mass_pairs"]:
            self.pair_mass = PairMass(
                self.init_args["mass_pairs"],
                ordered=self.init_args["mass_pairs_ordered"],
                name="pair_mass_00",
            )
            for pair in self.init_args["mass_pairs"]:
                self._check_pair_kinds(pair, "mass pair")
            for slot in self.pair_mass.mass_slots:
                self.flow_kinds[slot] = "mass"
            for slot, ordered in zip(
                self.pair_mass.lead_slots, self.pair_mass.ordered, strict=True
            ):
                if ordered:
                    self.flow_kinds[slot] = "other"
        for frame in self.frames:
            for slot, kind in zip(frame.pair, frame.flow_kinds, strict=True):
                self.flow_kinds[slot] = kind
        self.phi_reference_index = self._phi_reference_index(phi_reference)
        lines = self.init_args["mass_lines"]
        if lines is not None and (
            len(lines) != len(self.init_args["mass_pairs"])
            or any(len(line) != 2 for line in lines)
        ):
            msg = (
                f"mass lines {lines!r}: expected one (mass, width) in GeV per mass "
                f"pair ({len(self.init_args['mass_pairs'])} pairs)"
            )
            raise ConfigError(msg)
        slot_lines = (
            {}
            if lines is None
            else dict(zip(self.pair_mass.mass_slots, lines, strict=True))
        )
        for frame in self.frames:
            if frame.line is not None:
                slot_lines[frame.mass_slot] = frame.line
        self.column_transform = ColumnTransform(
            self.flow_kinds,
            phi_reference=self.phi_reference_index is not None,
            lines=slot_lines or None,
            name="columns_00",
        )
        flow.append(self.column_transform)
        # Bijectors after the coupling part: applied last when sampling.
        self._output_bijectors = [self.column_transform]
        if self.pair_mass is not None:
            flow.append(self.pair_mass)
            self._output_bijectors.append(self.pair_mass)
        for frame in self.frames:
            flow.append(frame)
            self._output_bijectors.append(frame)
        self.bijector = tfb.Chain(list(reversed(flow)), name="cinn_chain")
        self.distribution = tfd.TransformedDistribution(
            tfd.MultivariateNormalDiag(loc=tf.zeros([dim])),
            bijector=self.bijector,
            name="cinn",
        )
        self._build()
        n_weights = sum(int(np.prod(v.shape)) for v in self.trainable_variables)
        logger.info(
            "ConditionalINN: %d parton columns, %d condition features, %d blocks, "
            "%d trainable weights",
            dim,
            n_features,
            n_blocks,
            n_weights,
        )

    def _build_frames(self):
        """``PairFrame`` bijectors of ``init_args["frames"]``, in forward order.

        A frame whose recoil objects belong to another frame comes after it (its
        forward map reads their lab coordinates). Each frame also carries its
        ``line`` and the matched detector columns (``detector_pair``,
        ``detector_recoil``; the k-th parton column of a kind to the k-th detector
        column of that kind) for the condition features.
        """
        frames = []
        for i, args in enumerate(self.init_args["frames"]):
            pair, recoil = args["pair"], [tuple(r) for r in args["recoil"]]
            self._check_pair_kinds(pair, "pair frame")
            frame = PairFrame(
                pair,
                recoil=recoil,
                reference=args["reference"],
                ordered=args["ordered"],
                anchor=args.get("anchor", False),
                directions=args.get("directions", False),
                name=f"pair_frame_{i:02d}",
            )
            frame.line = args["line"]
            frame.align = bool(args.get("align", False))
            frame.objects = args.get("objects")
            frame.detector_pair = [self._detector_column(j) for j in pair]
            frame.detector_recoil = [
                (self._detector_column(p), self._detector_column(f)) for p, f in recoil
            ]
            frames.append(frame)
        used = [j for f in frames for j in f.pair]
        if self.init_args["mass_pairs"]:
            used += [j for p in self.init_args["mass_pairs"] for j in p]
        if len(set(used)) != len(used):
            msg = (
                f"pair frames {[f.pair for f in frames]} and mass pairs "
                f"{self.init_args['mass_pairs']} share columns; expected each "
                "object in at most one of them"
            )
            raise ConfigError(msg)
        ordered = []
        while frames:
            ready = [
                f
                for f in frames
                if not any(
                    set(c for r in f.recoil for c in r) & set(g.pair)
                    for g in frames
                    if g is not f
                )
            ]
            if not ready:
                msg = (
                    f"pair frames {[f.pair for f in frames]} recoil against each "
                    "other in a cycle; expected at most one of two frames to use "
                    "the other's objects as recoil"
                )
                raise ConfigError(msg)
            ordered += ready
            frames = [f for f in frames if f not in ready]
        return ordered

    def _check_pair_kinds(self, pair, what):
        """A pair's six columns must be (pt, eta, phi) of two objects."""
        kinds = [self.parton_kinds[j] for j in pair]
        if kinds != ["pt", "eta", "phi"] * 2:
            msg = (
                f"{what} columns {list(pair)} have kinds {kinds}; expected (pt, eta, "
                "phi) of two objects"
            )
            raise ConfigError(msg)

    def _detector_column(self, parton_column):
        """The detector column matched to a parton column (same kind, same rank)."""
        kind = self.parton_kinds[parton_column]
        rank = [i for i, k in enumerate(self.parton_kinds) if k == kind].index(
            parton_column
        )
        detector = [i for i, k in enumerate(self.detector_kinds) if k == kind]
        if rank >= len(detector):
            msg = (
                f"parton column {parton_column} is the {rank + 1}. {kind} column, but "
                f"the detector has only {len(detector)} {kind} columns; pair frames "
                "need a matched detector object for every parton object"
            )
            raise ConfigError(msg)
        return detector[rank]

    def _phi_reference_index(self, phi_reference):
        """Detector phi columns, one per phi column the flow models (or None)."""
        if not phi_reference:
            return None
        parton_phi = [i for i, k in enumerate(self.parton_kinds) if k == "phi"]
        detector_phi = [i for i, k in enumerate(self.detector_kinds) if k == "phi"]
        if not parton_phi or len(parton_phi) != len(detector_phi):
            msg = (
                f"phi_reference needs as many detector phi columns "
                f"({len(detector_phi)}) as parton phi columns ({len(parton_phi)}),"
                " and at least one"
            )
            raise ConfigError(msg)
        # Pair frames replace their phi columns: the reference of the rest.
        index = [
            d
            for p, d in zip(parton_phi, detector_phi, strict=True)
            if self.flow_kinds[p] == "phi"
        ]
        return np.asarray(index, np.int32) if index else None

    @classmethod
    def from_config(
        cls, model_cfg, parton_kinds, detector_kinds, seed, parton_names=None
    ):
        """Build from the ``model`` section of the workflow config.

        Args:
            model_cfg: dict with keys ``MODEL_CONFIG_KEYS``
                (``condition_regression``, ``phi_reference`` and ``pair_masses``
                optional). ``pair_masses`` lists object pairs such as
                ``[[q1, q2], [l1, l2]]`` whose mass the flow models in place of
                the second object's pt (see ``mass_pairs``).
            parton_kinds: kinds of the parton columns.
            detector_kinds: kinds of the detector columns.
            seed: integer seed.
            parton_names: names of the parton columns (``q1_pt``, ...); needed
                with ``pair_masses``.

        Returns:
            ConditionalINN

        Raises:
            ConfigError: for unknown or missing keys.
        """
        cfg = dict(model_cfg)
        unknown = sorted(set(cfg) - set(MODEL_CONFIG_KEYS))
        if unknown:
            hints = {
                k: difflib.get_close_matches(k, MODEL_CONFIG_KEYS) for k in unknown
            }
            msg = f"unknown model config keys {unknown!r} (did you mean {hints}?)"
            raise ConfigError(msg)
        missing = [
            k for k in MODEL_CONFIG_KEYS if k not in cfg and k not in _OPTIONAL_KEYS
        ]
        if missing:
            msg = f"model config lacks keys {missing!r}; required {MODEL_CONFIG_KEYS}"
            raise ConfigError(msg)
        cfg["mass_pairs_ordered"] = _ordered_flags(
            cfg.get("pair_masses"), cfg.pop("pair_masses_ordered", None)
        )
        cfg["mass_pairs"] = _mass_pair_columns(
            cfg.pop("pair_masses", None), parton_names
        )
        cfg["mass_lines"] = cfg.pop("pair_mass_lines", None)
        cfg["frames"] = _frame_columns(cfg.pop("pair_frames", None), parton_names)
        cfg["feature_pairs"] = _mass_pair_columns(
            cfg.pop("pair_features", None), parton_names, key="pair_features"
        )
        return cls(
            [str(k) for k in parton_kinds],
            [str(k) for k in detector_kinds],
            seed=seed,
            **cfg,
        )

    # ----------------------------------------------------------------- preprocess

    def _raw_features(self, c_detector):
        """Unstandardised condition features, with those of the pair frames."""
        c_detector = tf.convert_to_tensor(c_detector, tf.float32)
        raw = condition_features(c_detector, self.detector_kinds)
        if not self.frames and not self.feature_pairs:
            return raw
        extra = [
            detector_frame_features(
                c_detector,
                f.detector_pair,
                f.detector_recoil,
                f.ordered,
                f.anchor,
                None if f.line is None else f.line[0],
                f.directions,
            )
            for f in self.frames
        ]
        extra += [
            detector_frame_features(c_detector, pair, (), ordered=False)
            for pair in self.feature_pairs
        ]
        return tf.concat([raw, *extra], axis=-1)

    def _features(self, c_detector):
        return (self._raw_features(c_detector) - self.feature_mean) / self.feature_std

    def adapt(self, x_parton, c_detector):
        """Fit the preprocessing statistics on the training set.

        Args:
            x_parton: array (n_events, d) in GeV and radians.
            c_detector: array (n_events, n_detector).

        Raises:
            CinnflowError: if shapes disagree or pt/mass columns are not positive.
        """
        x_parton = np.asarray(x_parton, np.float32)
        c_detector = np.asarray(c_detector, np.float32)
        self._check_inputs(x_parton, c_detector)
        positive = [k in ("pt", "mass") for k in self.parton_kinds]
        if np.any(x_parton[:, positive] <= 0):
            msg = "parton pt and mass columns must be > 0 (they are log-transformed)"
            raise CinnflowError(msg)
        x_flow = x_parton
        if self.pair_mass is not None:
            for lead, trail, ordered in zip(
                self.pair_mass.lead_slots,
                self.pair_mass.mass_slots,
                self.pair_mass.ordered,
                strict=True,
            ):
                n_bad = int(np.sum(x_parton[:, lead] <= x_parton[:, trail]))
                if ordered and n_bad:
                    msg = (
                        f"pair_masses_ordered needs parton column {lead} > column "
                        f"{trail} (pt1 > pt2) in every event; {n_bad} of "
                        f"{len(x_parton)} events are not ordered"
                    )
                    raise CinnflowError(msg)
        for frame in self.frames:
            lead, trail = frame.pair[0], frame.pair[3]
            n_bad = int(np.sum(x_parton[:, lead] < x_parton[:, trail]))
            if frame.ordered and n_bad:
                what = (
                    list(frame.objects)
                    if frame.objects
                    else f"parton columns {list(frame.pair)}"
                )
                msg = (
                    f"pair frame on {what} is ordered (the "
                    f"default), but column {lead} < column {trail} (pt1 < pt2) in "
                    f"{n_bad} of {len(x_parton)} events; for a pair labelled "
                    "otherwise (e.g. leptons by charge) set ordered: false"
                )
                raise CinnflowError(msg)
        # Physics to the flow's columns: the output bijectors after columns_00.
        poles = self._frame_kwargs(self._frame_references(c_detector))
        for bijector in reversed(self._output_bijectors[1:]):
            x_flow = bijector.inverse(x_flow, **poles.get(bijector.name, {})).numpy()
        mass_slots = [f.mass_slot for f in self.frames]
        if self.pair_mass is not None:
            mass_slots += list(self.pair_mass.mass_slots)
        if mass_slots:
            masses = x_flow[:, mass_slots]
            if not np.all(np.isfinite(x_flow) & (masses > 0).all(axis=1)[:, None]):
                msg = (
                    "pair masses or frames: some pairs have zero or non-finite "
                    "invariant mass "
                    "(collinear objects); expected separated massless pairs"
                )
                raise CinnflowError(msg)
        y = self.column_transform.inverse(
            x_flow, conditional_input=self._reference(c_detector)
        )
        y = y.numpy().astype(np.float64)
        mean, std = y.mean(axis=0), np.maximum(y.std(axis=0), STD_FLOOR)
        # Training support in preprocessed units (log pt, eta, ...), see support().
        self.support_min, self.support_max = y.min(axis=0), y.max(axis=0)
        self.support_order = self._ordered_pairs(x_parton)
        self.pair_pt_box = {}
        for frame in self.frames:
            for slot in frame.pair:
                if self.parton_kinds[slot] == "phi":
                    continue
                value = x_parton[:, slot].astype(np.float64)
                if self.parton_kinds[slot] == "pt":
                    value = np.log(value)
                self.pair_pt_box[slot] = (
                    float(value.min()),
                    float(value.max()),
                    float(value.std()),
                )
        if self.pair_mass is not None:
            slots = list(self.pair_mass.mass_slots) + [
                lead
                for lead, ordered in zip(
                    self.pair_mass.lead_slots, self.pair_mass.ordered, strict=True
                )
                if ordered
            ]
            for slot in sorted(slots):
                log_pt = np.log(x_parton[:, slot].astype(np.float64))
                self.pair_pt_box[slot] = (
                    float(log_pt.min()),
                    float(log_pt.max()),
                    float(log_pt.std()),
                )
        self.balance_quantiles = {
            i: tuple(float(v) for v in np.quantile(values, BALANCE_LEVELS))
            for i, values in self.balance(x_parton).items()
        }
        u = (y - mean) / std
        raw = self._raw_features(c_detector).numpy().astype(np.float64)
        f_mean, f_std = raw.mean(axis=0), np.maximum(raw.std(axis=0), STD_FLOOR)
        features = (raw - f_mean) / f_std
        weight = np.zeros((self.dim, self.n_features))
        bias = np.zeros(self.dim)
        residual_std = np.ones(self.dim)
        if self.regression_name is not None:
            design = np.concatenate([features, np.ones((len(u), 1))], axis=1)
            coef, *_ = np.linalg.lstsq(design, u, rcond=None)
            weight, bias = coef[:-1].T, coef[-1]
            residual = u - design @ coef
            residual_std = np.maximum(residual.std(axis=0), STD_FLOOR)
            logger.info(
                "condition regression: residual std per parton column %s",
                np.array2string(residual_std, precision=3),
            )
        for var, value in [
            (self.parton_mean, mean),
            (self.parton_std, std),
            (self.feature_mean, f_mean),
            (self.feature_std, f_std),
            (self.regression_weight, weight),
            (self.regression_bias, bias),
            (self.residual_std, residual_std),
        ]:
            var.assign(value.astype(np.float32))
        self.adapted.assign(True)
        logger.info("adapted preprocessing on %d events", len(x_parton))

    def _check_inputs(self, x_parton, c_detector):
        if x_parton is not None and (
            x_parton.ndim != 2 or x_parton.shape[1] != self.dim
        ):
            msg = f"x_parton has shape {x_parton.shape}; expected (n, {self.dim})"
            raise CinnflowError(msg)
        n_det = len(self.detector_kinds)
        if c_detector.ndim != 2 or c_detector.shape[1] != n_det:
            msg = f"c_detector has shape {c_detector.shape}; expected (n, {n_det})"
            raise CinnflowError(msg)
        if x_parton is not None and len(x_parton) != len(c_detector):
            msg = f"{len(x_parton)} parton rows but {len(c_detector)} detector rows"
            raise CinnflowError(msg)

    # -------------------------------------------------------------------- density

    def _reference(self, c_detector):
        """Reference phi angles (n, n_phi) of ``columns_00``, or None."""
        if self.phi_reference_index is None:
            return None
        c_detector = tf.convert_to_tensor(c_detector, tf.float32)
        return tf.gather(c_detector, self.phi_reference_index, axis=1)

    def _frame_references(self, c_detector):
        """Per pair frame its detector input, or None.

        The direction (n, 3) of the pole of a frame with ``reference``; the (eta,
        phi) (n, 2) of the first matched detector object of an ordered anchored
        or direction frame (it picks the anchor).
        """
        references = []
        for f in self.frames:
            if f.reference:
                references.append(detector_reference(c_detector, f.detector_pair))
            elif f.needs_label:
                c = tf.convert_to_tensor(c_detector, tf.float32)
                references.append(tf.gather(c, f.detector_pair[1:3], axis=1))
            else:
                references.append(None)
        aligned = [f for f in self.frames if f.align]
        return references + [self._balance_axis(c_detector, f) for f in aligned]

    def _balance_axis(self, c_detector, frame):
        """Direction (n, 4) of an aligned frame's balance constraint, flow units.

        The gradient of the balance across the axis with respect to the four
        measured angles (``balance_gradient``), taken into the coordinates the
        couplings see: each angle's residual after the standardisation and the
        condition regression (``d angle / d residual``: the column's standard
        deviation, its residual scale, and pi for a phi column near its
        reference, ``phi = ref + pi tanh(y)``).
        """
        gradient = balance_gradient(
            c_detector,
            frame.detector_pair,
            frame.detector_recoil,
            None if frame.line is None else frame.line[0],
        )
        slots = [frame.pair[k] for k in _ANGLE_SLOTS]
        scale = tf.gather(self.parton_std, slots)
        if self.regression_name is not None:
            scale = scale * tf.gather(self.residual_std, slots)
        reference = self.phi_reference_index is not None
        c = tf.cast(tf.convert_to_tensor(c_detector, tf.float32), tf.float64)
        factors = []
        for k, slot in zip(_ANGLE_SLOTS, slots, strict=True):
            if self.flow_kinds[slot] != "phi":
                factors.append(tf.ones_like(c[:, 0]))
                continue
            detector_phi = c[:, frame.detector_pair[k]]
            phi = tf.zeros_like(detector_phi) if reference else detector_phi
            factors.append(math.pi * (1.0 - tf.square(phi / math.pi)))
        axis = gradient * tf.stack(factors, axis=-1) * tf.cast(scale, tf.float64)
        return tf.cast(axis, tf.float32)

    def _frame_kwargs(self, frame_references):
        routed = list(self.frames) + self.reflections
        return {
            bijector.name: {"conditional_input": ref}
            for bijector, ref in zip(routed, frame_references or [], strict=False)
            if ref is not None
        }

    def bijector_kwargs(
        self,
        features,
        embedding,
        reference=None,
        condition_repeats=None,
        frame_references=None,
    ):
        """Condition keyword arguments for ``tfb.Chain``, routed by bijector name.

        Args:
            features: standardised condition features (n, n_features).
            embedding: condition embedding (n / condition_repeats, condition_dim).
            reference: reference phi angles (n, n_phi) from ``_reference``; needed
                only with ``phi_reference``.
            condition_repeats: None, or the number r of consecutive input rows that
                share one row of ``embedding`` (posterior draws of one event); the
                couplings then compute their condition projection once per event.
            frame_references: per pair frame, its pole directions (n, 3) from
                ``_frame_references`` (None entries for frames without one).

        Returns:
            dict mapping bijector names to their keyword arguments.
        """
        coupling_kwargs = {"conditional_input": embedding}
        if condition_repeats is not None:
            coupling_kwargs["condition_repeats"] = condition_repeats
        kwargs = {name: dict(coupling_kwargs) for name in self.coupling_names}
        if self.regression_name is not None:
            kwargs[self.regression_name] = {"conditional_input": features}
        if self.phi_reference_index is not None:
            kwargs[self.column_transform.name] = {"conditional_input": reference}
        kwargs.update(self._frame_kwargs(frame_references))
        return kwargs

    def log_prob(self, x_parton, c_detector):
        """Log density of ``x_parton`` given ``c_detector``, in physics units.

        Args:
            x_parton: float32 (n_events, d) in GeV and radians.
            c_detector: float32 (n_events, n_detector).

        Returns:
            float32 tensor (n_events,): log p(x_parton | c_detector).
        """
        features = self._features(c_detector)
        embedding = self.condition_encoder(features)
        x_parton = tf.convert_to_tensor(x_parton, tf.float32)
        return self.distribution.log_prob(
            x_parton,
            bijector_kwargs=self.bijector_kwargs(
                features,
                embedding,
                self._reference(c_detector),
                frame_references=self._frame_references(c_detector),
            ),
        )

    def forward_latent(self, z, c_detector, *, clip_margin=None):
        """Map latent draws to parton level.

        Args:
            z: float32 (n_events, n_draws, d) standard-normal draws.
            c_detector: float32 (n_events, n_detector).
            clip_margin: None, or clip the preprocessed draws (log pt, eta,
                log mass, other; not phi) into the training range widened by this many
                standard deviations per column before the column transform. A
                draw far in the tail of an untrained flow can overflow exp(log pt)
                to inf, and the gradient of a loss on such draws is NaN even where
                the loss masks them; clipped columns have a zero, finite gradient.
                For training terms on draws (the MMD); sampling keeps its own
                truncation (``support``).

        Returns:
            float32 tensor (n_events, n_draws, d) in GeV and radians.
        """
        z = tf.convert_to_tensor(z, tf.float32)
        n_events, n_draws = tf.shape(z)[0], tf.shape(z)[1]
        features = self._features(c_detector)
        embedding = self.condition_encoder(features)
        reference = self._reference(c_detector)
        # The embedding stays one row per event: every coupling projects it once
        # and repeats the projection over the draws (see condition_repeats).
        features = tf.repeat(features, n_draws, axis=0)
        if reference is not None:
            reference = tf.repeat(reference, n_draws, axis=0)
        poles = [
            None if p is None else tf.repeat(p, n_draws, axis=0)
            for p in self._frame_references(c_detector)
        ]
        kwargs = self.bijector_kwargs(
            features, embedding, reference, n_draws, frame_references=poles
        )
        z = tf.reshape(z, [-1, self.dim])
        if clip_margin is None:
            x = self.bijector.forward(z, **kwargs)
        else:
            low, high = self._support_box(clip_margin)
            # phi stays unclipped: its transform (tanh) is bounded already.
            phi = tf.constant([k == "phi" for k in self.flow_kinds])
            low = tf.where(phi, -np.inf, low)
            high = tf.where(phi, np.inf, high)
            # The chain without the output bijectors (applied last, in order).
            n_out = len(self._output_bijectors)
            inner = tfb.Chain(self.bijector.bijectors[n_out:], name="cinn_inner")
            x = tf.clip_by_value(inner.forward(z, **kwargs), low, high)
            for bijector in self._output_bijectors:
                x = bijector.forward(x, **kwargs.get(bijector.name, {}))
        return tf.reshape(x, [n_events, n_draws, self.dim])

    def _support_box(self, margin):
        """Training range of the preprocessed columns widened by ``margin`` std."""
        if self.support_min is None:
            msg = "clip_margin needs the training support: call adapt() first"
            raise CinnflowError(msg)
        # Tensor arithmetic, so that it also works while a tf.function traces.
        std = margin * self.parton_std
        low = tf.constant(self.support_min, tf.float32) - std
        high = tf.constant(self.support_max, tf.float32) + std
        return low, high

    def _ordered_pairs(self, x_parton):
        """pt columns (i, j) of mass pairs and pair frames with x_i >= x_j always.

        With pair masses the flow does not model the second pt, so nothing in the
        coordinates keeps a pT-ordered pair ordered: a draw can have pt2 > pt1,
        which the training data (q1 is the leading quark) never has.
        """
        pairs = [f.pair for f in self.frames]
        if self.pair_mass is not None:
            pairs += list(self.pair_mass.pairs)
        order = []
        for pair in pairs:
            lead, trail = pair[0], pair[3]
            if np.all(x_parton[:, lead] >= x_parton[:, trail]):
                order.append((lead, trail))
        return tuple(order)

    def balance(self, x_parton):
        """Transverse momentum of each recoil frame's pair plus recoil (GeV).

        With the rest of the hard process as recoil (the Z's leptons for the W's
        quarks) this is the hard process's transverse momentum: the beams'
        primordial kT, a few GeV, whatever the detector saw.

        Args:
            x_parton: array (..., d) in GeV and radians.

        Returns:
            dict: frame index -> float64 array (...) of the magnitudes.
        """
        return {
            i: pair_balance(x_parton, frame.pair, frame.recoil).numpy()
            for i, frame in enumerate(self.frames)
            if frame.recoil
        }

    def balance_limits(self, quantile):
        """Per recoil frame, the training sample's ``quantile`` of ``balance``.

        Args:
            quantile: a level in [BALANCE_LEVELS[0], 1]; between the recorded
                levels the quantile is interpolated linearly.

        Returns:
            dict: frame index -> limit in GeV (empty for a model without recoil
            frames or saved before the quantiles were recorded).

        Raises:
            ConfigError: a level outside that range.
        """
        if not BALANCE_LEVELS[0] <= quantile <= 1.0:
            msg = (
                f"balance quantile {quantile!r} is out of range; expected a level "
                f"in [{BALANCE_LEVELS[0]}, 1]"
            )
            raise ConfigError(msg)
        return {
            i: float(np.interp(quantile, BALANCE_LEVELS, values))
            for i, values in self.balance_quantiles.items()
        }

    def support(self, margin):
        """Box around the training data in physics units, for truncated sampling.

        Per column, the range of the preprocessed training values (log pt, log mass,
        eta, other) widened by ``margin`` standard deviations of that column on
        either side, mapped back to GeV and radians. phi columns are unbounded
        (their transform already keeps every draw inside (-pi, pi)).

        Args:
            margin: widening in standard deviations of the preprocessed column, >= 0.

        Returns:
            tuple (low, high) of float64 arrays (d,), or None if the model has no
            recorded support (not adapted, or saved by an older version).
        """
        if self.support_min is None:
            return None
        y_low, y_high = (v.numpy() for v in self._support_box(margin))
        # phi columns are overwritten below, so a zero reference angle is fine.
        ref = None
        if self.phi_reference_index is not None:
            ref = tf.zeros([1, len(self.phi_reference_index)])
        low = self.column_transform.forward(y_low[None], conditional_input=ref)
        high = self.column_transform.forward(y_high[None], conditional_input=ref)
        low, high = (
            low.numpy()[0].astype(np.float64),
            high.numpy()[0].astype(np.float64),
        )
        phi = np.array([k == "phi" for k in self.parton_kinds])
        low[phi], high[phi] = -np.inf, np.inf
        # A pair's pt2 (and pt1 when ordered) follows from its mass, angles (and
        # rho): boxed by the log-pt range of the training data (unbounded for
        # models saved before that range was recorded).
        # Pair frames: their lab pt and eta boxed the same way (phi unbounded).
        slots = [slot for f in self.frames for slot in f.pair]
        if self.pair_mass is not None:
            slots += list(self.pair_mass.mass_slots)
        low[slots], high[slots] = -np.inf, np.inf
        for slot, (lo, hi, std) in self.pair_pt_box.items():
            low[slot], high[slot] = lo - margin * std, hi + margin * std
            if self.parton_kinds[slot] == "pt":
                low[slot], high[slot] = math.exp(low[slot]), math.exp(high[slot])
        return low, high

    def sample(self, c_detector, n_draws, seed):
        """Draw from the posterior p(x_parton | c_detector).

        The latent draws come from ``numpy.random.default_rng(seed)`` in C order, so
        the result does not depend on TensorFlow's global RNG state.

        Args:
            c_detector: array (n_events, n_detector).
            n_draws: number of draws per event.
            seed: integer seed or ``numpy.random.Generator``.

        Returns:
            numpy float32 array (n_events, n_draws, d).
        """
        c_detector = np.asarray(c_detector, np.float32)
        self._check_inputs(None, c_detector)
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((len(c_detector), n_draws, self.dim), np.float32)
        if self.init_args["jit_compile"]:
            return self._forward_fn_xla(z, c_detector).numpy()
        return self._forward_fn(z, c_detector).numpy()

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None], tf.float32),
            tf.TensorSpec([None, None], tf.float32),
        ],
        reduce_retracing=True,
    )
    def _forward_fn(self, z, c_detector):
        return self.forward_latent(z, c_detector)

    # XLA compiles once per distinct (n_events, n_draws): a few shapes per run.
    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None], tf.float32),
            tf.TensorSpec([None, None], tf.float32),
        ],
        reduce_retracing=True,
        jit_compile=True,
    )
    def _forward_fn_xla(self, z, c_detector):
        return self.forward_latent(z, c_detector)

    def _build(self):
        features = tf.zeros([1, self.n_features])
        embedding = self.condition_encoder(features)
        width = int(embedding.shape[-1])
        if self.custom_encoder and width != self.init_args["condition_dim"]:
            msg = (
                f"condition_encoder outputs width {width}, but condition_dim is "
                f"{self.init_args['condition_dim']}"
            )
            raise ConfigError(msg)
        for coupling in self.couplings:
            coupling.build_subnets(width)

    # ------------------------------------------------------------------ save/load

    def save(self, directory):
        """Write ``config.json`` and a TF checkpoint of all variables (no pickle).

        Args:
            directory: output directory, replaced atomically.

        Raises:
            TrainingError: if a variable holds NaN or infinite values (a model of
                NaNs is never written).
        """
        for variable in self.variables:
            values = variable.numpy()
            if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
                msg = (
                    f"refusing to save the model to {str(directory)!r}: variable "
                    f"{variable.name!r} holds {int(np.sum(~np.isfinite(values)))} "
                    "NaN or infinite values; expected finite weights"
                )
                raise TrainingError(msg)
        config = {
            "format_version": _FORMAT_VERSION,
            "init_args": self.init_args,
            "custom_encoder": self.custom_encoder,
            "preprocessing": {
                name: getattr(self, name).numpy().tolist()
                for name in (
                    "parton_mean",
                    "parton_std",
                    "feature_mean",
                    "feature_std",
                    "regression_weight",
                    "regression_bias",
                    "residual_std",
                )
            },
        }
        if self.support_min is not None:
            config["support"] = {
                "min": self.support_min.tolist(),
                "max": self.support_max.tolist(),
                "order": [list(p) for p in self.support_order],
                "pair_pt_box": {str(k): list(v) for k, v in self.pair_pt_box.items()},
                "balance_quantiles": {
                    str(k): list(v) for k, v in self.balance_quantiles.items()
                },
            }
        with atomic_path(directory) as tmp:
            tmp.mkdir(parents=True)
            (tmp / _CONFIG_FILE).write_text(json.dumps(config, indent=1))
            tf.train.Checkpoint(model=self).write(str(tmp / _WEIGHTS_PREFIX))
        logger.info("saved ConditionalINN to %s", directory)

    @classmethod
    def load(cls, directory, *, condition_encoder=None):
        """Rebuild a model written by ``save``.

        Args:
            directory: directory written by ``save``.
            condition_encoder: the same encoder architecture, required if the saved
                model used a custom one.

        Returns:
            ConditionalINN with restored weights and preprocessing statistics.

        Raises:
            ConfigError: for a missing custom encoder or unknown format.
            InputFileError: missing directory, unreadable ``config.json`` or a
                missing, truncated or mismatched weights checkpoint.
        """
        directory = Path(directory)
        config_file = directory / _CONFIG_FILE
        if not config_file.is_file():
            msg = (
                f"model directory {str(directory)!r} has no {_CONFIG_FILE}; expected "
                "a directory written by ConditionalINN.save (the train rule)"
            )
            raise InputFileError(msg)
        try:
            config = json.loads(config_file.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            msg = f"{str(config_file)!r} is not valid JSON: {err}"
            raise InputFileError(msg) from err
        if config.get("format_version") != _FORMAT_VERSION:
            msg = (
                f"{directory / _CONFIG_FILE}: format_version "
                f"{config.get('format_version')!r}, expected {_FORMAT_VERSION}"
            )
            raise ConfigError(msg)
        if config["custom_encoder"] and condition_encoder is None:
            msg = f"{directory} was saved with a custom condition_encoder; pass it"
            raise ConfigError(msg)
        model = cls(condition_encoder=condition_encoder, **config["init_args"])
        weights = directory / _WEIGHTS_PREFIX
        try:
            status = tf.train.Checkpoint(model=model).read(str(weights))
            status.assert_existing_objects_matched()
            # Extra checkpoint values (say, of more blocks) are not an error for TF.
            saved = [
                name
                for name, _ in tf.train.list_variables(str(weights))
                if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")
            ]
            if len(saved) != len(model.variables):
                msg = (
                    f"{len(saved)} variables, but the model that {_CONFIG_FILE} "
                    f"describes has {len(model.variables)}"
                )
                raise ValueError(msg)
        # The checkpoint reader raises IndexError or KeyError on damaged files.
        except (
            tf.errors.OpError,
            ValueError,
            AssertionError,
            IndexError,
            KeyError,
        ) as err:
            msg = (
                f"cannot read the weights checkpoint {str(weights)!r}: "
                f"{type(err).__name__}: {str(err).splitlines()[0]}; expected the "
                f"checkpoint written with {_CONFIG_FILE} by ConditionalINN.save"
            )
            raise InputFileError(msg) from err
        if "support" in config:
            model.support_min = np.asarray(config["support"]["min"], np.float64)
            model.support_max = np.asarray(config["support"]["max"], np.float64)
            order = config["support"].get("order", [])
            model.support_order = tuple((int(i), int(j)) for i, j in order)
            box = config["support"].get("pair_pt_box", {})
            model.pair_pt_box = {int(k): tuple(v) for k, v in box.items()}
            balance = config["support"].get("balance_quantiles", {})
            model.balance_quantiles = {int(k): tuple(v) for k, v in balance.items()}
        logger.info("loaded ConditionalINN from %s", directory)
        return model


def _ordered_flags(pairs, ordered):
    """One flag per ``pair_masses`` entry from the ``pair_masses_ordered`` pairs."""
    pairs = [list(map(str, p)) for p in pairs or []]
    ordered = [list(map(str, p)) for p in ordered or []]
    unknown = [p for p in ordered if p not in pairs]
    if unknown:
        msg = (
            f"model.pair_masses_ordered entries {unknown!r} are not in "
            f"model.pair_masses {pairs!r}; expected a subset of those pairs"
        )
        raise ConfigError(msg)
    return [p in ordered for p in pairs]


def _mass_pair_columns(pairs, parton_names, key="pair_masses"):
    """Column indices (pt1, eta1, phi1, pt2, eta2, phi2) of named object pairs."""
    if not pairs:
        return []
    if parton_names is None:
        msg = f"model.{key} needs the parton column names (parton_names)"
        raise ConfigError(msg)
    names = [str(n) for n in parton_names]
    columns = []
    for pair in pairs:
        if len(pair) != 2:
            msg = f"model.{key} entry {pair!r}: expected two object names"
            raise ConfigError(msg)
        wanted = [f"{obj}_{f}" for obj in pair for f in ("pt", "eta", "phi")]
        missing = [w for w in wanted if w not in names]
        if missing:
            msg = (
                f"model.{key} entry {list(pair)!r} needs parton columns "
                f"{missing!r}; the parton columns are {names!r}"
            )
            raise ConfigError(msg)
        columns.append([names.index(w) for w in wanted])
    return columns


def _frame_args(frame):
    """JSON-ready copy of one ``frames`` entry (see ``ConditionalINN``)."""
    line = frame.get("line")
    if line is not None and (len(line) != 2 or not all(float(v) > 0 for v in line)):
        msg = f"pair frame line {line!r}: expected (mass, width) in GeV, both > 0"
        raise ConfigError(msg)
    return {
        "pair": [int(i) for i in frame["pair"]],
        "line": None if line is None else [float(v) for v in line],
        "recoil": [[int(p), int(f)] for p, f in frame.get("recoil", [])],
        "reference": bool(frame.get("reference", False)),
        "ordered": bool(frame.get("ordered", True)),
        "anchor": bool(frame.get("anchor", False)),
        "directions": bool(frame.get("directions", False)),
        "align": bool(frame.get("align", False)),
        # Object names for messages (from the config; None for column indices).
        "objects": None if frame.get("objects") is None else list(frame["objects"]),
    }


def _frame_columns(frames, parton_names):
    """``frames`` of ``ConditionalINN`` from the ``model.pair_frames`` entries."""
    if not frames:
        return []
    out = []
    for entry in frames:
        pair = entry.get("pair") if isinstance(entry, dict) else None
        if pair is None:
            msg = (
                f"model.pair_frames entry {entry!r}: expected a mapping with 'pair' "
                "(two object names), optional 'line' ([mass, width] in GeV) and "
                "'recoil' (object names)"
            )
            raise ConfigError(msg)
        (columns,) = _mass_pair_columns([pair], parton_names, key="pair_frames")
        recoil = []
        for obj in entry.get("recoil") or []:
            (found,) = _mass_pair_columns([[obj, obj]], parton_names, key="pair_frames")
            recoil.append([found[0], found[2]])
        out.append(
            {
                "pair": columns,
                "line": entry.get("line"),
                "recoil": recoil,
                "reference": bool(entry.get("reference", False)),
                "ordered": bool(entry.get("ordered", True)),
                "anchor": bool(entry.get("anchor", False)),
                "directions": bool(entry.get("directions", False)),
                "align": bool(entry.get("align", False)),
                "objects": [str(o) for o in pair],
            }
        )
    return out


def _check_sizes(n_blocks, subnet_hidden, condition_hidden, condition_dim, clamp):
    checks = [
        ("n_blocks", n_blocks, int(n_blocks) >= 1),
        ("subnet_hidden", subnet_hidden, all(int(h) >= 1 for h in subnet_hidden)),
        (
            "condition_hidden",
            condition_hidden,
            all(int(h) >= 1 for h in condition_hidden),
        ),
        ("condition_dim", condition_dim, int(condition_dim) >= 1),
        ("clamp", clamp, float(clamp) > 0),
    ]
    for key, value, ok in checks:
        if not ok:
            msg = f"model.{key} = {value!r} is out of range (sizes >= 1, clamp > 0)"
            raise ConfigError(msg)
