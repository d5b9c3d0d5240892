"""What the framework adapters (`jaxrnn.nnx`, `jaxrnn.eqx`) share, in plain JAX.

The adapters differ only in how a framework holds the params and hands out randomness;
checking the wrapped layer, making or checking its params and calling it are the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import jax

from jaxrnn import _cells
from jaxrnn._layers import RNN, Bidirectional, Sequential

Array = jax.Array


def check_layer(layer: Any, who: str) -> None:
    """Raises unless `layer` is a jaxrnn layer (`RNN`, a shorthand, `Bidirectional`,
    `Sequential`)."""
    if not isinstance(layer, (RNN, Bidirectional, Sequential)):
        raise TypeError(
            f"{who}: layer must be a jaxrnn layer (jaxrnn.LSTM(32), jaxrnn.RNN(cell), "
            f"jaxrnn.Bidirectional(...), jaxrnn.Sequential([...])); got "
            f"{type(layer).__name__}. Wrap a cell in jaxrnn.RNN(cell) first."
        )


def make_params(layer: Any, input_shape: Sequence[int | None] | None, params: Any,
                key: Array | None, who: str, key_name: str) -> Any:
    """`layer.init(key, input_shape)`, or the given `params`, checked against the layer.

    Args:
      layer: a checked jaxrnn layer.
      input_shape: (B, T, F); B and T may be None. Optional when `params` are given (then
        F is checked against them).
      params: existing params (from training, `jaxrnn.load`, `from_torch`), or None.
      key: a `jax.random` key for `init`; needed when `params` is None.
      who, key_name: the adapter's name and what it calls its key argument, for errors.
    """
    if params is None:
        if input_shape is None or key is None:
            raise ValueError(
                f"{who}: pass input_shape and {key_name} to create the params, e.g. "
                f"{who}(jaxrnn.LSTM(32), (None, None, 8), {key_name}=...), or pass "
                "params= to wrap existing ones."
            )
        return layer.init(key, input_shape)
    f = None
    if input_shape is not None:
        f = tuple(input_shape)[-1]
        first = layer.layers[0] if isinstance(layer, Sequential) else layer
        first = first.forward if isinstance(first, Bidirectional) else first
        if _cells.input_rank(first.cell) > 1:  # a ConvLSTM: its channels, either layout
            f = first._input_dim(tuple(input_shape)[2:])
    layer.check_params(params, f)
    return params


def _cells_of(layer: Any) -> Iterator[Any]:
    if isinstance(layer, Sequential):
        for inner in layer.layers:
            yield from _cells_of(inner)
    elif isinstance(layer, Bidirectional):
        yield from _cells_of(layer.forward)
        yield from _cells_of(layer.backward)
    else:
        stack = [layer.cell]
        while stack:
            cell = stack.pop()
            if _cells.is_stack(cell):
                stack.extend(cell.cells)
            else:
                yield cell


def uses_dropout(layer: Any) -> bool:
    """Whether a call with ``training=True`` may need a random key: some cell has dropout,
    or a user-defined cell (which may draw from its `rng`) is inside."""
    return any(not isinstance(c, _cells.Cell) or getattr(c, "dropout", 0)
               or getattr(c, "recurrent_dropout", 0) for c in _cells_of(layer))


def call(layer: Any, params: Any, x: Any, *, initial_state: Any, mask: Any, reset: Any,
         training: bool, rng: Array | None, state: Any, who: str) -> Any:
    """``layer(params, x, ...)`` with only the arguments the layer takes."""
    kwargs: dict[str, Any] = {"mask": mask, "reset": reset, "training": training, "rng": rng}
    if isinstance(layer, Sequential):
        if initial_state is not None or state is not None:
            raise ValueError(
                f"{who}: a jaxrnn.Sequential takes neither initial_state= nor state=; wrap "
                "its layers one by one to pass states."
            )
    else:
        kwargs.update(initial_state=initial_state, state=state)
    return layer(params, x, **kwargs)
