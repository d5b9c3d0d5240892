"""Equinox adapter: any jaxrnn layer as an `eqx.Module` (``pip install "jaxrnn[equinox]"``).

`Layer` holds the layer's params as a field, the pytree of arrays in jaxrnn's layout
(Keras's weight names), so `eqx.filter_jit`, `eqx.filter_grad` and optax see them like any
Equinox module's. This module imports Equinox; ``import jaxrnn`` alone never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

try:
    import equinox as eqx
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        'jaxrnn.eqx needs Equinox: pip install "jaxrnn[equinox]" (or pip install equinox).',
        name="equinox") from e

from jaxrnn import _adapt

__all__ = ["Layer"]

Array = jax.Array


class Layer(eqx.Module):
    """A jaxrnn layer (`RNN`, a shorthand, `Bidirectional`, `Sequential`) as an `eqx.Module`.

    `params` is the layer's own params pytree (what `jaxrnn.save` and the layer take); the
    layer is a static field. Dropout follows `eqx.nn.Dropout`: it acts unless ``inference``
    is True (`eqx.nn.inference_mode` sets it), and takes its random key as ``key=`` at the
    call.

    Called as ``module(x, *, initial_state=None, mask=None, reset=None, training=None,
    key=None, state=None)``: `x` [B, T, F], `mask` and `reset` [B, T] booleans, the rest as
    for the wrapped layer (`jaxrnn.RNN`); returns what the layer returns. `training`
    (default ``not inference``) turns dropout on, which then needs `key`.

    Args:
      layer: the jaxrnn layer to wrap, e.g. ``jaxrnn.GRU(32, return_sequences=True)``.
      input_shape: (B, T, F) of the inputs; B and T may be None. Optional with `params`.
      key: a `jax.random` key for the params' initialisation; optional with `params`.
      params: existing params of `layer` (trained, from `jaxrnn.load` or
        `jaxrnn.from_torch`) to wrap instead of creating new ones.
      inference: no dropout (as `eqx.nn.Dropout`'s flag).

    Example:
      >>> import equinox as eqx, jax, jax.numpy as jnp, optax, jaxrnn as jr
      >>> import jaxrnn.eqx
      >>> model = jr.eqx.Layer(jr.GRU(4, return_sequences=True), (None, None, 3),
      ...                      key=jax.random.key(0))
      >>> jax.tree.map(jnp.shape, model.params)  # jaxrnn's (Keras's) layout
      {'bias': (2, 12), 'kernel': (3, 12), 'recurrent_kernel': (4, 12)}
      >>> optimizer = optax.adam(1e-2)
      >>> opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
      >>> @eqx.filter_jit
      ... def train_step(model, opt_state, x, y, reset):
      ...     loss_fn = lambda model: jnp.mean((model(x, reset=reset) - y) ** 2)
      ...     grads = eqx.filter_grad(loss_fn)(model)
      ...     updates, opt_state = optimizer.update(grads, opt_state,
      ...                                           eqx.filter(model, eqx.is_array))
      ...     return eqx.apply_updates(model, updates), opt_state
      >>> x, y = jnp.ones((2, 5, 3)), jnp.zeros((2, 5, 4))  # [B, T, F], [B, T, H]
      >>> reset = jnp.zeros((2, 5), bool).at[0, 3].set(True)  # [B, T]: a new segment
      >>> model, opt_state = train_step(model, opt_state, x, y, reset)
    """

    layer: Any = eqx.field(static=True)
    params: Any
    inference: bool = False

    def __init__(self, layer: Any, input_shape: Sequence[int | None] | None = None, *,
                 key: Array | None = None, params: Any = None, inference: bool = False):
        who = "jaxrnn.eqx.Layer"
        _adapt.check_layer(layer, who)
        self.layer = layer
        self.params = _adapt.make_params(layer, input_shape, params, key, who, "key")
        self.inference = inference

    def __call__(self, x: Array, *, initial_state: Sequence[Array] | None = None,
                 mask: Array | None = None, reset: Array | None = None,
                 training: bool | None = None, key: Array | None = None,
                 state: Any = None) -> Any:
        """Runs the layer on `x` with the module's params.

        Args:
          x: [B, T, F] float array ([T, B, F] for a time_major layer).
          initial_state, mask, reset, state: as for the wrapped layer (`jaxrnn.RNN`):
            `mask` and `reset` are [B, T] booleans.
          training: apply dropout; default ``not self.inference``.
          key: a `jax.random` key for this call's dropout.

        Returns:
          What the wrapped layer returns.
        """
        if training is None:
            training = not self.inference
        rng = None
        if training and _adapt.uses_dropout(self.layer):
            if key is None:
                raise ValueError(
                    "jaxrnn.eqx.Layer: the layer has dropout and runs in training mode, so "
                    "it needs key=jax.random.key(...) (split a fresh one per call); or turn "
                    "dropout off with eqx.nn.inference_mode(model) (or training=False)."
                )
            rng = key
        return _adapt.call(self.layer, self.params, x, initial_state=initial_state,
                           mask=mask, reset=reset, training=training, rng=rng, state=state,
                           who="jaxrnn.eqx.Layer")
