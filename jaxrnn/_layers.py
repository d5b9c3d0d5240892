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

from jaxrnn import _cells, _engines, _parallel, _registry
from jaxrnn._cells import check_bool
from jaxrnn._loop import LoopOptions, static_size

Array = jax.Array

_FLAGS = ("return_sequences", "return_state", "go_backwards", "stateful",
          "zero_output_for_mask", "time_major", "learn_initial_state")
# What ``remat_threshold=None`` means: bytes of saved activations per layer above which
# ``remat=None`` checkpoints. One figure for every backend for now (no accelerator has been
# measured); a layer that needs another sets its own.
_REMAT_THRESHOLD = 1 << 30
MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _shape_of(x: Any) -> tuple:
    return tuple(getattr(x, "shape", jnp.shape(x)))


def _same_shape(got: tuple, want: tuple) -> bool:
    """Shape equality that only judges static sizes: a symbolic size (`jax.export`, or an
    exporter's own placeholder) matches anything, since Python cannot compare it."""
    if len(got) != len(want):
        return False
    return all(static_size(g) is None or static_size(w) is None or static_size(g) ==
               static_size(w) for g, w in zip(got, want))


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
      remat: memory for training on long sequences, on every engine: ``None``
        checkpoints segments of the sequence automatically (the fused and generic engines
        when a layer's saved activations would pass `remat_threshold`; the parallel cells
        in chunks of 512 steps with the sequential solver); ``True`` always, in segments
        of about sqrt(T) steps; an int k, in segments of k steps; ``False`` never. The
        backward pass recomputes one segment at a time. Results never depend on it.
      remat_threshold: bytes of saved activations per layer above which ``remat=None``
        checkpoints; ``None``: 1 GiB.
      solver: how the parallel cells solve their linear recurrence:
        ``"associative"`` (`jax.lax.associative_scan`, O(log T) depth),
        ``"sequential"`` (a `jax.lax.scan` over precomputed coefficients) or ``None``:
        sequential on CPU, where it is faster, associative elsewhere.
      learn_initial_state: learn the state every sequence (and every segment after a
        reset) starts from: `init` returns ``{"cell": <cell params>, "initial_state":
        <states of batch size 1>}`` (zeros to start), broadcast over the batch when no
        `initial_state` is passed.

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
    remat_threshold: int | None = None
    solver: str | None = None
    learn_initial_state: bool = False

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
            check_bool(getattr(self, name), name, "RNN")
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
                check_bool(getattr(self, name), name, "RNN")
        _engines.choose(cell, self.parallel, self.fused)  # rejects impossible demands now
        t = self.remat_threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 0):
            raise ValueError(
                f"RNN: remat_threshold must be None or a number of bytes >= 0; got {t!r}."
            )
        if self.solver is not None and self.solver not in _parallel.SOLVERS:
            raise ValueError(
                f"RNN: solver must be one of {list(_parallel.SOLVERS)} or None (the "
                f"backend's default); got {self.solver!r}."
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
        """H, the output's features: its last axis (a channels_first ConvLSTM's channels)."""
        return _cells.output_size_of(self.cell)

    @property
    def _stacked(self) -> bool:
        return isinstance(self.cell, _cells.StackedRNNCells)

    def init(self, key: Array, input_shape: Sequence[int | None], dtype=None) -> Any:
        """Creates the params for inputs of `input_shape`.

        Args:
          key: a `jax.random` key.
          input_shape: (B, T, F) ((T, B, F) when time_major); B and T may be None. For a
            cell with spatial inputs (ConvLSTM), (B, T, *spatial, C) or (B, T, C, *spatial).
          dtype: the params' dtype; default the layer's `param_dtype`, else float32.

        Returns:
          The cell's params; with ``learn_initial_state``, ``{"cell": <the cell's params>,
          "initial_state": <the cell's zero states for a batch of 1>}``.
        """
        if dtype is None:
            dtype = self.param_dtype or jnp.float32
        shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
        rank = _cells.input_rank(self.cell)
        if rank > 1:
            if shape is None or len(shape) != 2 + rank:
                raise ValueError(
                    f"RNN.init: input_shape must be (batch, time, {self._step_layout}) for "
                    f"{type(self.cell).__name__}; got {input_shape!r}."
                )
            features = self._input_dim(shape[2:], "RNN.init: input_shape: ")
        elif shape is None or len(shape) != 3 or not isinstance(shape[-1], int):
            raise ValueError(
                f"RNN.init: input_shape must be (batch, time, features) with an int number of "
                f"features (batch and time may be None); got {input_shape!r}."
            )
        else:
            features = shape[-1]
        params = self.cell.init(key, features, dtype)
        if self.learn_initial_state:
            try:
                start = _cells.initial_state_of(self.cell, 1, dtype, shape[2:])
            except ValueError as e:
                raise ValueError(f"RNN.init: learn_initial_state=True: {e}") from None
            return {"cell": params, "initial_state": start}
        return params

    @property
    def _step_layout(self) -> str:
        """One step's axes, for messages: ``"F"``, or e.g. ``"H, W, C"`` for a ConvLSTM2D."""
        return getattr(self.cell, "step_layout", "F")

    def _input_dim(self, step_shape: tuple, prefix: str = "RNN: ") -> Any:
        """The input width F (a ConvLSTM's channels) of steps of `step_shape`, checked."""
        try:
            return _cells.input_dim_of(self.cell, tuple(step_shape))
        except ValueError as e:
            raise ValueError(f"{prefix}{e}") from None

    def _output_step_shape(self, step_shape: tuple) -> tuple:
        """One step's output shape (batch excluded) for inputs with steps of `step_shape`."""
        if _cells.input_rank(self.cell) == 1:
            return (self.output_size,)
        return tuple(self.cell.output_shape(step_shape))

    def _split_params(self, params: Any, step_shape: tuple | None = None) -> tuple[Any, Any]:
        """``(cell params, learned initial states or None)``, the latter checked (for a
        cell with spatial inputs, fully only when `step_shape`, a step's shape, is known)."""
        learned_keys = {"cell", "initial_state"}
        is_learned = isinstance(params, dict) and set(params) == learned_keys
        if not self.learn_initial_state:
            if is_learned:
                raise ValueError(
                    "RNN: params hold a learned initial state ({'cell', 'initial_state'}) but "
                    "the layer has learn_initial_state=False. Build the layer with "
                    "learn_initial_state=True, or pass params['cell']."
                )
            return params, None
        if not is_learned:
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(
                "RNN: learn_initial_state=True needs params {'cell': ..., 'initial_state': "
                f"...}}; got {got}. Re-create them with layer.init(key, input_shape), or wrap "
                "existing cell params: {'cell': params, 'initial_state': "
                "cell.get_initial_state(1)}."
            )
        given = params["initial_state"]
        leaves = jax.tree.leaves(given)
        if _cells.input_rank(self.cell) > 1 and step_shape is None:
            # The states' spatial size follows the inputs': without them, check the count.
            n = len(jax.tree.leaves(self.cell.state_size))
            if len(leaves) != n or any(_shape_of(g)[:1] != (1,) for g in leaves):
                raise ValueError(
                    f"RNN: params['initial_state'] must hold {n} arrays of batch size 1 (the "
                    f"cell's states for a batch of 1); got {[_shape_of(g) for g in leaves]}. "
                    "Re-create the params with layer.init(key, input_shape)."
                )
            return params["cell"], given
        like = _cells.initial_state_of(self.cell, 1, step_shape=step_shape)
        expected = [e.shape for e in jax.tree.leaves(like)]
        if len(leaves) != len(expected) or any(_shape_of(g) != e
                                                for g, e in zip(leaves, expected)):
            raise ValueError(
                f"RNN: params['initial_state'] must hold {len(expected)} arrays with shapes "
                f"{expected} (the cell's states for a batch of 1); got "
                f"{[_shape_of(g) for g in leaves]}. Re-create the params with "
                "layer.init(key, input_shape)."
            )
        return params["cell"], jax.tree.unflatten(jax.tree.structure(like), leaves)

    def check_params(self, params: Any, input_dim: int | None = None) -> int | None:
        """Raises the error a call would raise for `params` that do not fit this layer
        (for `input_dim` features when given); returns their input_dim F (None when the
        cell cannot tell it)."""
        cell_params, _ = self._split_params(params)
        return self._check_cell_params(cell_params, input_dim)

    def _check_cell_params(self, params: Any, f: int | None) -> int | None:
        check = getattr(self.cell, "check_params", None)
        if check is None:
            return None
        try:
            want = check(params, None)
        except (ValueError, TypeError) as e:
            if type(e) not in (ValueError, TypeError):  # never rebuild a foreign type
                raise
            raise type(e)(f"RNN: {e}") from None
        if want is not None and f is not None and want != f and \
                _cells.input_rank(self.cell) > 1:
            raise ValueError(
                f"RNN: sequences must have {want} channels (the params' input_dim), as "
                f"[B, T, {self._step_layout}]; got {f}. Re-create the params with "
                f"layer.init(key, input_shape), or feed {want} channels."
            )
        if want is not None and f is not None and want != f:
            raise ValueError(
                f"RNN: sequences must be [B, T, F] with F={want} (the params' input_dim); got "
                f"{f} features. Re-create the params with layer.init(key, (B, T, {f})), or "
                f"feed {want} features."
            )
        return want

    def _check_sequences(self, sequences: Any) -> Array:
        try:
            x = jnp.asarray(sequences)
        except TypeError:
            raise TypeError(
                f"RNN: sequences must be an array [B, T, F]; got {type(sequences).__name__}."
            ) from None
        rank = _cells.input_rank(self.cell)
        layout = f"[T, B, {self._step_layout}]" if self.time_major else \
            f"[B, T, {self._step_layout}]"
        integer = jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == jnp.bool_
        if rank > 1 and x.ndim != 2 + rank:
            raise ValueError(
                f"RNN: sequences must be a {2 + rank}-D array {layout} for "
                f"{type(self.cell).__name__}(rank={rank - 1}); got shape {x.shape} (rank "
                f"{x.ndim}). For one sequence, add a batch axis: x[None]."
            )
        if x.ndim != 2 + rank:
            hint = ""
            if x.ndim == 2 and integer:
                hint = (" Integer [B, T] inputs look like token ids: map them to vectors first "
                        "(an embedding, e.g. embedding_table[ids] -> [B, T, E]), or, if they "
                        "are one scalar feature per step, use x[..., None].astype(jnp.float32) "
                        "-> [B, T, 1].")
            elif x.ndim == 2:
                hint = (" For one sequence, add a batch axis: x[None]; for one feature per "
                        "step, add a feature axis: x[..., None].")
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
            hint = (" Integer ids need an embedding first (embedding_table[ids])." if integer
                    else "")
            raise TypeError(
                f"RNN: sequences must be floating point; got dtype {x.dtype}. Cast them, e.g. "
                f"x.astype(jnp.float32).{hint}"
            )
        return x

    @staticmethod
    def _check_mask(mask: Any, batch: int, time: int) -> Array | None:
        if mask is None:
            return None
        m = jnp.asarray(mask)
        if not _same_shape(m.shape, (batch, time)):
            raise ValueError(
                f"RNN: mask must be [B, T] = ({batch}, {time}) booleans, True where a step is "
                f"real; got shape {m.shape}. Build it as e.g. "
                "jnp.arange(T)[None, :] < lengths[:, None]."
            )
        return m if m.dtype == jnp.bool_ else m != 0

    @staticmethod
    def _check_reset(reset: Any, batch: int, time: int) -> Array | None:
        if reset is None:
            return None
        try:
            r = jnp.asarray(reset)
        except TypeError:
            raise TypeError(
                f"RNN: reset must be a [B, T] bool array; got {type(reset).__name__}."
            ) from None
        if r.dtype != jnp.bool_:
            raise TypeError(
                f"RNN: reset must be a [B, T] bool array, True where a step starts a new "
                f"segment; got dtype {r.dtype}. Convert it, e.g. reset = starts != 0 (or "
                "starts.astype(bool))."
            )
        if not _same_shape(r.shape, (batch, time)):
            raise ValueError(
                f"RNN: reset must be [B, T] = ({batch}, {time}) booleans (also when "
                f"time_major), True where a step starts a new segment; got shape {r.shape}."
            )
        return r

    def _check_states(self, given: Any, batch: int, dtype, arg: str,
                      step_shape: tuple | None = None) -> Any:
        like = _cells.initial_state_of(self.cell, batch, dtype, step_shape)
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
                if len(shape) == len(e.shape) and shape[1:] == e.shape[1:] and \
                        shape[0] != batch:
                    why = (f" Its batch size is {shape[0]} but the sequences' is {batch}; "
                           f"call layer.reset_state({batch}) for a new batch size.")
                axes = "(batch, units)" if len(e.shape) == 2 else \
                    "(the cell's state for these inputs)"
                raise ValueError(
                    f"RNN: {arg} array {i} must have shape {e.shape} {axes}; got "
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
        reset: Array | None = None,
    ) -> Any:
        """Runs the layer.

        Args:
          params: from `init` (the cell's params; with ``learn_initial_state``,
            ``{"cell": ..., "initial_state": ...}``).
          sequences: [B, T, F] float array ([T, B, F] when time_major); for a cell with
            spatial inputs (ConvLSTM), [B, T, *spatial, C] or [B, T, C, *spatial].
          initial_state: a list with one [B, H] array per state of the cell (a stack:
            one entry per cell); zeros (or the learned state) when None.
          mask: [B, T] booleans, True where a step is real. What masked steps hold never
            reaches the outputs or the gradients (NaN padding included).
          training: apply the cell's dropout.
          rng: a `jax.random` key; needed when training with dropout.
          state: for a stateful layer, the state from `reset_state` or the previous call.
          reset: [B, T] booleans (also when time_major), True where step t starts a new
            segment of sample b, in input order: before step t runs, sample b's states are
            replaced by the initial state (`initial_state`, the learned one, or zeros).
            With `go_backwards` the segments are the same, each run from its last step
            back to its first. A reset changes only the states; masks keep their meaning.
            At t=0 it is a no-op, except in a stateful layer, where it starts the chunk
            from the initial state instead of the carried one.

        Returns:
          ``output`` ([B, T, H] with return_sequences, else [B, H]); with return_state the
          tuple ``(output, *final_states)``; for a stateful layer, ``(result, new_state)``.

        Raises:
          ValueError, TypeError: a shape, count or argument does not fit; the message
            says what was expected and how to fix it.
        """
        x = self._check_sequences(sequences)
        if self.time_major:
            time, batch = x.shape[:2]
        else:
            batch, time = x.shape[:2]
        step_shape = tuple(x.shape[2:])  # (F,), or a ConvLSTM's (*spatial, C)
        features = self._input_dim(step_shape)
        params, learned = self._split_params(params, step_shape)
        self._check_cell_params(params, features)
        mask = self._check_mask(mask, batch, time)
        reset = self._check_reset(reset, batch, time)
        if self.dtype is not None:
            dtype = jnp.dtype(self.dtype)
            x = x.astype(dtype)
            params, learned = jax.tree.map(
                lambda p: p.astype(dtype) if jnp.issubdtype(jnp.result_type(p), jnp.floating)
                else p, (params, learned))
        else:
            dtype = jnp.result_type(x.dtype, *[p.dtype for p in jax.tree.leaves(params)
                                               if hasattr(p, "dtype")])
        if learned is None:
            start = _cells.initial_state_of(self.cell, batch, dtype, step_shape)
        else:
            start = jax.tree.map(lambda s: jnp.broadcast_to(s.astype(dtype), (batch,) +
                                                            s.shape[1:]), learned)
        if initial_state is not None:
            start = self._check_states(initial_state, batch, dtype, "initial_state",
                                       step_shape)
        if self.stateful:
            if state is None and initial_state is None:
                shape_arg = "" if _cells.input_rank(self.cell) == 1 else \
                    f", step_shape={step_shape}"
                raise ValueError(
                    "RNN: a stateful layer needs state=: start with "
                    f"state = layer.reset_state({batch}{shape_arg}), then pass the state each "
                    "call returns to the next call."
                )
            states = start if initial_state is not None else \
                self._check_states(state, batch, dtype, "state", step_shape)
        else:
            if state is not None:
                raise ValueError(
                    "RNN: state= is for stateful=True layers; this layer is not stateful. "
                    "Pass initial_state= instead, or build the layer with stateful=True."
                )
            states = start
        dropout = _cells.make_dropout(self.cell, rng, training, batch, features, dtype,
                                      step_shape)

        xs = x if self.time_major else jnp.swapaxes(x, 0, 1)
        mask_t = None if mask is None else mask.T
        if mask_t is not None:
            # Masked steps compute on zeros, so that whatever they held (NaN padding) reaches
            # neither the outputs nor, through a product with a zero cotangent, the gradients.
            keep = jnp.expand_dims(mask_t, tuple(range(2, xs.ndim)))  # [T, B, 1, ...]
            xs = jnp.where(keep, xs, jnp.zeros((), xs.dtype))
        outputs, final = _engines.run(
            _engines.choose(self.cell, self.parallel, self.fused), self.cell, params, states,
            xs, mask_t, None if reset is None else reset.T, start if reset is not None else None,
            dropout, self._loop_options())
        if self.return_sequences and not self.time_major:
            outputs = jnp.swapaxes(outputs, 0, 1)
        result = (outputs, *final) if self.return_state else outputs
        return (result, final) if self.stateful else result

    def _loop_options(self) -> LoopOptions:
        threshold = self.remat_threshold
        return LoopOptions(
            go_backwards=self.go_backwards,
            unroll=self.unroll if self.unroll is not False else 1,
            zero_output_for_mask=self.zero_output_for_mask,
            return_sequences=self.return_sequences,
            remat=self.remat,
            remat_threshold=_REMAT_THRESHOLD if threshold is None else threshold,
            solver=self.solver or _parallel.default_solver(),
        )

    def reset_state(self, batch_size: int, states: Sequence[Array] | None = None,
                    dtype=jnp.float32, params: Any = None, *,
                    step_shape: Sequence[int] | None = None) -> Any:
        """The state to start a stateful layer with: zeros, the learned initial state, or
        the checked `states`.

        Args:
          batch_size: B.
          states: optional list with one [B, H] array per state (a stack: per cell).
          dtype: dtype of the zeros.
          params: with ``learn_initial_state``, the layer's params: start from the learned
            state, broadcast over the batch (default: zeros).
          step_shape: for a cell with spatial inputs (ConvLSTM), whose states' shape
            follows the inputs': the shape of one step of the sequences, batch and time
            excluded (``x.shape[2:]``). Other cells ignore it.

        Returns:
          The states' tuple (an `LSTMState` for an LSTM), to pass as ``state=``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"RNN.reset_state: batch_size must be a positive int; got "
                             f"{batch_size!r}.")
        step = None if step_shape is None else tuple(step_shape)
        if step is not None and _cells.input_rank(self.cell) > 1:
            self._input_dim(step, "RNN.reset_state: step_shape: ")
        if states is None and params is not None:
            _, learned = self._split_params(params, step)
            if learned is None:
                raise ValueError(
                    "RNN.reset_state: params= starts from the learned initial state, but the "
                    "layer has learn_initial_state=False. Drop params=."
                )
            return jax.tree.map(lambda s: jnp.broadcast_to(s, (batch_size,) + s.shape[1:]),
                                learned)
        if states is None:
            try:
                return _cells.initial_state_of(self.cell, batch_size, dtype, step)
            except ValueError as e:
                raise ValueError(f"RNN.reset_state: {e}") from None
        dtype = jnp.result_type(*[jnp.asarray(s).dtype for s in jax.tree.leaves(states)])
        if _cells.input_rank(self.cell) > 1 and step is None:
            raise ValueError(
                f"RNN.reset_state: checking states= for {type(self.cell).__name__} needs "
                "step_shape=, the shape of one step of the sequences (x.shape[2:])."
            )
        return self._check_states(states, batch_size, dtype, "reset_state(states=...)", step)

    # --- config ----------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """JSON-serializable configuration, the cell's config nested."""
        config = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        config["cell"] = _registry.serialize(self.cell)
        for name in ("parallel", "fused", "dtype", "param_dtype", "remat", "remat_threshold",
                     "solver"):  # omit defaults
            if config[name] is None:
                del config[name]
        if not config["learn_initial_state"]:
            del config["learn_initial_state"]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict | None = None) -> RNN:
        """Rebuilds the layer from `get_config`'s output."""
        config = dict(config)
        config["cell"] = _registry.deserialize(config["cell"], custom_objects)
        return cls(**config)


_LAYER_ARGS = tuple(f.name for f in dataclasses.fields(RNN) if f.name != "cell")

def _layer(cell: Any, args: dict[str, Any]) -> RNN:
    """``RNN(cell, **layer arguments)`` from a shorthand's local variables."""
    return RNN(cell, **{name: args[name] for name in _LAYER_ARGS})


def SimpleRNN(
    units: int, *, activation: _cells.Activation = "tanh", use_bias: bool = True,
    kernel_initializer: _cells.Initializer = "glorot_uniform",
    recurrent_initializer: _cells.Initializer = "orthogonal",
    bias_initializer: _cells.Initializer = "zeros", dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
    stateful: bool = False, unroll: bool | int = False, zero_output_for_mask: bool = False,
    time_major: bool = False, parallel: bool | None = None, fused: bool | None = None,
    dtype: str | None = None, param_dtype: str | None = None,
    remat: bool | int | None = None, remat_threshold: int | None = None,
    solver: str | None = None, learn_initial_state: bool = False,
) -> RNN:
    """``RNN(SimpleRNNCell(units, ...), ...)``, as Keras's ``SimpleRNN``.

    Cell arguments: activation, use_bias, kernel_initializer, recurrent_initializer,
    bias_initializer, dropout, recurrent_dropout (see `SimpleRNNCell`).
    Layer arguments (keyword-only, as for `RNN`): return_sequences, return_state,
    go_backwards, stateful, unroll, zero_output_for_mask, time_major, parallel, fused, dtype,
    param_dtype, remat, remat_threshold, solver, learn_initial_state.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> layer = jr.SimpleRNN(4, activation="relu", go_backwards=True)
      >>> params = layer.init(jax.random.key(0), (2, 5, 3))
      >>> layer(params, jnp.ones((2, 5, 3))).shape  # [B, H]
      (2, 4)
    """
    return _layer(_cells.SimpleRNNCell(
        units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
        recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
        dropout=dropout, recurrent_dropout=recurrent_dropout), locals())


def LSTM(
    units: int, *, activation: _cells.Activation = "tanh",
    recurrent_activation: _cells.Activation = "sigmoid", use_bias: bool = True,
    kernel_initializer: _cells.Initializer = "glorot_uniform",
    recurrent_initializer: _cells.Initializer = "orthogonal",
    bias_initializer: _cells.Initializer = "zeros", unit_forget_bias: bool = True,
    dropout: float = 0.0, recurrent_dropout: float = 0.0, proj_size: int = 0,
    projection_initializer: _cells.Initializer = "glorot_uniform",
    return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
    stateful: bool = False, unroll: bool | int = False, zero_output_for_mask: bool = False,
    time_major: bool = False, parallel: bool | None = None, fused: bool | None = None,
    dtype: str | None = None, param_dtype: str | None = None,
    remat: bool | int | None = None, remat_threshold: int | None = None,
    solver: str | None = None, learn_initial_state: bool = False,
) -> RNN:
    """``RNN(LSTMCell(units, ...), ...)``, as Keras's ``LSTM``.

    Cell arguments: activation, recurrent_activation, use_bias, kernel_initializer,
    recurrent_initializer, bias_initializer, unit_forget_bias, dropout, recurrent_dropout,
    proj_size, projection_initializer (see `LSTMCell`; ``proj_size=P > 0`` is PyTorch's
    projected LSTM, with outputs and h of size P).
    Layer arguments (keyword-only, as for `RNN`): return_sequences, return_state,
    go_backwards, stateful, unroll, zero_output_for_mask, time_major, parallel, fused, dtype,
    param_dtype, remat, remat_threshold, solver, learn_initial_state.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> layer = jr.LSTM(16, return_sequences=True, dropout=0.1)
      >>> params = layer.init(jax.random.key(0), (None, None, 3))
      >>> layer(params, jnp.ones((2, 7, 3))).shape  # [B, T, H]
      (2, 7, 16)
      >>> projected = jr.LSTM(16, proj_size=4, return_state=True)
      >>> params = projected.init(jax.random.key(0), (None, None, 3))
      >>> y, h, c = projected(params, jnp.ones((2, 7, 3)))
      >>> y.shape, h.shape, c.shape  # [B, P], [B, P], [B, H]
      ((2, 4), (2, 4), (2, 16))
    """
    return _layer(_cells.LSTMCell(
        units, activation=activation, recurrent_activation=recurrent_activation,
        use_bias=use_bias, kernel_initializer=kernel_initializer,
        recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
        unit_forget_bias=unit_forget_bias, dropout=dropout,
        recurrent_dropout=recurrent_dropout, proj_size=proj_size,
        projection_initializer=projection_initializer), locals())


def GRU(
    units: int, *, activation: _cells.Activation = "tanh",
    recurrent_activation: _cells.Activation = "sigmoid", use_bias: bool = True,
    kernel_initializer: _cells.Initializer = "glorot_uniform",
    recurrent_initializer: _cells.Initializer = "orthogonal",
    bias_initializer: _cells.Initializer = "zeros", dropout: float = 0.0,
    recurrent_dropout: float = 0.0, reset_after: bool = True,
    return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
    stateful: bool = False, unroll: bool | int = False, zero_output_for_mask: bool = False,
    time_major: bool = False, parallel: bool | None = None, fused: bool | None = None,
    dtype: str | None = None, param_dtype: str | None = None,
    remat: bool | int | None = None, remat_threshold: int | None = None,
    solver: str | None = None, learn_initial_state: bool = False,
) -> RNN:
    """``RNN(GRUCell(units, ...), ...)``, as Keras's ``GRU``.

    Cell arguments: activation, recurrent_activation, use_bias, kernel_initializer,
    recurrent_initializer, bias_initializer, dropout, recurrent_dropout, reset_after (see
    `GRUCell`).
    Layer arguments (keyword-only, as for `RNN`): return_sequences, return_state,
    go_backwards, stateful, unroll, zero_output_for_mask, time_major, parallel, fused, dtype,
    param_dtype, remat, remat_threshold, solver, learn_initial_state.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> layer = jr.GRU(4, reset_after=False, return_state=True)
      >>> params = layer.init(jax.random.key(0), (2, 5, 3))
      >>> y, h = layer(params, jnp.ones((2, 5, 3)))
      >>> y.shape, h.shape  # [B, H], [B, H]
      ((2, 4), (2, 4))
    """
    return _layer(_cells.GRUCell(
        units, activation=activation, recurrent_activation=recurrent_activation,
        use_bias=use_bias, kernel_initializer=kernel_initializer,
        recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
        dropout=dropout, recurrent_dropout=recurrent_dropout, reset_after=reset_after),
        locals())


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
        """The merged output's features (a ConvLSTM's channels), which the next layer of a
        `Sequential` reads: ``"concat"`` adds both directions' only where the last axis,
        which it joins (as Keras's does), holds them; not a channels_first ConvLSTM's."""
        f, b = self.forward.output_size, self.backward.output_size
        joins_channels = not getattr(self.layer.cell, "_channels_first", False)
        return f + b if self.merge_mode == "concat" and joins_channels else f

    def _output_step_shape(self, step_shape: tuple) -> tuple:
        """One step's merged output shape (batch excluded); concat joins the last axis."""
        f = self.forward._output_step_shape(step_shape)
        if self.merge_mode != "concat":
            return f
        b = self.backward._output_step_shape(step_shape)
        return (*f[:-1], f[-1] + b[-1])

    def init(self, key: Array, input_shape: Sequence[int | None], dtype=None) -> dict:
        """Creates ``{"forward": params, "backward": params}``."""
        kf, kb = jax.random.split(key)
        return {"forward": self.forward.init(kf, input_shape, dtype),
                "backward": self.backward.init(kb, input_shape, dtype)}

    def reset_state(self, batch_size: int, states: Sequence[Array] | None = None,
                    dtype=jnp.float32, params: dict | None = None, *,
                    step_shape: Sequence[int] | None = None) -> tuple:
        """``(forward_state, backward_state)`` for a stateful layer; `states` split in half;
        with `params` (and ``learn_initial_state``), each direction's learned state;
        `step_shape` as for `RNN.reset_state`."""
        fs = bs = None
        if states is not None:
            fs, bs = self._halves(states, "reset_state(states=...)")
        if params is not None:
            self._check_keys(params)
        fp, bp = (None, None) if params is None else (params["forward"], params["backward"])
        return (self.forward.reset_state(batch_size, fs, dtype, params=fp,
                                         step_shape=step_shape),
                self.backward.reset_state(batch_size, bs, dtype, params=bp,
                                          step_shape=step_shape))

    @staticmethod
    def _check_keys(params: Any) -> None:
        if not isinstance(params, dict) or set(params) != {"forward", "backward"}:
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(
                "Bidirectional: params must be {'forward': ..., 'backward': ...}; got "
                f"{got}. Create them with layer.init(key, input_shape)."
            )

    def check_params(self, params: Any, input_dim: int | None = None) -> int | None:
        """Raises the error a call would raise for `params` that do not fit; returns F."""
        self._check_keys(params)
        f = self.forward.check_params(params["forward"], input_dim)
        b = self.backward.check_params(params["backward"], input_dim)
        return f if f is not None else b

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
                 state: tuple | None = None, reset: Array | None = None) -> Any:
        """Runs both directions and merges them (see the class docstring).

        `reset` ([B, T] booleans, True where a step starts a new segment) cuts both
        directions at the same steps: the backward layer runs each segment from its last
        step back to its first, from the initial state, so packed sequences never mix.
        """
        self._check_keys(params)
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
        y = self.forward(params["forward"], sequences, fs, mask, training, kf, f_state,
                         reset=reset)
        y_rev = self.backward(params["backward"], sequences, bs, mask, training, kb, b_state,
                              reset=reset)
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
            shape = (*shape[:2], *layer._output_step_shape(tuple(shape[2:])))
        return params

    def __call__(self, params: list, x: Array, mask: Array | None = None,
                 training: bool = False, rng: Array | None = None,
                 reset: Array | None = None) -> Any:
        """Applies the layers in turn to `x` [B, T, F]; `mask` and `reset` ([B, T]) go to
        every layer."""
        self._check_length(params)
        for i, (layer, p, k) in enumerate(zip(self.layers, params,
                                              _split_key(rng, len(self.layers)))):
            try:
                x = layer(p, x, mask=mask, training=training, rng=k, reset=reset)
            except (ValueError, TypeError) as e:
                if type(e) not in (ValueError, TypeError):  # never rebuild a foreign type
                    raise
                raise type(e)(f"Sequential: layers[{i}]: {e}") from None
        return x

    def _check_length(self, params: Any) -> None:
        if not isinstance(params, (list, tuple)) or len(params) != len(self.layers):
            got = len(params) if isinstance(params, (list, tuple)) else type(params).__name__
            raise ValueError(
                f"Sequential: params must be a list with one entry per layer "
                f"({len(self.layers)}); got {got}. Create them with model.init(key, shape)."
            )

    def check_params(self, params: Any, input_dim: int | None = None) -> int | None:
        """Raises the error a call would raise for `params` that do not fit (each layer's
        params, and each layer's width against the next one's); returns F."""
        self._check_length(params)
        first, f = None, input_dim
        for i, (layer, p) in enumerate(zip(self.layers, params)):
            try:
                got = layer.check_params(p, f)
            except (ValueError, TypeError) as e:
                if type(e) not in (ValueError, TypeError):
                    raise
                raise type(e)(f"Sequential: layers[{i}]: {e}") from None
            first = got if i == 0 else first
            f = layer.output_size
        return first

    def get_config(self) -> dict[str, Any]:
        return {"layers": [_registry.serialize(layer) for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict | None = None):
        return cls([_registry.deserialize(c, custom_objects) for c in config["layers"]])
