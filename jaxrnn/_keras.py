"""Keras 3 layers into jaxrnn: ``layer, params = from_keras(keras_layer)``.

Keras is imported lazily, inside `from_keras`: jaxrnn never needs it at import time.
Weights are copied by name (``kernel``, ``recurrent_kernel``, ``bias``): jaxrnn's cells use
Keras's names, shapes and gate orders, so no array is reshaped or reordered.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxrnn import _cells, _conv, _layers, _resolve

# Keras's RNN flags that jaxrnn's RNN has under the same name and meaning.
_RNN_FLAGS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll",
              "zero_output_for_mask")
_JR_CELLS = {"SimpleRNNCell": _cells.SimpleRNNCell, "LSTMCell": _cells.LSTMCell,
             "GRUCell": _cells.GRUCell}
# Initializer configs that carry no information jaxrnn's named initializer lacks.
_NEUTRAL_INIT_CONFIG = {"seed": None, "input_axes": None, "output_axes": None, "gain": 1.0}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _activation(value: Any, where: str) -> str:
    """A Keras activation (its serialized name) as a jaxrnn activation name."""
    if value is None:
        return "linear"
    if isinstance(value, str) and value in _resolve.ACTIVATIONS:
        return value
    raise ValueError(
        f"from_keras: {where} is {value!r}, which has no jaxrnn equivalent. jaxrnn knows the "
        f"activations {sorted(_resolve.ACTIVATIONS)}; rebuild the Keras layer with one of them, "
        "or build the jaxrnn cell yourself with your function and copy the weights by name."
    )


def _initializer(value: Any, default: str) -> str:
    """A Keras initializer config as a jaxrnn name, or `default` where none matches.

    Initializers only matter to ``init``; the converted params are the Keras weights.
    """
    if isinstance(value, str):
        name = _snake(value) if value[:1].isupper() else value
        return name if name in _resolve.INITIALIZERS else default
    if isinstance(value, dict):
        name = _snake(str(value.get("class_name", "")))
        config = value.get("config") or {}
        neutral = all(_NEUTRAL_INIT_CONFIG.get(k, object()) == v for k, v in config.items())
        if name in _resolve.INITIALIZERS and neutral:
            return name
    return default


def _weight(variable: Any) -> jnp.ndarray:
    import keras

    value = keras.ops.convert_to_numpy(variable.value)
    return jnp.asarray(np.asarray(value), dtype=jnp.dtype(variable.dtype))


def _is_conv_lstm_cell(keras_cell: Any) -> bool:
    """Whether `keras_cell` is Keras's ConvLSTMCell (the cell of ConvLSTM1D/2D/3D), which
    ``keras.layers`` does not export."""
    return any(c.__name__ == "ConvLSTMCell" and c.__module__.startswith("keras")
               for c in type(keras_cell).__mro__)


def _conv_cell(keras_cell: Any, where: str) -> tuple[Any, dict]:
    """A built Keras ConvLSTMCell as ``(jaxrnn.ConvLSTMCell, params)``."""
    config = keras_cell.get_config()
    kw: dict[str, Any] = {"rank": int(keras_cell.rank)}
    for field in dataclasses.fields(_conv.ConvLSTMCell):
        name = field.name
        if name in ("rank", "conv_impl"):  # conv_impl: jaxrnn's own, the default
            continue
        if name.endswith("activation"):
            kw[name] = _activation(config[name], f"{where}.{name}")
        elif name.endswith("initializer"):
            kw[name] = _initializer(config.get(name), str(field.default))
        else:
            kw[name] = config[name]
    cell = _conv.ConvLSTMCell(**kw)
    params = {"kernel": _weight(keras_cell.kernel),
              "recurrent_kernel": _weight(keras_cell.recurrent_kernel)}
    if cell.use_bias:
        params["bias"] = _weight(keras_cell.bias)
    return cell, params


def _cell(keras_cell: Any, where: str) -> tuple[Any, dict]:
    """A built Keras SimpleRNNCell/LSTMCell/GRUCell/ConvLSTMCell as ``(jaxrnn cell,
    params)``."""
    import keras

    if _is_conv_lstm_cell(keras_cell):
        return _conv_cell(keras_cell, where)
    kind = next((name for name in _JR_CELLS
                 if isinstance(keras_cell, getattr(keras.layers, name))), None)
    if kind is None:
        raise TypeError(
            f"from_keras: {where} is a {type(keras_cell).__name__}; jaxrnn converts Keras's "
            "SimpleRNNCell, LSTMCell, GRUCell and ConvLSTMCell (and RNN layers and stacks of "
            "them, ConvLSTM1D/2D/3D). For your own cell, write its jaxrnn counterpart and "
            "copy the weights by name."
        )
    config = keras_cell.get_config()
    jr_cls = _JR_CELLS[kind]
    # The jaxrnn cell's constructor arguments share Keras's names; an initializer Keras
    # configures beyond what jaxrnn's names say falls back to the jaxrnn default.
    kw: dict[str, Any] = {}
    for field in dataclasses.fields(jr_cls):
        name = field.name
        if name.endswith("activation"):
            kw[name] = _activation(config[name], f"{where}.{name}")
        elif name.endswith("initializer"):
            kw[name] = _initializer(config.get(name), str(field.default))
        else:
            kw[name] = config[name]
    kw["units"] = int(kw["units"])
    cell = jr_cls(**kw)
    params = {"kernel": _weight(keras_cell.kernel),
              "recurrent_kernel": _weight(keras_cell.recurrent_kernel)}
    if cell.use_bias:
        params["bias"] = _weight(keras_cell.bias)
    return cell, params


def _rnn(keras_layer: Any, where: str) -> tuple[_layers.RNN, Any]:
    import keras

    kcell = keras_layer.cell
    if isinstance(kcell, keras.layers.StackedRNNCells):
        converted = [_cell(c, f"{where}.cell.cells[{i}]") for i, c in enumerate(kcell.cells)]
        cell: Any = [c for c, _ in converted]
        params: Any = [p for _, p in converted]
    else:
        cell, params = _cell(kcell, f"{where}.cell")
    flags = {name: getattr(keras_layer, name) for name in _RNN_FLAGS}
    if not isinstance(flags["unroll"], bool):
        flags["unroll"] = bool(flags["unroll"])
    # A mixed-precision policy (e.g. "mixed_bfloat16") keeps float32 weights and computes in
    # the compute dtype; jaxrnn's `dtype` is that compute dtype.
    compute, variable = keras_layer.compute_dtype, keras_layer.variable_dtype
    dtype = None if compute == variable else jnp.dtype(compute).name
    return _layers.RNN(cell, dtype=dtype, **flags), params


def _check_built(keras_layer: Any, where: str) -> None:
    if not getattr(keras_layer, "built", False):
        raise ValueError(
            f"from_keras: {where} ({type(keras_layer).__name__}) is not built, so it has no "
            "weights yet; call the layer once on a batch (layer(x)) or build it "
            "(layer.build((batch, time, features))) before converting it."
        )


def from_keras(layer: Any) -> tuple[Any, Any]:
    """Converts a built Keras 3 recurrent layer into a jaxrnn layer and its params.

    Supported: ``keras.layers.SimpleRNN``, ``LSTM``, ``GRU`` (``reset_after`` True or
    False), ``ConvLSTM1D``, ``ConvLSTM2D``, ``ConvLSTM3D``, ``RNN`` over their cells or a
    list of them (stacked), and ``Bidirectional`` over any of those (a custom
    ``backward_layer`` included). The jaxrnn layer has the same
    configuration: units, activations (by name), ``use_bias``, dropouts,
    ``unit_forget_bias``, ``reset_after``, the flags ``return_sequences``, ``return_state``,
    ``go_backwards``, ``stateful``, ``unroll``, ``zero_output_for_mask`` and
    ``merge_mode``; called on the same inputs (and mask, initial state) it gives the same
    outputs. A mixed-precision policy becomes the layer's compute ``dtype``.

    Not carried over: regularizers, constraints and seeds (they do not affect a forward
    pass); initializers only where jaxrnn has the same one (they only matter to ``init``);
    a stateful Keras layer's current states (start from ``layer.reset_state(batch)``, or
    pass them through ``reset_state(batch, states=...)``).

    Args:
      layer: a built Keras layer (called once, or ``layer.build(input_shape)``).

    Returns:
      ``(jaxrnn_layer, params)``: an `RNN` (params: a dict, or a list of dicts for a stack)
      or a `Bidirectional` (params ``{"forward": ..., "backward": ...}``).

    Raises:
      TypeError: `layer` is not one of the supported Keras layers.
      ValueError: the layer is not built, or uses an activation jaxrnn does not have.

    Example (needs Keras; not run as a doctest):
      >>> import keras, numpy as np, jaxrnn as jr
      >>> k = keras.layers.LSTM(8, return_sequences=True)
      >>> _ = k(np.zeros((1, 5, 3), "float32"))  # build it
      >>> layer, params = jr.from_keras(k)
      >>> layer(params, np.ones((2, 5, 3), "float32")).shape  # [B, T, H]
      (2, 5, 8)
    """
    try:
        import keras
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("from_keras needs Keras 3: pip install keras") from e

    if isinstance(layer, keras.layers.Bidirectional):
        _check_built(layer, "layer")
        fwd, f_params = _rnn(layer.forward_layer, "layer.forward_layer")
        bwd, b_params = _rnn(layer.backward_layer, "layer.backward_layer")
        # Keras sets zero_output_for_mask = return_sequences on both directions itself, as
        # jaxrnn's Bidirectional does; the copies it holds already carry it.
        fwd_base = dataclasses.replace(fwd, zero_output_for_mask=False)
        bwd_base = dataclasses.replace(bwd, zero_output_for_mask=False)
        default_bwd = dataclasses.replace(fwd_base, go_backwards=not fwd.go_backwards)
        backward_layer = None if bwd_base == default_bwd else bwd_base
        bi = _layers.Bidirectional(fwd_base, merge_mode=layer.merge_mode,
                                   backward_layer=backward_layer)
        return bi, {"forward": f_params, "backward": b_params}
    if isinstance(layer, keras.layers.RNN):
        _check_built(layer, "layer")
        return _rnn(layer, "layer")
    if isinstance(layer, keras.layers.Layer) and hasattr(layer, "cell"):
        raise TypeError(
            f"from_keras: {type(layer).__name__} is not supported; jaxrnn converts "
            "keras.layers.SimpleRNN, LSTM, GRU, ConvLSTM1D/2D/3D, RNN (over their cells) and "
            "Bidirectional."
        )
    raise TypeError(
        f"from_keras: expected a Keras SimpleRNN, LSTM, GRU, ConvLSTM1D/2D/3D, RNN or "
        f"Bidirectional layer; got "
        f"{type(layer).__name__}. Convert the recurrent layers of a model one by one."
    )
