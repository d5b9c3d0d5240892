"""Flax NNX adapter: any jaxrnn layer as an `nnx.Module` (``pip install "jaxrnn[nnx]"``).

`Layer` holds the layer's params as `nnx.Param`s in jaxrnn's layout (Keras's weight names),
so `nnx.state`, `nnx.Optimizer`, `nnx.jit` and `nnx.grad` see them like any NNX module's.
This module imports Flax; ``import jaxrnn`` alone never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

try:
    from flax import nnx
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        'jaxrnn.nnx needs Flax: pip install "jaxrnn[nnx]" (or pip install flax).',
        name="flax") from e

from jaxrnn import _adapt

__all__ = ["Layer"]

Array = jax.Array


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


class Layer(nnx.Module):
    """A jaxrnn layer (`RNN`, a shorthand, `Bidirectional`, `Sequential`) as an `nnx.Module`.

    The params are `nnx.Param`s in the layer's own pytree layout: train them with
    ``nnx.Optimizer(module, tx, wrt=nnx.Param)``; `get_params` gives them back as the plain
    pytree that `jaxrnn.save` and the layer itself take. Dropout follows `nnx.Dropout`: it
    acts while ``deterministic`` is False (the default; `train()`) and not after `eval()`,
    drawing its keys from the ``dropout`` stream of the `rngs` given here (or to the call).

    Called as ``module(x, *, initial_state=None, mask=None, reset=None, training=None,
    rngs=None, state=None)``: `x` [B, T, F], `mask` and `reset` [B, T] booleans, the rest
    as for the wrapped layer (`jaxrnn.RNN`); returns what the layer returns. `training`
    (default ``not deterministic``) turns dropout on; `rngs` (an `nnx.Rngs`, a stream or a
    key) replaces the module's own stream for the call.

    Args:
      layer: the jaxrnn layer to wrap, e.g. ``jaxrnn.LSTM(32, return_sequences=True)``.
      input_shape: (B, T, F) of the inputs; B and T may be None. Optional with `params`.
      rngs: an `nnx.Rngs`: its ``params`` stream initialises the params, its ``dropout``
        stream (else ``default``) draws dropout masks. Optional with `params` when the
        layer has no dropout.
      params: existing params of `layer` (trained, from `jaxrnn.load` or
        `jaxrnn.from_torch`) to wrap instead of creating new ones.
      deterministic: no dropout (as `nnx.Dropout`'s flag; `eval()` sets it).

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxrnn as jr
      >>> import jaxrnn.nnx
      >>> from flax import nnx
      >>> model = jr.nnx.Layer(jr.LSTM(8, return_sequences=True), (None, None, 3),
      ...                      rngs=nnx.Rngs(0))
      >>> jax.tree.map(jnp.shape, model.get_params())  # jaxrnn's (Keras's) layout
      {'bias': (32,), 'kernel': (3, 32), 'recurrent_kernel': (8, 32)}
      >>> optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
      >>> @nnx.jit
      ... def train_step(model, optimizer, x, y, mask):
      ...     loss_fn = lambda model: jnp.mean((model(x, mask=mask) - y) ** 2)
      ...     loss, grads = nnx.value_and_grad(loss_fn)(model)
      ...     optimizer.update(model, grads)  # in place, as NNX does
      ...     return loss
      >>> x, y = jnp.ones((2, 5, 3)), jnp.zeros((2, 5, 8))  # [B, T, F], [B, T, H]
      >>> mask = jnp.arange(5)[None, :] < jnp.array([[5], [3]])  # [B, T]: lengths 5, 3
      >>> loss = train_step(model, optimizer, x, y, mask)
    """

    def __init__(self, layer: Any, input_shape: Sequence[int | None] | None = None, *,
                 rngs: nnx.Rngs | None = None, params: Any = None,
                 deterministic: bool = False):
        who = "jaxrnn.nnx.Layer"
        _adapt.check_layer(layer, who)
        if rngs is not None and not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"{who}: rngs must be an nnx.Rngs, e.g. nnx.Rngs(0); got "
                            f"{type(rngs).__name__}.")
        key = None if rngs is None or params is not None else rngs.params()
        params = _adapt.make_params(layer, input_shape, params, key, who, "rngs")
        self.layer = layer
        self.params = nnx.data(jax.tree.map(nnx.Param, params))
        self.deterministic = deterministic
        self.rngs = nnx.data(None)
        if rngs is not None and _adapt.uses_dropout(layer):
            self.rngs = rngs["dropout"].fork()

    def get_params(self) -> Any:
        """The params as the plain pytree of arrays the jaxrnn layer takes."""
        return jax.tree.map(lambda v: v.get_value(), self.params, is_leaf=_is_variable)

    def set_view(self, deterministic: bool | None = None) -> None:
        """Used by `nnx.view`: ``nnx.view(model, deterministic=True)`` turns dropout off."""
        if deterministic is not None:
            self.deterministic = deterministic

    def _dropout_key(self, rngs: Any) -> Array:
        source = rngs if rngs is not None else self.rngs
        if source is None:
            raise ValueError(
                "jaxrnn.nnx.Layer: the layer has dropout and runs in training mode, but has "
                "no random stream. Build it with rngs=nnx.Rngs(...) or pass rngs= to the "
                "call; or turn dropout off with model.eval() (or training=False)."
            )
        if isinstance(source, nnx.Rngs):
            return source["dropout"]()
        if isinstance(source, nnx.RngStream):
            return source()
        return source

    def __call__(self, x: Array, *, initial_state: Sequence[Array] | None = None,
                 mask: Array | None = None, reset: Array | None = None,
                 training: bool | None = None,
                 rngs: nnx.Rngs | nnx.RngStream | Array | None = None,
                 state: Any = None) -> Any:
        """Runs the layer on `x` with the module's params.

        Args:
          x: [B, T, F] float array ([T, B, F] for a time_major layer).
          initial_state, mask, reset, state: as for the wrapped layer (`jaxrnn.RNN`):
            `mask` and `reset` are [B, T] booleans.
          training: apply dropout; default ``not self.deterministic``.
          rngs: an `nnx.Rngs`, stream or key for this call's dropout, instead of the
            module's own stream.

        Returns:
          What the wrapped layer returns.
        """
        if training is None:
            training = not self.deterministic
        rng = self._dropout_key(rngs) if training and _adapt.uses_dropout(self.layer) else None
        return _adapt.call(self.layer, self.get_params(), x, initial_state=initial_state,
                           mask=mask, reset=reset, training=training, rng=rng, state=state,
                           who="jaxrnn.nnx.Layer")
