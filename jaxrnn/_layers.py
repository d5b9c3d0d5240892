"""Layers: `RNN` over any cell, the Keras shorthands, `Bidirectional` and `Sequential`.

Layers hold configuration only; ``layer.init`` makes the params pytree and
``layer(params, sequences, ...)`` is a pure function of it, so it composes with
`jax.jit`, `jax.grad` and `jax.vmap`. Every check of shapes runs at the layer's
boundary, before the loop is traced, and raises the same error eagerly and under jit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn import _cells, _fused, _parallel, _registry, _scan

Array = jax.Array

_CELL_ARGS = {
    _cells.SimpleRNNCell: {f.name for f in dataclasses.fields(_cells.SimpleRNNCell)},
    _cells.LSTMCell: {f.name for f in dataclasses.fields(_cells.LSTMCell)},
    _cells.GRUCell: {f.name for f in dataclasses.fields(_cells.GRUCell)},
}
_FLAGS = ("return_sequences", "return_state", "go_backwards", "stateful",
          "zero_output_for_mask", "time_major")
MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _check_bool(value: Any, name: str, who: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{who}: {name} must be True or False; got {value!r}.")


def _shape_of(x: Any) -> tuple:
    return tuple(getattr(x, "shape", jnp.shape(x)))


def _split_key(rng: Array | None, n: int) -> list:
    return [None] * n if rng is None else list(jax.random.split(rng, n))


def _flip_time(y: Any, time_major: bool) -> Any:
    return jax.tree.map(lambda a: jnp.flip(a, axis=0 if time_major else 1), y)


# ----------------------------------------------------------------------------- RNN


@_registry.register
@dataclasses.dataclass(frozen=True)
class RNN:
    """A recurrent layer: a cell run over the time axis by one `jax.lax.scan`.

    Semantics are Keras 3's ``keras.layers.RNN`` (its scan path), for every value of
    `unroll`: a masked step carries the states over and repeats the previous output
    (or outputs zeros with `zero_output_for_mask`); `go_backwards` processes the
    sequence from its end and returns outputs in processing order.

    Args:
      cell: a cell (`LSTMCell`, `GRUCell`, `SimpleRNNCell`, a user-defined object with
        the cell interface) or a list of cells, stacked as `StackedRNNCells`.
      return_sequences: return the outputs of every step, [B, T, H], not only the last.
      return_state: also return the final states: ``(output, *final_states)``.
      go_backwards: process the sequence backwards.
      stateful: thread the state explicitly: calls take ``state=`` and return
        ``(result, new_state)``; ``reset_state(batch_size)`` gives zeros.
      unroll: ``False`` (scan's ``unroll=1``), ``True`` (fully unrolled) or a positive
        int k (scan's ``unroll=k``). Results never depend on it.
      zero_output_for_mask: masked steps output zeros.
      time_major: sequences (and outputs) are [T, B, F]; the mask stays [B, T].
      parallel: for cells with a linear recurrence (`MinGRUCell`, `MinLSTMCell`,
        `LRUCell`): ``None`` runs them with `jax.lax.associative_scan` over time,
        ``True`` demands it (an error for other cells), ``False`` forces the scan.
      fused: for `LSTMCell` and `GRUCell` (alone or stacked): ``None`` takes the fused
        path (a hand-written backward pass, same results as the scan), ``True``
        demands it, ``False`` forces the generic scan.
      dtype: the compute dtype (e.g. ``"bfloat16"``): sequences, states and params are
        cast to it for the loop. ``None`` computes in the inputs' and params' dtype.
      param_dtype: the dtype `init` creates params in when it is not given one
        (default float32).
      remat: memory for training on long sequences, on the fused path: ``None``
        checkpoints segments of the sequence automatically when the saved activations
        would pass 1 GiB; ``True`` always, in segments of about sqrt(T) steps; an int k,
        in segments of k steps; ``False`` never. The backward pass recomputes one
        segment at a time. Results never depend on it.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> layer = jr.RNN(jr.LSTMCell(8), return_sequences=True, return_state=True)
      >>> params = layer.init(jax.random.key(0), (2, 5, 3))
      >>> y, h, c = layer(params, jnp.ones((2, 5, 3)))
      >>> y.shape, h.shape  # [B, T, H], [B, H]
      ((2, 5, 8), (2, 8))
    """

    cell: Any
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    stateful: bool = False
    unroll: bool | int = False
    zero_output_for_mask: bool = False
    time_major: bool = False
    parallel: bool | None = None
    fused: bool | None = None
    dtype: str | None = None
    param_dtype: str | None = None
    remat: bool | int | None = None

    def __post_init__(self):
        cell = self.cell
        if isinstance(cell, (list, tuple)):
            cell = _cells.StackedRNNCells(list(cell))  # raises on an empty list
            object.__setattr__(self, "cell", cell)
        missing = _cells.has_cell_interface(cell)
        if missing:
            raise TypeError(
                f"RNN: cell must have the cell interface (state_size, init(key, input_dim, "
                f"dtype), __call__(params, inputs, states, *, training, rng)); got "
                f"{type(cell).__name__} without {missing}. Pass e.g. jaxrnn.LSTMCell(32)."
            )
        for name in _FLAGS:
            _check_bool(getattr(self, name), name, "RNN")
        u = self.unroll
        if not isinstance(u, bool) and (not isinstance(u, int) or u < 1):
            raise ValueError(
                f"RNN: unroll must be False, True or a positive int (steps per loop iteration); "
                f"got {u!r}."
            )
        r = self.remat
        if r is not None and not isinstance(r, bool) and (not isinstance(r, int) or r < 1):
            raise ValueError(
                f"RNN: remat must be None, True, False or a positive int (steps per "
                f"checkpointed segment); got {r!r}."
            )
        for name in ("parallel", "fused"):
            if getattr(self, name) is not None:
                _check_bool(getattr(self, name), name, "RNN")
        if self.parallel and not _parallel.supports(cell):
            raise ValueError(
                f"RNN: parallel=True needs a cell with a linear recurrence (MinGRUCell, "
                f"MinLSTMCell, LRUCell, or stacks of them); {type(cell).__name__} has none. Use "
                "parallel=None or False."
            )
        if self.fused and not _fused.supports(cell):
            raise ValueError(
                f"RNN: fused=True needs LSTMCell or GRUCell cells (alone or stacked); got "
                f"{type(cell).__name__}. Use fused=None or False."
            )
        for name in ("dtype", "param_dtype"):
            value = getattr(self, name)
            if value is not None:
                try:
                    dt = jnp.dtype(value)
                except TypeError:
                    raise TypeError(f"RNN: {name} must be a dtype such as 'float32' or "
                                    f"'bfloat16'; got {value!r}.") from None
                if not jnp.issubdtype(dt, jnp.floating):
                    raise TypeError(f"RNN: {name} must be a floating dtype; got {dt}.")
                object.__setattr__(self, name, dt.name)

    # --- shapes ----------------------------------------------------------------------

    @property
    def output_size(self) -> int:
        """H, the size of the output's last axis."""
        return _cells.StackedRNNCells([self.cell]).output_size

    @property
    def _stacked(self) -> bool:
        return isinstance(self.cell, _cells.StackedRNNCells)

    def init(self, key: Array, input_shape: Sequence[int | None], dtype=None) -> Any:
        """Creates the cell's params for inputs of `input_shape`.

        Args:
          key: a `jax.random` key.
          input_shape: (B, T, F) ((T, B, F) when time_major); B and T may be None.
          dtype: the params' dtype; default the layer's `param_dtype`, else float32.
        """
        if dtype is None:
            dtype = self.param_dtype or jnp.float32
        shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
        if shape is None or len(shape) != 3 or not isinstance(shape[-1], int):
            raise ValueError(
                f"RNN.init: input_shape must be (batch, time, features) with an int number of "
                f"features (batch and time may be None); got {input_shape!r}."
            )
        return self.cell.init(key, shape[-1], dtype)

    def _check_params(self, params: Any, f: int) -> None:
        check = getattr(self.cell, "check_params", None)
        if check is None:
            return
        try:
            want = check(params, None)
        except (ValueError, TypeError) as e:
            raise type(e)(f"RNN: {e}") from None
        if want is not None and want != f:
            raise ValueError(
                f"RNN: sequences must be [B, T, F] with F={want} (the params' input_dim); got "
                f"{f} features. Re-create the params with layer.init(key, (B, T, {f})), or "
                f"feed {want} features."
            )

    def _check_sequences(self, sequences: Any) -> Array:
        try:
            x = jnp.asarray(sequences)
        except TypeError:
            raise TypeError(
                f"RNN: sequences must be an array [B, T, F]; got {type(sequences).__name__}."
            ) from None
        layout = "[T, B, F]" if self.time_major else "[B, T, F]"
        if x.ndim != 3:
            hint = " For one sequence, add a batch axis: x[None]." if x.ndim == 2 else ""
            raise ValueError(
                f"RNN: sequences must be a 3-D array {layout}; got shape {x.shape} "
                f"(rank {x.ndim}).{hint}"
            )
        t = x.shape[0] if self.time_major else x.shape[1]
        if t == 0:
            raise ValueError(
                f"RNN: sequences have an empty time axis (shape {x.shape}); an RNN needs at "
                "least one step. Drop empty batches before calling the layer."
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(
                f"RNN: sequences must be floating point; got dtype {x.dtype}. Cast them, e.g. "
                "x.astype(jnp.float32)."
            )
        return x

    @staticmethod
    def _check_mask(mask: Any, batch: int, time: int) -> Array | None:
        if mask is None:
            return None
        m = jnp.asarray(mask)
        if m.shape != (batch, time):
            raise ValueError(
                f"RNN: mask must be [B, T] = ({batch}, {time}) booleans, True where a step is "
                f"real; got shape {m.shape}. Build it as e.g. "
                "jnp.arange(T)[None, :] < lengths[:, None]."
            )
        return m if m.dtype == jnp.bool_ else m != 0

    def _check_states(self, given: Any, batch: int, dtype, arg: str) -> Any:
        like = _cells.initial_state_of(self.cell, batch, dtype)
        expected = jax.tree.leaves(like)
        if isinstance(given, (list, tuple)):
            leaves = jax.tree.leaves(given)
        elif hasattr(given, "shape"):
            leaves = [given]
        else:
            raise TypeError(
                f"RNN: {arg} must be a list of arrays, one per state of the cell; got "
                f"{type(given).__name__}."
            )
        shapes = [e.shape for e in expected]
        if len(leaves) != len(expected) or (
                self._stacked and isinstance(given, (list, tuple))
                and len(given) != len(self.cell.cells)):
            raise ValueError(
                f"RNN: {arg} must hold {len(expected)} arrays with shapes {shapes} "
                f"({type(self.cell).__name__} states"
                f"{', one entry per cell' if self._stacked else ''}); got {len(leaves)}. "
                f"Start from layer.reset_state({batch}) or cell.get_initial_state({batch})."
            )
        out = []
        for i, (g, e) in enumerate(zip(leaves, expected)):
            shape = _shape_of(g)
            if shape != e.shape:
                why = ""
                if len(shape) == 2 and shape[1] == e.shape[1] and shape[0] != batch:
                    why = (f" Its batch size is {shape[0]} but the sequences' is {batch}; "
                           f"call layer.reset_state({batch}) for a new batch size.")
                raise ValueError(
                    f"RNN: {arg} array {i} must have shape {e.shape} (batch, units); got "
                    f"{shape}.{why}"
                )
            out.append(jnp.asarray(g, dtype))
        return jax.tree.unflatten(jax.tree.structure(like), out)

    # --- calling ---------------------------------------------------------------------

    def __call__(
        self,
        params: Any,
        sequences: Array,
        initial_state: Sequence[Array] | None = None,
        mask: Array | None = None,
        training: bool = False,
        rng: Array | None = None,
        state: Any = None,
    ) -> Any:
        """Runs the layer.

        Args:
          params: from `init` (the cell's params).
          sequences: [B, T, F] float array ([T, B, F] when time_major).
          initial_state: a list with one [B, H] array per state of the cell (a stack:
            one entry per cell); zeros when None.
          mask: [B, T] booleans, True where a step is real.
          training: apply the cell's dropout.
          rng: a `jax.random` key; needed when training with dropout.
          state: for a stateful layer, the state from `reset_state` or the previous call.

        Returns:
          ``output`` ([B, T, H] with return_sequences, else [B, H]); with return_state the
          tuple ``(output, *final_states)``; for a stateful layer, ``(result, new_state)``.

        Raises:
          ValueError, TypeError: a shape, count or argument does not fit; the message
            says what was expected and how to fix it.
        """
        x = self._check_sequences(sequences)
        if self.time_major:
            time, batch, features = x.shape
        else:
            batch, time, features = x.shape
        self._check_params(params, features)
        mask = self._check_mask(mask, batch, time)
        if self.dtype is not None:
            dtype = jnp.dtype(self.dtype)
            x = x.astype(dtype)
            params = jax.tree.map(
                lambda p: p.astype(dtype) if jnp.issubdtype(jnp.result_type(p), jnp.floating)
                else p, params)
        else:
            dtype = jnp.result_type(x.dtype, *[p.dtype for p in jax.tree.leaves(params)
                                               if hasattr(p, "dtype")])
        if self.stateful:
            if state is None and initial_state is None:
                raise ValueError(
                    "RNN: a stateful layer needs state=: start with "
                    f"state = layer.reset_state({batch}), then pass the state each call "
                    "returns to the next call."
                )
            given, arg = (initial_state, "initial_state") if initial_state is not None \
                else (state, "state")
            states = self._check_states(given, batch, dtype, arg)
        else:
            if state is not None:
                raise ValueError(
                    "RNN: state= is for stateful=True layers; this layer is not stateful. "
                    "Pass initial_state= instead, or build the layer with stateful=True."
                )
            states = (_cells.initial_state_of(self.cell, batch, dtype) if initial_state is None
                      else self._check_states(initial_state, batch, dtype, "initial_state"))
        dropout = _cells.make_dropout(self.cell, rng, training, batch, features, dtype)

        xs = x if self.time_major else jnp.swapaxes(x, 0, 1)
        mask_t = None if mask is None else mask.T
        options: dict[str, Any] = dict(
            go_backwards=self.go_backwards,
            unroll=self.unroll if self.unroll is not False else 1,
            zero_output_for_mask=self.zero_output_for_mask,
            return_sequences=self.return_sequences,
            stacked=self._stacked,
        )
        if self.parallel is not False and _parallel.supports(self.cell):
            outputs, final = _parallel.parallel_rnn(self.cell, params, states, xs, mask_t,
                                                    dropout, **options)
        elif self.fused is not False and _fused.supports(self.cell):
            outputs, final = _fused.fused_rnn(self.cell, params, states, xs, mask_t, dropout,
                                              remat=self.remat, **options)
        else:
            outputs, final = _scan.scan_rnn(
                lambda x_t, s: _cells.apply_cell(self.cell, params, x_t, s, dropout),
                states, xs, mask_t, **options)
        if self.return_sequences and not self.time_major:
            outputs = jnp.swapaxes(outputs, 0, 1)
        result = (outputs, *final) if self.return_state else outputs
        return (result, final) if self.stateful else result

    def reset_state(self, batch_size: int, states: Sequence[Array] | None = None,
                    dtype=jnp.float32) -> Any:
        """The state to start a stateful layer with: zeros, or the checked `states`.

        Args:
          batch_size: B.
          states: optional list with one [B, H] array per state (a stack: per cell).
          dtype: dtype of the zeros.

        Returns:
          The states' tuple (an `LSTMState` for an LSTM), to pass as ``state=``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"RNN.reset_state: batch_size must be a positive int; got "
                             f"{batch_size!r}.")
        if states is None:
            return _cells.initial_state_of(self.cell, batch_size, dtype)
        dtype = jnp.result_type(*[jnp.asarray(s).dtype for s in jax.tree.leaves(states)])
        return self._check_states(states, batch_size, dtype, "reset_state(states=...)")

    # --- config ----------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """JSON-serializable configuration, the cell's config nested."""
        config = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        config["cell"] = _registry.serialize(self.cell)
        for name in ("parallel", "fused", "dtype", "param_dtype", "remat"):  # omit defaults
            if config[name] is None:
                del config[name]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict | None = None) -> RNN:
        """Rebuilds the layer from `get_config`'s output."""
        config = dict(config)
        config["cell"] = _registry.deserialize(config["cell"], custom_objects)
        return cls(**config)


def _shorthand(cell_cls: type, units: int, kwargs: dict) -> RNN:
    layer_args = {f.name for f in dataclasses.fields(RNN)} - {"cell"}
    cell_kw = {k: v for k, v in kwargs.items() if k in _CELL_ARGS[cell_cls]}
    layer_kw = {k: v for k, v in kwargs.items() if k in layer_args}
    unknown = sorted(set(kwargs) - set(cell_kw) - set(layer_kw))
    if unknown:
        raise TypeError(
            f"{cell_cls.__name__.removesuffix('Cell')}: unexpected arguments {unknown}. Cell "
            f"arguments: {sorted(_CELL_ARGS[cell_cls] - {'units'})}; layer arguments: "
            f"{sorted(layer_args)}."
        )
    return RNN(cell_cls(units, **cell_kw), **layer_kw)


def SimpleRNN(units: int, **kwargs) -> RNN:
    """``RNN(SimpleRNNCell(units, ...), ...)``, the arguments split between cell and layer.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> layer = jr.SimpleRNN(4, activation="relu", go_backwards=True)
      >>> params = layer.init(jax.random.key(0), (2, 5, 3))
      >>> layer(params, jnp.ones((2, 5, 3))).shape  # [B, H]
      (2, 4)
    """
    return _shorthand(_cells.SimpleRNNCell, units, kwargs)


def LSTM(units: int, **kwargs) -> RNN:
    """``RNN(LSTMCell(units, ...), ...)``, the arguments split between cell and layer.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> layer = jr.LSTM(16, return_sequences=True, dropout=0.1)
      >>> params = layer.init(jax.random.key(0), (None, None, 3))
      >>> layer(params, jnp.ones((2, 7, 3))).shape  # [B, T, H]
      (2, 7, 16)
    """
    return _shorthand(_cells.LSTMCell, units, kwargs)


def GRU(units: int, **kwargs) -> RNN:
    """``RNN(GRUCell(units, ...), ...)``, the arguments split between cell and layer.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> layer = jr.GRU(4, reset_after=False, return_state=True)
      >>> params = layer.init(jax.random.key(0), (2, 5, 3))
      >>> y, h = layer(params, jnp.ones((2, 5, 3)))
      >>> y.shape, h.shape  # [B, H], [B, H]
      ((2, 4), (2, 4))
    """
    return _shorthand(_cells.GRUCell, units, kwargs)


# ----------------------------------------------------------------------------- Bidirectional


@_registry.register
@dataclasses.dataclass(frozen=True)
class Bidirectional:
    """Runs an RNN layer forwards and a copy of it backwards, and merges the two.

    As Keras's ``Bidirectional``: the backward layer is `layer` with `go_backwards`
    flipped (or `backward_layer`); both get ``zero_output_for_mask = return_sequences``;
    the backward outputs are flipped back to input order before merging; an
    `initial_state` is split in half, forward states first.

    Args:
      layer: an `RNN`.
      merge_mode: ``"concat"``, ``"sum"``, ``"mul"``, ``"ave"`` or ``None`` (a tuple of both).
      backward_layer: an `RNN` for the backward direction, with the same
        return_sequences, return_state and stateful as `layer`.

    Returns (when called):
      the merged output ([B, T, 2H] for concat with return_sequences); with return_state,
      ``(merged, *forward_states, *backward_states)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> bi = jr.Bidirectional(jr.GRU(4, return_sequences=True))
      >>> params = bi.init(jax.random.key(0), (2, 5, 3))
      >>> bi(params, jnp.ones((2, 5, 3))).shape  # [B, T, 2H]
      (2, 5, 8)
    """

    layer: RNN
    merge_mode: str | None = "concat"
    backward_layer: RNN | None = None

    def __post_init__(self):
        for name in ("layer", "backward_layer"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, RNN):
                raise TypeError(
                    f"Bidirectional: {name} must be a jaxrnn.RNN (e.g. jaxrnn.LSTM(32)); got "
                    f"{type(value).__name__}."
                )
        if self.merge_mode not in MERGE_MODES:
            raise ValueError(
                f"Bidirectional: unknown merge_mode {self.merge_mode!r}; expected one of "
                f"{list(MERGE_MODES)}."
            )
        fwd, bwd = self.forward, self.backward
        if fwd.go_backwards == bwd.go_backwards:
            raise ValueError(
                "Bidirectional: the forward and backward layers must have different "
                f"go_backwards; both have go_backwards={fwd.go_backwards}."
            )
        for a in ("stateful", "return_sequences", "return_state", "time_major"):
            if getattr(fwd, a) != getattr(bwd, a):
                raise ValueError(
                    f"Bidirectional: layer and backward_layer must agree on {a}; got "
                    f"{getattr(fwd, a)} and {getattr(bwd, a)}."
                )

    @property
    def forward(self) -> RNN:
        """The forward layer, with ``zero_output_for_mask = return_sequences``."""
        return dataclasses.replace(self.layer, zero_output_for_mask=self.layer.return_sequences)

    @property
    def backward(self) -> RNN:
        """The backward layer, with ``zero_output_for_mask = return_sequences``."""
        base = self.backward_layer or dataclasses.replace(
            self.layer, go_backwards=not self.layer.go_backwards)
        return dataclasses.replace(base, zero_output_for_mask=base.return_sequences)

    @property
    def return_sequences(self) -> bool:
        return self.layer.return_sequences

    @property
    def stateful(self) -> bool:
        return self.layer.stateful

    @property
    def output_size(self) -> int:
        f, b = self.forward.output_size, self.backward.output_size
        return f + b if self.merge_mode == "concat" else f

    def init(self, key: Array, input_shape: Sequence[int | None], dtype=None) -> dict:
        """Creates ``{"forward": params, "backward": params}``."""
        kf, kb = jax.random.split(key)
        return {"forward": self.forward.init(kf, input_shape, dtype),
                "backward": self.backward.init(kb, input_shape, dtype)}

    def reset_state(self, batch_size: int, states: Sequence[Array] | None = None,
                    dtype=jnp.float32) -> tuple:
        """``(forward_state, backward_state)`` for a stateful layer; `states` split in half."""
        fs = bs = None
        if states is not None:
            fs, bs = self._halves(states, "reset_state(states=...)")
        return (self.forward.reset_state(batch_size, fs, dtype),
                self.backward.reset_state(batch_size, bs, dtype))

    @staticmethod
    def _halves(states: Sequence[Array], arg: str) -> tuple[list, list]:
        if not isinstance(states, (list, tuple)) or len(states) % 2:
            n = len(states) if isinstance(states, (list, tuple)) else type(states).__name__
            raise ValueError(
                f"Bidirectional: {arg} must be a list of the forward states followed by the "
                f"backward states (an even count); got {n}."
            )
        half = len(states) // 2
        return list(states[:half]), list(states[half:])

    def __call__(self, params: dict, sequences: Array, initial_state: Sequence[Array] | None = None,
                 mask: Array | None = None, training: bool = False, rng: Array | None = None,
                 state: tuple | None = None) -> Any:
        """Runs both directions and merges them (see the class docstring)."""
        if not isinstance(params, dict) or set(params) != {"forward", "backward"}:
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(
                "Bidirectional: params must be {'forward': ..., 'backward': ...}; got "
                f"{got}. Create them with layer.init(key, input_shape)."
            )
        fs = bs = None
        if initial_state is not None:
            fs, bs = self._halves(initial_state, "initial_state")
        f_state = b_state = None
        if self.stateful:
            if state is None and initial_state is None:
                raise ValueError(
                    "Bidirectional: a stateful layer needs state=: start with "
                    "state = layer.reset_state(batch_size)."
                )
            if state is not None:
                if not isinstance(state, tuple) or len(state) != 2:
                    raise ValueError(
                        "Bidirectional: state must be (forward_state, backward_state) as "
                        f"returned by reset_state; got {type(state).__name__}."
                    )
                f_state, b_state = state
        elif state is not None:
            raise ValueError("Bidirectional: state= is for stateful layers; pass initial_state.")
        kf, kb = _split_key(rng, 2)
        y = self.forward(params["forward"], sequences, fs, mask, training, kf, f_state)
        y_rev = self.backward(params["backward"], sequences, bs, mask, training, kb, b_state)
        if self.stateful:
            (y, f_state), (y_rev, b_state) = y, y_rev
        states = ()
        if self.layer.return_state:
            states = tuple(y[1:]) + tuple(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = _flip_time(y_rev, self.layer.time_major)
        merged: Any  # an array, or the pair (y, y_rev) for merge_mode=None
        if self.merge_mode == "concat":
            merged = jnp.concatenate([y, y_rev], axis=-1)
        elif self.merge_mode == "sum":
            merged = y + y_rev
        elif self.merge_mode == "ave":
            merged = (y + y_rev) / 2
        elif self.merge_mode == "mul":
            merged = y * y_rev
        else:
            merged = (y, y_rev)
        result: Any
        if self.layer.return_state:
            result = (*merged, *states) if self.merge_mode is None else (merged, *states)
        else:
            result = merged
        return (result, (f_state, b_state)) if self.stateful else result

    def get_config(self) -> dict[str, Any]:
        return {
            "layer": _registry.serialize(self.layer),
            "merge_mode": self.merge_mode,
            "backward_layer": None if self.backward_layer is None
            else _registry.serialize(self.backward_layer),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict | None = None):
        back = config.get("backward_layer")
        return cls(_registry.deserialize(config["layer"], custom_objects),
                   config.get("merge_mode", "concat"),
                   None if back is None else _registry.deserialize(back, custom_objects))


# ----------------------------------------------------------------------------- Sequential


@_registry.register
@dataclasses.dataclass(frozen=True, init=False)
class Sequential:
    """Layers applied one after another; the mask goes to every layer.

    Every layer but the last must return sequences (and not states). Deep
    bidirectional stacks are built with it.

    Args:
      layers: a list of `RNN` / `Bidirectional` layers (stateless).

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> model = jr.Sequential([jr.Bidirectional(jr.LSTM(4, return_sequences=True)),
      ...                        jr.GRU(3)])
      >>> params = model.init(jax.random.key(0), (2, 5, 6))
      >>> model(params, jnp.ones((2, 5, 6))).shape  # [B, H]
      (2, 3)
    """

    layers: tuple

    def __init__(self, layers: Sequence[Any]):
        if not isinstance(layers, (list, tuple)) or not layers:
            raise ValueError(
                "Sequential: layers must be a non-empty list of layers, e.g. "
                f"[jaxrnn.LSTM(32, return_sequences=True), jaxrnn.LSTM(32)]; got {layers!r}."
            )
        for i, layer in enumerate(layers):
            if not isinstance(layer, (RNN, Bidirectional)):
                raise TypeError(
                    f"Sequential: layers[{i}] must be a jaxrnn.RNN or jaxrnn.Bidirectional; got "
                    f"{type(layer).__name__}."
                )
            if layer.stateful:
                raise ValueError(
                    f"Sequential: layers[{i}] is stateful; Sequential does not thread state. "
                    "Call stateful layers one by one."
                )
            last = i == len(layers) - 1
            inner = layer.layer if isinstance(layer, Bidirectional) else layer
            if not last and (not inner.return_sequences or inner.return_state
                             or getattr(layer, "merge_mode", "concat") is None):
                raise ValueError(
                    f"Sequential: layers[{i}] feeds the next layer, so it must have "
                    "return_sequences=True, return_state=False (and a merge_mode other than "
                    "None)."
                )
        object.__setattr__(self, "layers", tuple(layers))

    def init(self, key: Array, input_shape: Sequence[int | None], dtype=None) -> list:
        """Creates a list with one params entry per layer."""
        shape = tuple(input_shape)
        params = []
        for layer, k in zip(self.layers, jax.random.split(key, len(self.layers))):
            params.append(layer.init(k, shape, dtype))
            shape = (*shape[:2], layer.output_size)
        return params

    def __call__(self, params: list, x: Array, mask: Array | None = None,
                 training: bool = False, rng: Array | None = None) -> Any:
        """Applies the layers in turn to `x` [B, T, F]."""
        if not isinstance(params, (list, tuple)) or len(params) != len(self.layers):
            got = len(params) if isinstance(params, (list, tuple)) else type(params).__name__
            raise ValueError(
                f"Sequential: params must be a list with one entry per layer "
                f"({len(self.layers)}); got {got}. Create them with model.init(key, shape)."
            )
        for i, (layer, p, k) in enumerate(zip(self.layers, params,
                                              _split_key(rng, len(self.layers)))):
            try:
                x = layer(p, x, mask=mask, training=training, rng=k)
            except (ValueError, TypeError) as e:
                raise type(e)(f"Sequential: layers[{i}]: {e}") from None
        return x

    def get_config(self) -> dict[str, Any]:
        return {"layers": [_registry.serialize(layer) for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict | None = None):
        return cls([_registry.deserialize(c, custom_objects) for c in config["layers"]])
