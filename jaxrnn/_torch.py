"""PyTorch recurrent modules into jaxrnn and back: `from_torch` and `to_torch`.

PyTorch is imported lazily, inside the functions: jaxrnn never needs it at import time.

The weight mapping, per layer ``k`` (``_reverse`` for the backward direction):

- ``weight_ih_l{k}`` [G*H, F] is ``kernel`` [F, G*H] transposed; ``weight_hh_l{k}``
  [G*H, H] is ``recurrent_kernel`` [H, G*H] transposed.
- LSTM: PyTorch's gate order i, f, g, o is Keras's i, f, c, o, and its two biases
  enter the same sum, so ``bias = b_ih + b_hh``. Same for `SimpleRNNCell`.
- LSTM with ``proj_size=P``: ``weight_hr_l{k}`` [P, H] is ``projection`` [H, P] transposed
  (and ``weight_hh_l{k}`` is [4H, P]); `LSTMCell(H, proj_size=P)` computes the same step.
- GRU: PyTorch orders the gates r, z, n, Keras z, r, h, so the blocks are permuted.
  PyTorch computes ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``: the reset gate
  applied after the recurrent matmul, which is Keras's ``reset_after=True`` with the
  bias [2, 3H] = [b_ih, b_hh] (both permuted).
"""

from __future__ import annotations

import warnings
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxrnn import _cells, _layers

_GRU_PERM = (1, 0, 2)  # PyTorch r, z, n -> Keras z, r, h (and back: it is its own inverse)


def _import_torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("from_torch/to_torch need PyTorch: pip install torch") from e
    return torch


def _to_jax(t: Any) -> jnp.ndarray:
    """A torch tensor as a jax array of the same dtype (bfloat16 included)."""
    torch = _import_torch()
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: go through float32 (exact)
        return jnp.asarray(t.to(torch.float32).numpy(), dtype=jnp.bfloat16)
    return jnp.asarray(t.numpy())


def _permute_gates(a: Any, units: int, axis: int) -> Any:
    """Reorders the three gate blocks of `a` along `axis` (r, z, n <-> z, r, n)."""
    xp = jnp if isinstance(a, jnp.ndarray) else np
    blocks = [xp.take(a, xp.arange(g * units, (g + 1) * units), axis=axis) for g in _GRU_PERM]
    return xp.concatenate(blocks, axis=axis)


def _kind(module: Any) -> str:
    torch = _import_torch()
    if isinstance(module, torch.nn.LSTM):
        return "lstm"
    if isinstance(module, torch.nn.GRU):
        return "gru"
    if isinstance(module, torch.nn.RNN):
        return "rnn"
    if isinstance(module, (torch.nn.LSTMCell, torch.nn.GRUCell, torch.nn.RNNCell)):
        raise TypeError(
            f"from_torch: {type(module).__name__} is a single-step cell; from_torch converts "
            "the sequence modules torch.nn.RNN, LSTM and GRU. Wrap the cell's weights in a "
            "torch.nn module of the matching kind (num_layers=1), or build jaxrnn's cell and "
            "copy them (see jaxrnn._torch's docstring for the mapping)."
        )
    raise TypeError(
        f"from_torch: expected torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU; got "
        f"{type(module).__name__}."
    )


def _layer_params(module: Any, kind: str, k: int, suffix: str) -> tuple[Any, dict]:
    """The jaxrnn cell and params of PyTorch layer `k` in one direction."""
    h = module.hidden_size
    name = f"l{k}{suffix}"
    w_ih = _to_jax(getattr(module, f"weight_ih_{name}"))
    w_hh = _to_jax(getattr(module, f"weight_hh_{name}"))
    if kind == "gru":
        w_ih, w_hh = _permute_gates(w_ih, h, 0), _permute_gates(w_hh, h, 0)
    params = {"kernel": w_ih.T, "recurrent_kernel": w_hh.T}
    proj = getattr(module, "proj_size", 0)
    if proj:
        params["projection"] = _to_jax(getattr(module, f"weight_hr_{name}")).T
    if module.bias:
        b_ih = _to_jax(getattr(module, f"bias_ih_{name}"))
        b_hh = _to_jax(getattr(module, f"bias_hh_{name}"))
        if kind == "gru":
            params["bias"] = jnp.stack([_permute_gates(b_ih, h, 0), _permute_gates(b_hh, h, 0)])
        else:
            params["bias"] = b_ih + b_hh
    cell: _cells.RNNCellBase
    if kind == "lstm":
        cell = _cells.LSTMCell(h, use_bias=module.bias, proj_size=proj)
    elif kind == "gru":
        cell = _cells.GRUCell(h, use_bias=module.bias, reset_after=True)
    else:
        cell = _cells.SimpleRNNCell(h, activation=module.nonlinearity, use_bias=module.bias)
    return cell, params


def from_torch(module: Any) -> tuple[Any, Any]:
    """Converts a ``torch.nn.RNN``/``LSTM``/``GRU`` into a jaxrnn layer and its params.

    ``layer(params, x)`` returns what ``module(x)[0]`` returns, the output sequence (not
    ``h_n``), in the module's layout: [B, T, D*H] with ``batch_first=True``, else
    [T, B, D*H] (the layer is ``time_major``), with D = 2 when bidirectional (D*P for an
    LSTM with ``proj_size=P``: its cells are `LSTMCell(H, proj_size=P)`). PyTorch's
    unbatched 2-D input has no counterpart: add a batch axis.

    - one layer: an `RNN` over the matching cell (``return_sequences=True``);
    - ``num_layers > 1``: an `RNN` over the list of cells (stacked, one scan);
    - ``bidirectional``: a `Bidirectional` (merge ``"concat"``, as PyTorch), and with
      ``num_layers > 1`` a `Sequential` of them.

    The layers have ``zero_output_for_mask=True``, so with a right-padding mask
    (``jnp.arange(T) < lengths[:, None]``) the result is what PyTorch gives for a packed
    sequence, padded back with zeros (``pad_packed_sequence``).

    PyTorch's ``dropout`` between layers is not carried over (it only acts in training, and
    jaxrnn's dropout acts inside the cells, Keras's way); a module with ``dropout > 0``
    and several layers gets a warning.

    Args:
      module: a ``torch.nn.RNN`` (``nonlinearity`` "tanh" or "relu"), ``torch.nn.LSTM`` (any
        ``proj_size``) or ``torch.nn.GRU``; any ``num_layers``, ``bidirectional``,
        ``batch_first``, ``bias``.

    Returns:
      ``(layer, params)``; the params in the module's dtype.

    Raises:
      TypeError: `module` is not one of those modules.

    Example:
      >>> import torch, jax.numpy as jnp, jaxrnn as jr
      >>> module = torch.nn.LSTM(3, 8, num_layers=2, batch_first=True)
      >>> layer, params = jr.from_torch(module)
      >>> layer(params, jnp.ones((2, 5, 3))).shape  # [B, T, H], as module(x)[0]
      (2, 5, 8)
    """
    kind = _kind(module)
    if module.dropout > 0 and module.num_layers > 1:
        warnings.warn(
            f"from_torch: the module's dropout={module.dropout} between layers is not carried "
            "over (PyTorch applies it only in training); the converted layer has no dropout.",
            stacklevel=2,
        )
    time_major = not module.batch_first
    directions = ("", "_reverse") if module.bidirectional else ("",)
    per_layer = [[_layer_params(module, kind, k, s) for s in directions]
                 for k in range(module.num_layers)]
    rnn: dict[str, Any] = dict(return_sequences=True, zero_output_for_mask=True,
                               time_major=time_major)
    if not module.bidirectional:
        cells = [cp[0][0] for cp in per_layer]
        params = [cp[0][1] for cp in per_layer]
        if len(cells) == 1:
            return _layers.RNN(cells[0], **rnn), params[0]
        return _layers.RNN(cells, **rnn), params
    layers, params = [], []
    for (f_cell, f_params), (_, b_params) in per_layer:
        layers.append(_layers.Bidirectional(_layers.RNN(f_cell, **rnn), merge_mode="concat"))
        params.append({"forward": f_params, "backward": b_params})
    if len(layers) == 1:
        return layers[0], params[0]
    return _layers.Sequential(layers), params


# ----------------------------------------------------------------------------- to_torch


def _unsupported(why: str) -> ValueError:
    return ValueError(f"to_torch: {why}")


def _cell_kind(cell: Any) -> tuple[str, str]:
    """``(torch module name, nonlinearity)`` of a jaxrnn cell PyTorch can represent."""
    where = type(cell).__name__
    if getattr(cell, "dropout", 0) or getattr(cell, "recurrent_dropout", 0):
        raise _unsupported(f"{where} has dropout; PyTorch's modules have no in-cell dropout.")
    if isinstance(cell, _cells.LSTMCell):
        if (cell.activation, cell.recurrent_activation) != ("tanh", "sigmoid"):
            raise _unsupported("PyTorch's LSTM is tanh/sigmoid only; got activation="
                               f"{cell.activation!r}, recurrent_activation="
                               f"{cell.recurrent_activation!r}.")
        return "LSTM", "tanh"
    if isinstance(cell, _cells.GRUCell):
        if (cell.activation, cell.recurrent_activation) != ("tanh", "sigmoid"):
            raise _unsupported("PyTorch's GRU is tanh/sigmoid only; got activation="
                               f"{cell.activation!r}, recurrent_activation="
                               f"{cell.recurrent_activation!r}.")
        if not cell.reset_after:
            raise _unsupported("PyTorch's GRU applies the reset gate after the recurrent "
                               "matmul (reset_after=True); this GRUCell has reset_after=False.")
        return "GRU", "tanh"
    if isinstance(cell, _cells.SimpleRNNCell):
        if cell.activation not in ("tanh", "relu"):
            raise _unsupported("PyTorch's RNN is tanh or relu; got activation="
                               f"{cell.activation!r}.")
        return "RNN", cell.activation
    raise _unsupported(f"{where} has no PyTorch counterpart (LSTMCell, GRUCell and "
                       "SimpleRNNCell do).")


def _check_rnn(layer: Any, where: str) -> list:
    """The cells of an RNN PyTorch can run as one direction of a module."""
    if not isinstance(layer, _layers.RNN):
        raise _unsupported(f"{where} must be a jaxrnn.RNN; got {type(layer).__name__}.")
    if not layer.return_sequences or layer.return_state or layer.stateful:
        raise _unsupported(
            f"{where} must have return_sequences=True, return_state=False, stateful=False: a "
            "PyTorch module returns the output sequence."
        )
    if layer.dtype is not None:
        raise _unsupported(f"{where} has a compute dtype ({layer.dtype}); PyTorch computes in "
                           "the weights' dtype.")
    cell = layer.cell
    return list(cell.cells) if isinstance(cell, _cells.StackedRNNCells) else [cell]


def _torch_tensor(a: Any):
    torch = _import_torch()
    a = jnp.asarray(a)
    if a.dtype == jnp.bfloat16:
        return torch.from_numpy(np.array(a.astype(jnp.float32))).to(torch.bfloat16)
    return torch.from_numpy(np.array(a))


def _torch_weights(kind: str, units: int, params: dict, use_bias: bool) -> dict:
    """One direction of one layer: PyTorch's weight_ih, weight_hh, bias_ih, bias_hh (and
    weight_hr, projected LSTM)."""
    w_ih, w_hh = np.asarray(params["kernel"]).T, np.asarray(params["recurrent_kernel"]).T
    if kind == "GRU":
        w_ih, w_hh = _permute_gates(w_ih, units, 0), _permute_gates(w_hh, units, 0)
    out = {"weight_ih": w_ih, "weight_hh": w_hh}
    if "projection" in params:
        out["weight_hr"] = np.asarray(params["projection"]).T
    if use_bias:
        bias = np.asarray(params["bias"])
        if kind == "GRU":
            out["bias_ih"] = _permute_gates(bias[0], units, 0)
            out["bias_hh"] = _permute_gates(bias[1], units, 0)
        else:  # PyTorch adds its two biases; all of it goes into bias_ih
            out["bias_ih"], out["bias_hh"] = bias, np.zeros_like(bias)
    return out


def to_torch(layer: Any, params: Any) -> Any:
    """Builds the ``torch.nn.RNN``/``LSTM``/``GRU`` that computes what `layer` computes.

    The inverse of `from_torch`, for the layers PyTorch can represent: an `RNN` with
    ``return_sequences=True`` (and not ``return_state``/``stateful``) over a
    `LSTMCell`/`GRUCell` (``reset_after=True``)/`SimpleRNNCell` (tanh or relu), or a stack
    of one kind of cell with equal units (and equal ``proj_size``, which becomes the
    module's); a `Bidirectional` of such (merge ``"concat"``,
    backward direction the same cells); or a `Sequential` of such `Bidirectional` layers.
    ``batch_first = not time_major``. The module is in eval mode, on the CPU, with the
    params' dtype. Masks have no module counterpart (use packed sequences in PyTorch).

    Args:
      layer: the jaxrnn layer.
      params: its params.

    Returns:
      the ``torch.nn`` module; ``module(x)[0]`` equals ``layer(params, x)``.

    Raises:
      ValueError: the layer has no PyTorch counterpart (the message says why).

    Example:
      >>> import jax, jaxrnn as jr
      >>> layer = jr.Bidirectional(jr.GRU(4, return_sequences=True))
      >>> params = layer.init(jax.random.key(0), (2, 5, 3))
      >>> module = jr.to_torch(layer, params)
      >>> type(module).__name__, module.bidirectional, module.batch_first
      ('GRU', True, True)
    """
    torch = _import_torch()
    # directions[k] = [(cell, params) forward, (cell, params) backward?] for layer k.
    directions: list[list[tuple[Any, Any]]] = []
    if isinstance(layer, _layers.RNN):
        cells = _check_rnn(layer, "layer")
        plist = params if isinstance(layer.cell, _cells.StackedRNNCells) else [params]
        directions = [[(c, p)] for c, p in zip(cells, plist)]
        first = layer
        if layer.go_backwards:
            raise _unsupported("go_backwards=True has no PyTorch counterpart (its outputs come "
                               "back reversed); use a Bidirectional layer.")
    elif isinstance(layer, (_layers.Bidirectional, _layers.Sequential)):
        bis = [layer] if isinstance(layer, _layers.Bidirectional) else list(layer.layers)
        plist = [params] if isinstance(layer, _layers.Bidirectional) else list(params)
        for i, (bi, p) in enumerate(zip(bis, plist)):
            where = "layer" if isinstance(layer, _layers.Bidirectional) else f"layer.layers[{i}]"
            if not isinstance(bi, _layers.Bidirectional):
                raise _unsupported(f"{where} must be a Bidirectional (a Sequential converts "
                                   f"when all its layers are); got {type(bi).__name__}.")
            if bi.merge_mode != "concat":
                raise _unsupported(f"{where}: PyTorch concatenates the two directions; got "
                                   f"merge_mode={bi.merge_mode!r}.")
            fwd, bwd = bi.forward, bi.backward
            f_cells, b_cells = _check_rnn(fwd, f"{where}.forward"), _check_rnn(bwd,
                                                                              f"{where}.backward")
            if fwd.go_backwards or len(f_cells) != 1 or f_cells != b_cells:
                raise _unsupported(
                    f"{where}: PyTorch needs one cell per direction, the same in both, the "
                    "forward one not going backwards."
                )
            if i and fwd.time_major != bis[0].forward.time_major:
                raise _unsupported("all layers must agree on time_major.")
            directions.append([(f_cells[0], p["forward"]), (b_cells[0], p["backward"])])
        first = bis[0].forward
    else:
        raise _unsupported(f"expected a jaxrnn RNN, Bidirectional or Sequential; got "
                           f"{type(layer).__name__}.")

    cells = [c for per_layer in directions for c, _ in per_layer]
    kinds = {_cell_kind(c) for c in cells}
    if len(kinds) != 1:
        raise _unsupported(f"all cells must be of one kind for one PyTorch module; got "
                           f"{sorted(type(c).__name__ for c in cells)}.")
    (kind, nonlinearity), = kinds
    units = {c.units for c in cells}
    use_bias = {c.use_bias for c in cells}
    proj_sizes = {getattr(c, "proj_size", 0) for c in cells}
    if len(units) != 1 or len(use_bias) != 1 or len(proj_sizes) != 1:
        raise _unsupported("all cells must have the same units, use_bias and proj_size "
                           "(PyTorch has one hidden_size, one bias flag and one proj_size); got "
                           f"units {sorted(units)}, use_bias {sorted(use_bias)}, proj_size "
                           f"{sorted(proj_sizes)}.")
    (h,), (bias,), (proj,) = units, use_bias, proj_sizes
    input_size = int(np.shape(directions[0][0][1]["kernel"])[0])
    dtype = jnp.asarray(directions[0][0][1]["kernel"]).dtype
    kwargs = dict(input_size=input_size, hidden_size=h, num_layers=len(directions), bias=bias,
                  batch_first=not first.time_major, bidirectional=len(directions[0]) == 2)
    if kind == "RNN":
        kwargs["nonlinearity"] = nonlinearity
    if proj:
        kwargs["proj_size"] = proj
    module = getattr(torch.nn, kind)(**kwargs)
    state = {}
    for k, per_layer in enumerate(directions):
        for (_, p), suffix in zip(per_layer, ("", "_reverse")):
            for name, value in _torch_weights(kind, h, p, bias).items():
                state[f"{name}_l{k}{suffix}"] = _torch_tensor(value)
    if dtype == jnp.bfloat16:
        module = module.to(torch.bfloat16)
    elif dtype == jnp.float64:
        module = module.double()
    elif dtype == jnp.float16:
        module = module.half()
    module.load_state_dict(state)
    return module.eval()
