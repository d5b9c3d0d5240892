"""Keras 3 layers into jaxrnn: ``layer, params = from_keras(keras_layer)``.

Keras is imported lazily, inside `from_keras`: jaxrnn never needs it at import time.
Weights are copied by name (``kernel``, ``recurrent_kernel``, ``bias``): jaxrnn's cells use
Keras's names, shapes and gate orders, so no array is reshaped or reordered.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from typing import Any

import jax
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
            "SimpleRNNCell, LSTMCell and GRUCell (and RNN layers and stacks of them), and the "
            "ConvLSTMCell of ConvLSTM1D/2D/3D. For your own cell, write its jaxrnn "
            "counterpart and copy the weights by name."
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
        elif name in config:  # not jaxrnn's own options (proj_size): they keep their default
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


# ----------------------------------------------------------------------------- to_keras


def _dense_step_shape(params: dict) -> tuple[int | None, ...]:
    return (int(np.shape(params["kernel"])[0]),)  # F, the kernel's rows


@dataclasses.dataclass(frozen=True)
class _KerasKind:
    """Where one kind of jaxrnn cell lands in Keras.

    The cell's dataclass fields are the Keras constructor arguments of the same names and
    its params the Keras weights of the same names (as `from_keras` relies on), so a kind
    only names Keras's classes and the shape its cell is built for.
    """

    cell: str | None  # Keras's cell class; None where Keras has only the layer (no stacks)
    layer: str  # Keras's layer over one such cell
    # One step's input shape without the batch axis, read off the first cell's params.
    step_shape: Callable[[dict], tuple[int | None, ...]] = _dense_step_shape


_KERAS_KINDS: dict[type, _KerasKind] = {
    _cells.SimpleRNNCell: _KerasKind("SimpleRNNCell", "SimpleRNN"),
    _cells.LSTMCell: _KerasKind("LSTMCell", "LSTM"),
    _cells.GRUCell: _KerasKind("GRUCell", "GRU"),
}


def _import_keras(who: str) -> Any:
    try:
        import keras
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f'{who} needs Keras 3: pip install "keras>=3.10"') from e
    return keras


def _not_in_keras(why: str) -> ValueError:
    return ValueError(f"to_keras: {why}")


def _keras_kind(cell: Any, where: str) -> _KerasKind:
    if type(cell) is _conv.ConvLSTMCell:  # Keras: one layer per rank, no public cell
        return _KerasKind(None, f"ConvLSTM{cell.rank}D")
    kind = _KERAS_KINDS.get(type(cell))
    if kind is None:
        known = ", ".join(sorted(c.__name__ for c in _KERAS_KINDS))
        raise _not_in_keras(
            f"{where} is a {type(cell).__name__}, which has no Keras 3 counterpart: to_keras "
            f"converts layers over Keras's recurrent cells, {known} (stacked or not)."
        )
    return kind


def _keras_activation(value: Any, where: str) -> str:
    """A jaxrnn activation (a name, or one of the named functions) as Keras's name."""
    try:
        name = "linear" if value is None else _resolve.serialize(value, where)
    except ValueError:
        name = None
    if name not in _resolve.ACTIVATIONS:
        raise _not_in_keras(
            f"{where} is {value!r}, which Keras does not know by name; to_keras converts the "
            f"activations {sorted(_resolve.ACTIVATIONS)} (Keras's own, with its semantics)."
        )
    return str(name)


def _keras_initializer(value: Any) -> str | None:
    """A jaxrnn initializer as Keras's name, or None (Keras's default) where it has none.

    Initializers only matter to ``init``; the Keras layer gets the params as its weights.
    """
    try:
        name = _resolve.serialize(value, "initializer")
    except ValueError:
        return None
    for canonical, aliases in _resolve._ALIASES.items():
        if name in aliases:
            name = canonical
    return name if name in _resolve.INITIALIZERS else None


def _keras_cell_args(cell: Any, keras_cls: Any, where: str) -> dict[str, Any]:
    """The Keras constructor arguments that give `cell`'s configuration.

    A field Keras's class does not take converts only at its default (e.g. a jaxrnn-only
    option that is off); otherwise the cell has no Keras counterpart.
    """
    accepted = inspect.signature(keras_cls).parameters
    kw: dict[str, Any] = {}
    for field in dataclasses.fields(cell):
        name, value = field.name, getattr(cell, field.name)
        if name in getattr(cell, "_keras_implicit", ()):
            continue
        if name not in accepted:
            if value == field.default:
                continue
            raise _not_in_keras(
                f"{where}.{name}={value!r} has no Keras counterpart: keras.layers."
                f"{keras_cls.__name__} takes no {name!r}."
            )
        if name.endswith("activation"):
            kw[name] = _keras_activation(value, f"{where}.{name}")
        elif name.endswith("initializer"):
            init = _keras_initializer(value)
            if init is not None:
                kw[name] = init
        else:
            kw[name] = value
    return kw


def _keras_dtype(layer: _layers.RNN, params: Any, where: str) -> str:
    """The Keras dtype policy: the params' dtype, or ``mixed_*`` for a half-precision compute
    dtype over float32 params (what `from_keras` reads back as the layer's ``dtype``)."""
    dtypes = sorted({jnp.dtype(jnp.result_type(p)).name for p in jax.tree.leaves(params)})
    if len(dtypes) != 1:
        raise _not_in_keras(
            f"{where}'s params mix the dtypes {dtypes}; a Keras layer keeps its weights in "
            "one dtype. Cast them first, e.g. jax.tree.map(lambda a: a.astype('float32'), "
            "params)."
        )
    (variable,) = dtypes
    compute = layer.dtype or variable
    if compute == variable:
        return variable
    if variable == "float32" and compute in ("float16", "bfloat16"):
        return f"mixed_{compute}"
    raise _not_in_keras(
        f"{where} computes in {compute} over {variable} params; Keras's dtype policies are "
        "one dtype, or mixed_float16/mixed_bfloat16 over float32 weights. Cast the params "
        f"to {compute}, or build the layer with dtype=None."
    )


def _keras_rnn(keras: Any, layer: Any, params: Any, where: str) -> Any:
    """The unbuilt Keras layer for a jaxrnn `RNN`: the shorthand (``keras.layers.LSTM``...)
    over one cell, ``keras.layers.RNN`` over a stack."""
    if not isinstance(layer, _layers.RNN):
        raise TypeError(f"to_keras: {where} must be a jaxrnn.RNN; got {type(layer).__name__}.")
    if layer.time_major:
        raise _not_in_keras(
            f"{where} has time_major=True; Keras 3's RNN layers take [B, T, F] sequences only. "
            "Convert dataclasses.replace(layer, time_major=False) (the same params) and "
            "transpose the sequences to [B, T, F] for Keras."
        )
    if layer.learn_initial_state:
        raise _not_in_keras(
            f"{where} has learn_initial_state=True; a Keras RNN starts from zeros or from the "
            "initial_state it is called with, and has no weight for a learned one. Convert "
            "dataclasses.replace(layer, learn_initial_state=False) with params['cell'], and "
            "pass the learned params['initial_state'] (broadcast to the batch) as Keras's "
            "initial_state."
        )
    stacked = isinstance(layer.cell, _cells.StackedRNNCells)
    cells = list(layer.cell.cells) if stacked else [layer.cell]
    cell_where = [f"{where}.cell.cells[{i}]" for i in range(len(cells))] if stacked \
        else [f"{where}.cell"]
    kinds = [_keras_kind(c, w) for c, w in zip(cells, cell_where)]
    dtype = _keras_dtype(layer, params, where)
    flags: dict[str, Any] = {name: getattr(layer, name) for name in _RNN_FLAGS}
    # Keras's unroll is all or nothing; an int k is a scan option with the same results.
    flags["unroll"] = layer.unroll is True
    if not stacked:
        kind = kinds[0]
        arg_cls = getattr(keras.layers, kind.cell or kind.layer)
        args = _keras_cell_args(cells[0], arg_cls, cell_where[0])
        return getattr(keras.layers, kind.layer)(**args, **flags, dtype=dtype)
    keras_cells = []
    for cell, kind, w in zip(cells, kinds, cell_where):
        if kind.cell is None:
            raise _not_in_keras(
                f"{w} is a {type(cell).__name__}: Keras has keras.layers.{kind.layer} but no "
                "public cell of it, so it cannot be stacked in one keras.layers.RNN. Use a "
                "jaxrnn.Sequential of layers instead."
            )
        cls = getattr(keras.layers, kind.cell)
        keras_cells.append(cls(**_keras_cell_args(cell, cls, w), dtype=dtype))
    return keras.layers.RNN(keras_cells, **flags, dtype=dtype)


def _keras_bidirectional(keras: Any, bi: Any, params: dict, where: str) -> Any:
    fwd = _keras_rnn(keras, bi.forward, params["forward"], f"{where}.layer")
    back_where = f"{where}.backward_layer" if bi.backward_layer is not None else \
        f"{where} (its backward layer)"
    bwd = _keras_rnn(keras, bi.backward, params["backward"], back_where)
    # Keras's own backward copy is `layer` with go_backwards=True; pass jaxrnn's backward
    # layer wherever it is anything else.
    keras_default = dataclasses.replace(bi.forward, go_backwards=True)
    backward_layer = None if bi.backward == keras_default else bwd
    return keras.layers.Bidirectional(fwd, merge_mode=bi.merge_mode,
                                      backward_layer=backward_layer, dtype=fwd.dtype_policy)


def _keras_layer(keras: Any, layer: Any, params: Any, where: str) -> Any:
    if isinstance(layer, _layers.Bidirectional):
        return _keras_bidirectional(keras, layer, params, where)
    return _keras_rnn(keras, layer, params, where)


def _step_shape(layer: Any, params: Any, given: Any = None) -> tuple[int | None, ...]:
    """One step's input shape (no batch axis) for an RNN or Bidirectional: its first cell's;
    for a ConvLSTM, whose params do not tell the spatial size, `given` (checked)."""
    if isinstance(layer, _layers.Bidirectional):
        layer, params = layer.forward, params["forward"]
    cell = layer.cell
    if _cells.input_rank(cell) > 1:
        if given is None:
            raise ValueError(
                "to_keras: a Keras ConvLSTM is built for one spatial size, which the params "
                f"do not tell; pass step_shape=, the shape of one step of the sequences "
                f"without batch and time ([{layer._step_layout}], x.shape[2:])."
            )
        step = tuple(given)
        try:
            layer._check_cell_params(params, layer._input_dim(step, ""))
        except ValueError as e:
            raise ValueError(f"to_keras: step_shape={step}: {e}") from None
        return step
    if isinstance(cell, _cells.StackedRNNCells):
        cell, params = cell.cells[0], params[0]
    return _KERAS_KINDS[type(cell)].step_shape(params)


def _keras_cells(keras: Any, keras_layer: Any) -> list:
    """The Keras cells inside a Keras RNN or Bidirectional layer."""
    if isinstance(keras_layer, keras.layers.Bidirectional):
        return (_keras_cells(keras, keras_layer.forward_layer)
                + _keras_cells(keras, keras_layer.backward_layer))
    cell = keras_layer.cell
    return list(cell.cells) if isinstance(cell, keras.layers.StackedRNNCells) else [cell]


def _build(keras: Any, keras_layer: Any, shape: tuple) -> None:
    """Builds `keras_layer` for sequences of `shape` without running its initializers.

    The params overwrite every weight right after, and Keras's orthogonal initializer alone
    costs seconds of compilation per shape; the cells get zeros for the build and their own
    initializers back (which their configs report) after it.
    """
    saved = [(cell, name, value) for cell in _keras_cells(keras, keras_layer)
             for name, value in vars(cell).items() if name.endswith("_initializer")]
    try:
        for cell, name, _ in saved:
            setattr(cell, name, keras.initializers.Zeros())
        keras_layer.build(shape)
    finally:
        for cell, name, value in saved:
            setattr(cell, name, value)


def _assign_cell(keras_cell: Any, params: dict, where: str) -> None:
    """Copies `params` into the Keras cell's weights of the same names."""
    assigned = set()
    for name, value in params.items():
        variable = getattr(keras_cell, name, None)
        shape = tuple(np.shape(value))
        if variable is None or tuple(variable.shape) != shape:
            got = None if variable is None else tuple(variable.shape)
            raise _not_in_keras(
                f"{where}: Keras's {type(keras_cell).__name__} has no weight {name!r} of shape "
                f"{shape} (it has {got})."
            )
        variable.assign(np.asarray(value))
        assigned.add(id(variable))
    missing = [v.path for v in keras_cell.weights if id(v) not in assigned]
    if missing:
        raise _not_in_keras(f"{where}: no params for the Keras weights {missing}.")


def _assign(layer: Any, keras_layer: Any, params: Any, where: str) -> None:
    """Copies `params` into the built Keras layer that `_keras_layer` made for `layer`."""
    if isinstance(layer, _layers.Bidirectional):
        _assign(layer.forward, keras_layer.forward_layer, params["forward"], f"{where}.layer")
        _assign(layer.backward, keras_layer.backward_layer, params["backward"],
                f"{where}.backward_layer")
    elif isinstance(layer.cell, _cells.StackedRNNCells):
        for i, (k, p) in enumerate(zip(keras_layer.cell.cells, params)):
            _assign_cell(k, p, f"{where}.cell.cells[{i}]")
    else:
        _assign_cell(keras_layer.cell, params, f"{where}.cell")


def to_keras(layer: Any, params: Any, *, batch_size: int | None = None,
             step_shape: Any = None) -> Any:
    """Builds the Keras 3 layer that computes what `layer` computes with `params`.

    The inverse of `from_keras`: the Keras layer has the same configuration and its weights
    are `params` (same names, shapes and gate orders, so nothing is reordered); called on the
    same inputs (masks and ``initial_state`` included) it gives the same outputs. It maps

    - an `RNN` over one `SimpleRNNCell`/`LSTMCell`/`GRUCell` to ``keras.layers.SimpleRNN``/
      ``LSTM``/``GRU`` (an `RNN` over a cell and the shorthand are one jaxrnn layer);
    - an `RNN` over a stack of them to ``keras.layers.RNN`` over their Keras cells;
    - an `RNN` over a `ConvLSTMCell` (`ConvLSTM1D`/`2D`/`3D`) to ``keras.layers.ConvLSTM1D``/
      ``2D``/``3D`` (built for `step_shape`);
    - a `Bidirectional` to ``keras.layers.Bidirectional`` (``merge_mode``, and the backward
      layer as ``backward_layer`` where it is not Keras's default copy);
    - a `Sequential` to a ``keras.Sequential`` model of those, starting with a
      ``keras.Input`` (Keras passes the mask from layer to layer, as jaxrnn does);

    with the units, activations (by name), ``use_bias``, ``unit_forget_bias``,
    ``reset_after``, dropouts and initializers (where Keras has the same one; they only
    matter to a new init), the flags ``return_sequences``, ``return_state``,
    ``go_backwards``, ``stateful``, ``unroll``, ``zero_output_for_mask``, and a compute
    ``dtype`` as a ``mixed_float16``/``mixed_bfloat16`` policy (else the params' dtype).

    Not carried over, as they do not change results: jaxrnn's engine options (``parallel``,
    ``fused``, ``remat``, ``remat_threshold``, ``solver``) and ``param_dtype``; an int
    ``unroll`` becomes ``False`` (Keras unrolls all or nothing). Keras's ``unroll=True`` path
    mishandles masks (see the "Coming from Keras" guide); jaxrnn's results are its scan
    path's. A stateful Keras layer starts from zeros (its ``reset_states()``). ``reset=`` is
    an argument of a call, not of the layer: Keras layers take none.

    Args:
      layer: a jaxrnn `RNN`, `Bidirectional` or `Sequential` (of `RNN`/`Bidirectional`).
      params: its params, as from ``layer.init`` or `from_keras`.
      batch_size: the fixed batch size a stateful layer needs (Keras keeps its states in
        variables of that size); optional otherwise.
      step_shape: for a ConvLSTM (the first layer of a `Sequential`), the shape of one step
        of the sequences without batch and time, ``x.shape[2:]``: Keras builds a ConvLSTM
        for one spatial size. Ignored by other layers.

    Returns:
      The built Keras layer (a ``keras.Sequential`` for a `Sequential`), in the backend
      Keras is configured with.

    Raises:
      TypeError: `layer` is not a jaxrnn layer, or `params` are not its params' structure.
      ValueError: `params` do not fit `layer`, a stateful layer has no `batch_size`, or
        the layer has no Keras counterpart (the message says what and why): a cell Keras
        lacks (`MinGRUCell`, `MinLSTMCell`, `LRUCell`, your own), ``time_major=True``,
        ``learn_initial_state=True``, an activation Keras does not know by name.

    Example:
      >>> import jax, numpy as np, jaxrnn as jr
      >>> layer = jr.GRU(4, return_sequences=True)
      >>> params = layer.init(jax.random.key(0), (2, 5, 3))
      >>> k = jr.to_keras(layer, params)
      >>> type(k).__name__, k.built, k.cell.bias.shape  # a Keras GRU, bias [2, 3H]
      ('GRU', True, (2, 12))
      >>> x = np.ones((2, 5, 3), "float32")
      >>> bool(np.allclose(k(x), layer(params, x), atol=1e-5))
      True
      >>> back, same = jr.from_keras(k)  # and back again
      >>> back == layer
      True
    """
    keras = _import_keras("to_keras")
    if not isinstance(layer, (_layers.RNN, _layers.Bidirectional, _layers.Sequential)):
        hint = (" Wrap the cell in a layer first: jaxrnn.RNN(cell)." if
                _cells.has_cell_interface(layer) == [] else "")
        raise TypeError(
            f"to_keras: expected a jaxrnn RNN, Bidirectional or Sequential; got "
            f"{type(layer).__name__}.{hint}"
        )
    try:
        layer.check_params(params)
    except (ValueError, TypeError) as e:
        if type(e) not in (ValueError, TypeError):  # never rebuild a foreign type
            raise
        raise type(e)(f"to_keras: params do not fit the layer: {e}") from None
    if isinstance(layer, _layers.Bidirectional):  # Keras builds both for one input width
        f, b = (d.check_params(params[k]) for d, k in ((layer.forward, "forward"),
                                                       (layer.backward, "backward")))
        if f != b:
            raise ValueError(
                f"to_keras: params do not fit the layer: the forward params take {f} input "
                f"features and the backward params {b}; both directions read the same "
                "sequences."
            )
    if batch_size is not None and (isinstance(batch_size, bool) or
                                   not isinstance(batch_size, int) or batch_size <= 0):
        raise ValueError(f"to_keras: batch_size must be None or a positive int; got "
                         f"{batch_size!r}.")
    if getattr(layer, "stateful", False) and batch_size is None:  # Sequential: never
        raise ValueError(
            "to_keras: the layer is stateful, and a stateful Keras layer keeps its states in "
            "variables of a fixed batch size; pass batch_size= (the batch you will call it "
            "with)."
        )
    sequential = isinstance(layer, _layers.Sequential)
    layers = list(layer.layers) if isinstance(layer, _layers.Sequential) else [layer]
    layer_params = list(params) if sequential else [params]
    wheres = [f"layer.layers[{i}]" for i in range(len(layers))] if sequential else ["layer"]
    # Keras's own JAX code broadcasts by rank.
    with jax.numpy_rank_promotion("allow"):
        keras_layers = [_keras_layer(keras, sub, p, w)  # raises for what Keras lacks
                        for sub, p, w in zip(layers, layer_params, wheres)]
        shape = first_shape = (batch_size, None,
                               *_step_shape(layers[0], layer_params[0], step_shape))
        for k in keras_layers:
            _build(keras, k, shape)
            shape = k.compute_output_shape(shape)  # what the next layer of a Sequential gets
        for sub, k, p, w in zip(layers, keras_layers, layer_params, wheres):
            _assign(sub, k, p, w)
        if not sequential:
            return keras_layers[0]
        return keras.Sequential([keras.Input(batch_shape=first_shape), *keras_layers])
