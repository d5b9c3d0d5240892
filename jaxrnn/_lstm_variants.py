"""LSTM variants: peephole connections and layer normalisation.

Each follows one published TensorFlow cell exactly (named in its docstring) and keeps
`LSTMCell`'s layout: Keras's ``kernel`` [F, 4H], ``recurrent_kernel`` [H, 4H] and ``bias``
[4H] in the gate order ``i, f, c, o``, states ``LSTMState(h, c)``, ``unit_forget_bias`` and
Keras 3's dropout (one input mask, or one mask per gate for inputs and state with recurrent
dropout). Their extra weights carry the TensorFlow names, so such a cell's weights map onto
params by name. They run on the generic scan (``jr.RNN(cell)``); the fused path is for
`LSTMCell` and `GRUCell` only (what they cost in comparison: ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _registry, _resolve
from jaxrnn._cells import (
    Array,
    Initializer,
    LSTMState,
    _initialize_vector,
    _LSTMBase,
    project,
)

_PEEPHOLES = ("input_gate_peephole_weights", "forget_gate_peephole_weights",
              "output_gate_peephole_weights")
_NORMS = ("kernel_norm", "recurrent_norm", "state_norm")


def _preactivations(params: dict, inputs: Array, h: Array, masks: Any,
                    use_bias: bool) -> Array:
    """``x @ kernel + h @ recurrent_kernel (+ bias)`` [B, 4H], with dropout masks."""
    x_mask, h_mask = masks or (None, None)
    z = project(inputs, params["kernel"], x_mask, 4)
    z = z + project(h, params["recurrent_kernel"], h_mask, 4)
    return z + params["bias"][None, :] if use_bias else z


@_registry.register
@dataclasses.dataclass(frozen=True)
class PeepholeLSTMCell(_LSTMBase):
    """An LSTM cell whose gates also see the cell state ("peephole connections").

    The variant of TensorFlow 2's ``tf.keras.experimental.PeepholeLSTMCell`` (the same as
    TensorFlow Addons' ``tfa.rnn.PeepholeLSTMCell``): diagonal peephole weights, the input
    and forget gates looking at ``c_{t-1}`` and the output gate at ``c_t``, as in Gers &
    Schmidhuber, "Recurrent nets that time and count" (IJCNN 2000) and Sak et al., "Long
    short-term memory recurrent neural network architectures for large scale acoustic
    modeling" (Interspeech 2014). With ``z = x_t @ kernel + h_{t-1} @ recurrent_kernel +
    bias`` split into ``z_i, z_f, z_c, z_o`` (Keras's gate order) and ``σ =
    recurrent_activation``, ``φ = activation``:

      i = σ(z_i + p_i * c_{t-1})
      f = σ(z_f + p_f * c_{t-1})
      c_t = f * c_{t-1} + i * φ(z_c)
      o = σ(z_o + p_o * c_t)
      h_t = o * φ(c_t)

    The output is ``h_t``; the states are ``LSTMState(h, c)``. Params: `LSTMCell`'s
    ``kernel`` [F, 4H], ``recurrent_kernel`` [H, 4H], ``bias`` [4H], and the peephole
    weights ``input_gate_peephole_weights``, ``forget_gate_peephole_weights``,
    ``output_gate_peephole_weights`` (``p_i, p_f, p_o``), [H] each, drawn by
    `kernel_initializer` as in TensorFlow (a 1-D weight with fan_in = fan_out = H, Keras's
    rule). The arguments are `LSTMCell`'s; dropout is Keras 3's, as for `LSTMCell`. It runs
    on the generic scan.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> cell = jr.PeepholeLSTMCell(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> params["input_gate_peephole_weights"].shape  # [H]
      (4,)
      >>> layer = jr.RNN(cell, return_sequences=True)
      >>> layer(params, jnp.ones((2, 5, 3))).shape  # [B, T, H]
      (2, 5, 4)
    """

    def param_shapes(self, input_dim: int) -> dict[str, tuple[int, ...]]:
        """`LSTMCell`'s shapes and the three peephole weights [H]."""
        shapes = super().param_shapes(input_dim)
        shapes.update({name: (self.units,) for name in _PEEPHOLES})
        return shapes

    def init(self, key: Array, input_dim: int, dtype=jnp.float32) -> dict[str, Array]:
        """Creates `LSTMCell`'s params and the peephole weights (by `kernel_initializer`)."""
        key, *keys = jax.random.split(key, 1 + len(_PEEPHOLES))
        params = super().init(key, input_dim, dtype)
        for name, k in zip(_PEEPHOLES, keys):
            params[name] = _initialize_vector(self.kernel_initializer, k, self.units, dtype)
        return params

    def step(self, params, inputs, states, masks=None):
        """One step with dropout masks from `dropout_masks` (no checks)."""
        with jax.named_scope("PeepholeLSTMCell"):
            h, c = states
            z = _preactivations(params, inputs, h, masks, self.use_bias)
            zi, zf, zc, zo = jnp.split(z, 4, axis=-1)
            p_i, p_f, p_o = (params[name][None, :] for name in _PEEPHOLES)
            act = _resolve.activation(self.activation)
            rec = _resolve.activation(self.recurrent_activation)
            i = rec(zi + p_i * c)
            f = rec(zf + p_f * c)
            c = f * c + i * act(zc)
            o = rec(zo + p_o * c)  # the output gate sees the new cell state
            h = o * act(c)
            return h, LSTMState(h, c)


def _layer_norm(a: Array, gamma: Array, beta: Array, epsilon: float) -> Array:
    """Keras's ``LayerNormalization`` over the last axis of a [B, K] array: the statistics
    in float32 (at least), the result in `a`'s dtype."""
    a32 = a.astype(jnp.promote_types(a.dtype, jnp.float32))
    mean = jnp.mean(a32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(a32 - mean), axis=-1, keepdims=True)
    y = (a32 - mean) * lax.rsqrt(var + epsilon)
    return (y * gamma[None, :] + beta[None, :]).astype(a.dtype)


@_registry.register
@dataclasses.dataclass(frozen=True)
class LayerNormLSTMCell(_LSTMBase):
    """An LSTM cell with layer normalisation, as TensorFlow Addons' ``LayerNormLSTMCell``.

    Layer normalisation (Ba, Kiros & Hinton, "Layer Normalization", 2016,
    arXiv:1607.06450) in the variant of TensorFlow Addons' ``tfa.rnn.LayerNormLSTMCell``:
    the input and the recurrent parts of the gates' pre-activations are normalised
    separately, each over all 4H of them at once (not gate by gate), before the bias is
    added; the new cell state is normalised too, and the normalised state is what the cell
    carries. With ``LN(a) = (a - mean(a)) / sqrt(var(a) + norm_epsilon) * gamma + beta``
    over the last axis (Keras's ``LayerNormalization``), ``σ = recurrent_activation`` and
    ``φ = activation``:

      z = LN_kernel(x_t @ kernel) + LN_recurrent(h_{t-1} @ recurrent_kernel) + bias
      i, f, o = σ(z_i), σ(z_f), σ(z_o)            (Keras's gate order i, f, c, o)
      c_t = LN_state(f * c_{t-1} + i * φ(z_c))
      h_t = o * φ(c_t)

    (Ba et al.'s paper normalises ``c_t`` only inside ``h_t = o * φ(LN(c_t))`` and carries
    the unnormalised ``c_t``; TensorFlow Addons carries the normalised one, as here.)

    The output is ``h_t``; the states are ``LSTMState(h, c)``. Params: `LSTMCell`'s
    ``kernel`` [F, 4H], ``recurrent_kernel`` [H, 4H], ``bias`` [4H], and the normalisations'
    ``kernel_norm_gamma``, ``kernel_norm_beta``, ``recurrent_norm_gamma``,
    ``recurrent_norm_beta`` [4H] and ``state_norm_gamma``, ``state_norm_beta`` [H]
    (TensorFlow Addons' ``kernel_norm/gamma``, ...). Dropout is Keras 3's, as for
    `LSTMCell` (TensorFlow Addons uses its first gate's masks for all four). It runs on the
    generic scan.

    Args:
      norm_gamma_initializer: the initializer of the gammas (default ``"ones"``).
      norm_beta_initializer: the initializer of the betas (default ``"zeros"``).
      norm_epsilon: added to the variance (default 1e-3, as TensorFlow Addons and Keras).

    The other arguments are `LSTMCell`'s.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> cell = jr.LayerNormLSTMCell(4, norm_epsilon=1e-5)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> params["kernel_norm_gamma"].shape, params["state_norm_beta"].shape  # [4H], [H]
      ((16,), (4,))
      >>> y, h, c = jr.RNN(cell, return_state=True)(params, jnp.ones((2, 5, 3)))
      >>> y.shape, c.shape  # [B, H], [B, H]
      ((2, 4), (2, 4))
    """

    norm_gamma_initializer: Initializer = "ones"
    norm_beta_initializer: Initializer = "zeros"
    norm_epsilon: float = 1e-3

    def __post_init__(self):
        super().__post_init__()
        eps = self.norm_epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(
                f"LayerNormLSTMCell: norm_epsilon must be a float > 0 (added to the variance); "
                f"got {eps!r}. The default is 1e-3."
            )

    def _norm_sizes(self) -> dict[str, int]:
        return {"kernel_norm": 4 * self.units, "recurrent_norm": 4 * self.units,
                "state_norm": self.units}

    def param_shapes(self, input_dim: int) -> dict[str, tuple[int, ...]]:
        """`LSTMCell`'s shapes, and a gamma and a beta per normalisation."""
        shapes = super().param_shapes(input_dim)
        for norm, size in self._norm_sizes().items():
            shapes[f"{norm}_gamma"] = shapes[f"{norm}_beta"] = (size,)
        return shapes

    def init(self, key: Array, input_dim: int, dtype=jnp.float32) -> dict[str, Array]:
        """Creates `LSTMCell`'s params and the normalisations' gammas and betas."""
        key, *keys = jax.random.split(key, 1 + 2 * len(_NORMS))
        params = super().init(key, input_dim, dtype)
        for j, (norm, size) in enumerate(self._norm_sizes().items()):
            params[f"{norm}_gamma"] = _initialize_vector(self.norm_gamma_initializer,
                                                         keys[2 * j], size, dtype)
            params[f"{norm}_beta"] = _initialize_vector(self.norm_beta_initializer,
                                                        keys[2 * j + 1], size, dtype)
        return params

    def step(self, params, inputs, states, masks=None):
        """One step with dropout masks from `dropout_masks` (no checks)."""
        with jax.named_scope("LayerNormLSTMCell"):
            h, c = states
            x_mask, h_mask = masks or (None, None)

            def norm(a, name):
                return _layer_norm(a, params[f"{name}_gamma"], params[f"{name}_beta"],
                                   self.norm_epsilon)

            z = norm(project(inputs, params["kernel"], x_mask, 4), "kernel_norm")
            z = z + norm(project(h, params["recurrent_kernel"], h_mask, 4), "recurrent_norm")
            if self.use_bias:
                z = z + params["bias"][None, :]
            zi, zf, zc, zo = jnp.split(z, 4, axis=-1)
            act = _resolve.activation(self.activation)
            rec = _resolve.activation(self.recurrent_activation)
            c = norm(rec(zf) * c + rec(zi) * act(zc), "state_norm")
            h = rec(zo) * act(c)
            return h, LSTMState(h, c)
