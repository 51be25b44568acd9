"""Building blocks of the conditional INN other than the preprocessing.

Direction (TFP convention): ``forward`` maps the latent ``z`` towards parton level,
``inverse`` maps parton level towards ``z`` and is what density evaluation uses.
FrEIA, the framework of arXiv:2006.06685, uses the opposite naming.
"""

import logging

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from cinnflow.flows.preprocessing import scatter_columns

tfb = tfp.bijectors

__all__ = [
    "ConditionalAffineCoupling",
    "ConditionalReflection",
    "ConditionalShift",
    "GlobalAffine",
    "make_mlp",
    "make_permutation",
]

logger = logging.getLogger(__name__)


def make_mlp(hidden, n_out, *, seed, activation="relu", zero_last=False, name):
    """A plain MLP as a ``tf_keras.Sequential``.

    Args:
        hidden: widths of the hidden layers.
        n_out: width of the linear output layer.
        seed: integer seed of the weight initialisation (stateless, so two MLPs
            built with the same seed are identical).
        activation: activation of the hidden layers.
        zero_last: initialise the output layer to zero (identity couplings at start).
        name: Keras model name.

    Returns:
        tf_keras.Sequential
    """

    def glorot(i):
        return tf_keras.initializers.GlorotUniform(seed=seed * 1000 + i)

    layers = [
        tf_keras.layers.Dense(
            width,
            activation=activation,
            kernel_initializer=glorot(i),
            name=f"{name}_dense_{i:02d}",
        )
        for i, width in enumerate(hidden)
    ]
    last = len(hidden)
    layers.append(
        tf_keras.layers.Dense(
            n_out,
            kernel_initializer="zeros" if zero_last else glorot(last),
            name=f"{name}_dense_{last:02d}",
        )
    )
    return tf_keras.Sequential(layers, name=name)


def soft_clamp(raw, clamp):
    """Soft clamp of log-scales, ``clamp * 2/pi * atan(raw / clamp)`` (FrEIA style).

    Bounded in (-clamp, clamp) and equal to ``raw`` to first order near zero.
    """
    return clamp * (2.0 / np.pi) * tf.atan(raw / clamp)


class ConditionalAffineCoupling(tfb.Bijector):
    """All-in-one (GLOW) conditional affine coupling: both halves in one block.

    Legend: ``z = (z1, z2)`` is the latent-side input, ``x = (x1, x2)`` the
    parton-side output, ``e`` the condition embedding, ``s`` soft-clamped log-scales,
    ``t`` shifts::

        forward:  x1 = z1 * exp(s1(z2, e)) + t1(z2, e)
                  x2 = z2 * exp(s2(x1, e)) + t2(x1, e)
        log|det J_forward| = sum(s1) + sum(s2)

    The condition enters as the keyword ``conditional_input`` (routed by ``Chain``
    through ``bijector_kwargs`` under this bijector's name). With the optional
    keyword ``condition_repeats`` (an integer r), ``conditional_input`` has one row
    per r consecutive rows of the input (e.g. r posterior draws per event), and the
    condition part of the subnets is computed once per condition row.
    """

    def __init__(self, dim, *, subnet_hidden, clamp, seed, name, fuse_condition=True):
        """Build the block and its two subnets.

        Args:
            dim: number of columns d (d >= 2).
            subnet_hidden: hidden widths of each subnet MLP.
            clamp: bound of the soft-clamped log-scales.
            seed: integer seed of the subnet initialisation.
            name: bijector name, e.g. ``coupling_03``; used to route the condition.
            fuse_condition: compute the condition part of both subnets' first
                layers in one matmul, once per condition row (see
                ``condition_projection``); False runs each subnet on
                ``concat([inputs, e])``, as FrEIA does. Same weights, same result
                to round-off.
        """
        parameters = dict(locals())
        self._fuse = bool(fuse_condition)
        self._dim = int(dim)
        self._d1 = self._dim // 2
        self._d2 = self._dim - self._d1
        self._clamp = float(clamp)
        self.subnet_1 = make_mlp(
            subnet_hidden,
            2 * self._d1,
            seed=2 * seed,
            zero_last=True,
            name=f"{name}_subnet_1",
        )
        self.subnet_2 = make_mlp(
            subnet_hidden,
            2 * self._d2,
            seed=2 * seed + 1,
            zero_last=True,
            name=f"{name}_subnet_2",
        )
        # Last inverse pass. TransformedDistribution.log_prob calls inverse and then
        # a log-det on the same tensors; reusing it runs the subnets once, not twice.
        self._memo = self._no_dependency({})
        super().__init__(
            forward_min_event_ndims=1,
            validate_args=False,
            parameters=parameters,
            name=name,
        )

    def build_subnets(self, condition_dim, dtype=tf.float32):
        """Create the subnet weights by calling them once on zeros."""
        self.subnet_1(tf.zeros([1, self._d2 + condition_dim], dtype))
        self.subnet_2(tf.zeros([1, self._d1 + condition_dim], dtype))

    def condition_projection(self, conditional_input):
        """Condition part of both subnets' first layers, in one matmul.

        The first layer of a subnet acts on ``concat([inputs, e])``; its kernel
        splits into an input part and a condition part, so
        ``concat([inputs, e]) @ K + b = inputs @ K_in + (e @ K_e + b)``. The
        bracket of both subnets is one ``(n, c) @ (c, 2 * width)`` matmul, the
        largest one of the block; it is computed once per condition row, so
        posterior sampling computes it once per event, not once per draw.

        Args:
            conditional_input: condition embedding e (n, condition_dim).

        Returns:
            float tensor (n, width_1 + width_2).
        """
        first_1 = self.subnet_1.layers[0]
        first_2 = self.subnet_2.layers[0]
        kernel = tf.concat(
            [first_1.kernel[self._d2 :], first_2.kernel[self._d1 :]], axis=1
        )
        bias = tf.concat([first_1.bias, first_2.bias], axis=0)
        return tf.linalg.matmul(conditional_input, kernel) + bias

    def _fused(self, condition_repeats):
        # The projection saves work only when a condition row serves several rows
        # (posterior draws); one row per condition (training, log_prob) runs the
        # subnets on concat([inputs, e]), measured faster there (benchmarks/).
        return self._fuse and condition_repeats is not None

    def _subnet(self, subnet, n_in, inputs, projected, fused):
        """Subnet output from its inputs and its part of the condition projection.

        Unfused, ``projected`` is the condition embedding itself.
        """
        if not fused:
            raw = subnet(tf.concat([inputs, projected], axis=-1))
            raw_s, t = tf.split(raw, 2, axis=-1)
            return soft_clamp(raw_s, self._clamp), t
        first = subnet.layers[0]
        hidden = first.activation(
            tf.linalg.matmul(inputs, first.kernel[:n_in]) + projected
        )
        for layer in subnet.layers[1:]:
            hidden = layer(hidden)
        raw_s, t = tf.split(hidden, 2, axis=-1)
        return soft_clamp(raw_s, self._clamp), t

    def _projections(self, conditional_input, condition_repeats):
        if not self._fused(condition_repeats):
            if condition_repeats is not None:
                conditional_input = tf.repeat(
                    conditional_input, condition_repeats, axis=0
                )
            return conditional_input, conditional_input
        projected = self.condition_projection(conditional_input)
        if condition_repeats is not None:
            projected = tf.repeat(projected, condition_repeats, axis=0)
        width_1 = self.subnet_1.layers[0].units
        return projected[..., :width_1], projected[..., width_1:]

    def _forward_and_log_det(self, z, conditional_input, condition_repeats=None):
        p1, p2 = self._projections(conditional_input, condition_repeats)
        fused = self._fused(condition_repeats)
        z1, z2 = z[..., : self._d1], z[..., self._d1 :]
        s1, t1 = self._subnet(self.subnet_1, self._d2, z2, p1, fused)
        x1 = z1 * tf.exp(s1) + t1
        s2, t2 = self._subnet(self.subnet_2, self._d1, x1, p2, fused)
        x2 = z2 * tf.exp(s2) + t2
        fldj = tf.reduce_sum(s1, axis=-1) + tf.reduce_sum(s2, axis=-1)
        return tf.concat([x1, x2], axis=-1), fldj

    def _inverse_and_log_det(self, x, conditional_input, condition_repeats=None):
        p1, p2 = self._projections(conditional_input, condition_repeats)
        fused = self._fused(condition_repeats)
        x1, x2 = x[..., : self._d1], x[..., self._d1 :]
        s2, t2 = self._subnet(self.subnet_2, self._d1, x1, p2, fused)
        z2 = (x2 - t2) * tf.exp(-s2)
        s1, t1 = self._subnet(self.subnet_1, self._d2, z2, p1, fused)
        z1 = (x1 - t1) * tf.exp(-s1)
        ildj = -tf.reduce_sum(s1, axis=-1) - tf.reduce_sum(s2, axis=-1)
        return tf.concat([z1, z2], axis=-1), ildj

    def _forward(self, z, conditional_input=None, condition_repeats=None):
        cond = _required(conditional_input, self.name)
        return self._forward_and_log_det(z, cond, condition_repeats)[0]

    def _inverse(self, x, conditional_input=None, condition_repeats=None):
        cond = _required(conditional_input, self.name)
        z, ildj = self._inverse_and_log_det(x, cond, condition_repeats)
        self._memo.clear()
        self._memo.update(x=x, z=z, cond=cond, ildj=ildj)
        return z

    def _memo_ildj(self, key, tensor, cond):
        memo = self._memo
        if memo and memo[key] is tensor and memo["cond"] is cond:
            return memo["ildj"]
        return None

    def _forward_log_det_jacobian(
        self, z, conditional_input=None, condition_repeats=None
    ):
        cond = _required(conditional_input, self.name)
        ildj = self._memo_ildj("z", z, cond)
        if ildj is not None and condition_repeats is None:
            return -ildj
        return self._forward_and_log_det(z, cond, condition_repeats)[1]

    def _inverse_log_det_jacobian(
        self, x, conditional_input=None, condition_repeats=None
    ):
        cond = _required(conditional_input, self.name)
        ildj = self._memo_ildj("x", x, cond)
        if ildj is not None and condition_repeats is None:
            return ildj
        return self._inverse_and_log_det(x, cond, condition_repeats)[1]


def _required(conditional_input, name):
    # A missing condition is a routing bug (misspelt bijector name), never valid.
    if conditional_input is None:
        msg = (
            f"bijector {name!r} received no conditional_input; pass it through "
            f"bijector_kwargs={{{name!r}: {{'conditional_input': ...}}}}"
        )
        raise ValueError(msg)
    return conditional_input


class _VolumePreserving(tfb.Bijector):
    """A vector bijector with unit absolute Jacobian determinant everywhere."""

    def __init__(self, parameters, name):
        super().__init__(
            forward_min_event_ndims=1,
            is_constant_jacobian=True,
            validate_args=False,
            parameters=parameters,
            name=name,
        )

    def _forward_log_det_jacobian(self, x, conditional_input=None):
        del conditional_input
        return tf.zeros_like(x[..., 0])

    def _inverse_log_det_jacobian(self, y, conditional_input=None):
        del conditional_input
        return tf.zeros_like(y[..., 0])


class ConditionalShift(_VolumePreserving):
    """Shift by a linear function of the condition: ``x = r + features @ A^T + b``.

    Unit Jacobian. ``A`` (d, n_features) and ``b`` (d,) are non-trainable variables
    fitted by least squares in ``ConditionalINN.adapt``.
    """

    def __init__(self, weight, bias, *, name):
        """Build the bijector.

        Args:
            weight: non-trainable variable A, shape (d, n_features).
            bias: non-trainable variable b, shape (d,).
            name: bijector name, used to route ``conditional_input``.
        """
        parameters = dict(locals())
        self._weight = weight
        self._bias = bias
        super().__init__(parameters, name)

    def _shift(self, conditional_input):
        cond = _required(conditional_input, self.name)
        return tf.linalg.matmul(cond, self._weight, transpose_b=True) + self._bias

    def _forward(self, r, conditional_input=None):
        return r + self._shift(conditional_input)

    def _inverse(self, x, conditional_input=None):
        return x - self._shift(conditional_input)


class ConditionalReflection(_VolumePreserving):
    """Householder reflection of some columns that takes a direction onto one axis.

    The ``conditional_input`` g (n, k) is a direction in the space of the k
    columns ``slots``; with ``g^ = g / |g|``, ``e`` the unit vector of the last
    slot and ``w = g^ - e``, both directions apply ``x -> x - 2 w (w.x) / (w.w)``
    to those columns (a reflection is its own inverse): the latent side's last
    slot is then ``g^ . x`` of the physics side. Orthogonal, so the Jacobian has
    unit absolute determinant. Where ``g^`` is already ``e`` (or g is zero or
    not finite) it is the identity.
    """

    def __init__(self, slots, *, name):
        """Build the bijector.

        Args:
            slots: column indices (k >= 2) the reflection acts on.
            name: bijector name, used to route ``conditional_input``.
        """
        parameters = dict(locals())
        self._slots = tuple(int(s) for s in slots)
        super().__init__(parameters, name)

    @property
    def slots(self):
        """Column indices the reflection acts on; the last one is the axis."""
        return self._slots

    def _reflect(self, x, conditional_input):
        g = tf.cast(_required(conditional_input, self.name), x.dtype)
        norm = tf.norm(g, axis=-1, keepdims=True)
        usable = tf.math.is_finite(norm) & (norm > 0.0)
        axis = tf.one_hot(len(self._slots) - 1, len(self._slots), dtype=x.dtype)
        unit = tf.where(usable, g / tf.where(usable, norm, 1.0), axis)
        w = unit - axis
        ww = tf.reduce_sum(tf.square(w), axis=-1, keepdims=True)
        coefficient = tf.where(ww > 1e-12, 2.0 / tf.maximum(ww, 1e-12), 0.0)
        v = tf.gather(x, self._slots, axis=-1)
        v = v - coefficient * tf.reduce_sum(w * v, axis=-1, keepdims=True) * w
        return scatter_columns(x, self._slots, tf.unstack(v, axis=-1))

    def _forward(self, x, conditional_input=None):
        return self._reflect(x, conditional_input)

    def _inverse(self, y, conditional_input=None):
        return self._reflect(y, conditional_input)


class GlobalAffine(tfb.Bijector):
    """Learned per-column scale and shift (ActNorm-like), identity at start.

    ``forward(z) = z * exp(log_scale) + shift``.
    """

    def __init__(self, dim, *, name):
        """Build the bijector with trainable ``log_scale`` and ``shift`` (dim,)."""
        parameters = dict(locals())
        self.log_scale = tf.Variable(tf.zeros([dim]), name=f"{name}_log_scale")
        self.shift = tf.Variable(tf.zeros([dim]), name=f"{name}_shift")
        super().__init__(
            forward_min_event_ndims=1,
            is_constant_jacobian=True,
            validate_args=False,
            parameters=parameters,
            name=name,
        )

    def _forward(self, z):
        return z * tf.exp(self.log_scale) + self.shift

    def _inverse(self, x):
        return (x - self.shift) * tf.exp(-self.log_scale)

    def _forward_log_det_jacobian(self, z):
        return tf.reduce_sum(self.log_scale) + tf.zeros_like(z[..., 0])

    def _inverse_log_det_jacobian(self, x):
        return -tf.reduce_sum(self.log_scale) + tf.zeros_like(x[..., 0])


def make_permutation(dim, *, rng, name):
    """A fixed random permutation of the columns, drawn from ``rng``.

    Args:
        dim: number of columns.
        rng: ``numpy.random.Generator`` (seeded by the caller).
        name: bijector name, e.g. ``permute_03``.

    Returns:
        tfb.Permute
    """
    return tfb.Permute(permutation=rng.permutation(dim).astype(np.int32), name=name)
