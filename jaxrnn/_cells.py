"""Recurrent cells: hyperparameters in the object, arrays in a params dict.

A cell computes one time step, ``cell(params, inputs, states) -> (output, new_states)``,
with Keras's weight names, shapes, gate order and default initializers, so that the
weights of a Keras cell drop into ``params`` by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _registry, _resolve

Array = jax.Array
Activation = str | Callable[[Array], Array]
Initializer = str | Callable[..., Array]


class LSTMState(NamedTuple):
    """The state of an `LSTMCell`, in Keras's order ``(h, c)``.

    Example:
      >>> import jaxrnn as jr
      >>> state = jr.LSTMCell(4).get_initial_state(2)
      >>> state.h.shape, state.c.shape  # [B, H] each
      ((2, 4), (2, 4))
      >>> h, c = state  # still a tuple, in Keras's order
    """

    h: Array  # [B, H] hidden state, also the cell's output ([B, P] with proj_size=P)
    c: Array  # [B, H] memory (carry) state


def register_for_export(nodetype: type, name: str) -> None:
    """Lets `jax.export` serialize functions whose inputs or outputs hold `nodetype` (a
    NamedTuple of states): a stateful layer's state, a learned initial state."""
    from jax import export

    register = getattr(export, "register_namedtuple_serialization", None)
    if register is not None:  # jax >= 0.4.36
        register(nodetype, serialized_name=name)


register_for_export(LSTMState, "jaxrnn.LSTMState")


# ----------------------------------------------------------------------------- helpers


def _check_units(units: Any, cls: str) -> None:
    if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
        raise ValueError(
            f"{cls}: units must be a positive int; got {units!r}. Pass e.g. units=64."
        )


def _check_rate(rate: Any, name: str, cls: str) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ValueError(
            f"{cls}: {name} must be a float in [0, 1); got {rate!r}. Use 0.0 to disable it."
        )


def check_bool(value: Any, name: str, who: str) -> None:
    """Raises a TypeError naming `who` and `name` unless `value` is True or False."""
    if not isinstance(value, bool):
        raise TypeError(f"{who}: {name} must be True or False; got {value!r}.")


def dense(a: Array, w: Array, bias: Array | None = None) -> Array:
    """``a @ w (+ bias)`` over the last axis of `a` [..., K], as one 2-D matmul.

    XLA CPU runs a dot with several leading axes several times slower than the same product
    reshaped to 2-D, in both directions of autodiff. The bias is a pass over the output of
    its own either way (jaxlib 0.10's YNNPACK dots do not fuse it), so a product that a
    loop reads step by step is better left without it (see `_fused._plus_bias`).
    """
    z = a.reshape(-1, a.shape[-1]) @ w
    if bias is not None:
        z = z + bias[None, :]
    return z.reshape(*a.shape[:-1], w.shape[-1])


def _dropout_mask(key: Array, rate: float, shape: tuple[int, ...], dtype) -> Array:
    """Keras's dropout of a tensor of ones: 0 or 1/(1-rate), one draw per element."""
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return keep.astype(dtype) / jnp.asarray(1.0 - rate, dtype)


def project(x: Array, w: Array, mask: Array | None, gates: int) -> Array:
    """``(x * mask) @ w`` for x [B, F] and a [B, F] mask, or gate by gate for a [k, B, F]
    mask (one dropout mask per gate): [B, k*H]."""
    if mask is None:
        return x @ w
    if mask.ndim == 2:
        return (x * mask) @ w
    f, kh = w.shape
    per_gate = jnp.einsum("kbf,fkh->bkh", x[None] * mask, w.reshape(f, gates, kh // gates))
    return per_gate.reshape(x.shape[0], kh)


def _initialize(spec: Initializer, key: Array, shape: tuple[int, ...], dtype) -> Array:
    """Runs an initializer; half precision is drawn in float32 (no bf16 QR on CPU) and cast."""
    init = _resolve.initializer(spec)
    if jnp.finfo(dtype).bits < 32:
        return init(key, shape, jnp.float32).astype(dtype)
    return init(key, shape, dtype)


def output_size_of(cell: Any) -> int:
    """A cell's output width: its ``output_size``, else its (first) state size."""
    size = getattr(cell, "output_size", None)
    if size is None:
        size = cell.state_size if isinstance(cell.state_size, int) else cell.state_size[0]
    return size


def input_rank(cell: Any) -> int:
    """The axes of one step's inputs, batch excluded: 1 ([F]) unless the cell declares
    ``input_rank`` (a ConvLSTM's steps are feature maps, [*spatial, C])."""
    return getattr(cell, "input_rank", 1)


def input_dim_of(cell: Any, step_shape: tuple) -> Any:
    """The input width F (a ConvLSTM's channels) of steps of `step_shape` (batch excluded),
    checked by the cell when it has spatial inputs; else ``step_shape[-1]``."""
    if input_rank(cell) == 1:
        return step_shape[-1]
    return cell.input_dim_of(step_shape)


def initial_state_of(cell: Any, batch_size: int, dtype=jnp.float32,
                     step_shape: tuple | None = None) -> Any:
    """A cell's zero state, from ``get_initial_state`` or else from ``state_size``.

    `step_shape` (one step's input shape, batch excluded) reaches only cells with spatial
    inputs (``input_rank > 1``), whose states' shape depends on the inputs'.
    """
    get = getattr(cell, "get_initial_state", None)
    if get is not None:
        if input_rank(cell) > 1:
            return get(batch_size, dtype=dtype, step_shape=step_shape)
        return get(batch_size, dtype=dtype)
    size = cell.state_size
    if isinstance(size, int):
        return (jnp.zeros((batch_size, size), dtype),)
    return tuple(jnp.zeros((batch_size, s), dtype) for s in size)


def restructure(new_states: Any, like: Any, who: str) -> Any:
    """Gives a cell's returned states the exact pytree structure of its input states."""
    leaves = jax.tree.leaves(new_states)
    treedef = jax.tree.structure(like)
    n = len(jax.tree.leaves(like))
    if len(leaves) != n:
        raise ValueError(
            f"{who} returned {len(leaves)} state arrays but was given {n}; "
            "a cell must return one new array per state."
        )
    return jax.tree.unflatten(treedef, leaves)


def has_cell_interface(obj: Any) -> list[str]:
    """Returns the names of the cell interface's members that `obj` lacks."""
    needed = ("state_size", "init")
    missing = [n for n in needed if not hasattr(obj, n)]
    if not callable(obj):
        missing.append("__call__")
    return missing


def is_stack(cell: Any) -> bool:
    """Whether `cell` is a `StackedRNNCells` (params and states: one entry per cell)."""
    return isinstance(cell, StackedRNNCells)


def make_dropout(cell: Any, rng: Array | None, training: bool, batch_size: int,
                 input_dim: int, dtype, step_shape: tuple | None = None) -> Any:
    """What a cell needs for dropout over one sequence, drawn once before the loop.

    For jaxrnn's cells: their masks (``None`` when not training); a cell with spatial
    inputs also gets `step_shape`, one step's input shape. For other cells:
    ``(training, rng)``, the same `rng` passed at every step, so a cell that draws its mask
    from `rng` gets the same mask at every step (Keras's variational dropout).
    """
    if isinstance(cell, (Cell, StackedRNNCells)):
        if input_rank(cell) > 1:  # a ConvLSTM's masks are shaped like its feature maps
            spatial_masks: Any = cell.dropout_masks
            return spatial_masks(rng, training, batch_size, input_dim, dtype,
                                 step_shape=step_shape)
        return cell.dropout_masks(rng, training, batch_size, input_dim, dtype)
    return training, rng


def apply_cell(cell: Any, params: Any, inputs: Array, states: Any,
               dropout: Any) -> tuple[Array, Any]:
    """One step of any cell, with the dropout that `make_dropout` prepared."""
    if isinstance(cell, (Cell, StackedRNNCells)):
        return cell.step(params, inputs, states, dropout)
    training, rng = dropout
    output, new_states = cell(params, inputs, states, training=training, rng=rng)
    return output, restructure(new_states, states, type(cell).__name__)


# ----------------------------------------------------------------------------- bases


@dataclasses.dataclass(frozen=True)
class Cell:
    """What every jaxrnn cell shares: the cell protocol that `RNN` runs, implemented once.

    `RNN` needs from any cell (a user's too) ``state_size``, ``init(key, input_dim, dtype)``
    and ``__call__(params, inputs, states, *, training, rng)``. A `Cell` adds what lets the
    engines run it without per-step checks: ``step(params, inputs, states, masks)`` (one
    step, no checks) and ``dropout_masks`` (drawn once per sequence, as Keras does). It
    checks dict params against ``param_shapes`` and builds its config from its dataclass
    fields. Subclasses define ``state_size``, ``param_shapes``, ``init`` and ``step``.

    Example:
      >>> import jaxrnn as jr
      >>> isinstance(jr.LRUCell(4), jr.Cell), isinstance(jr.LRUCell(4), jr.RNNCellBase)
      (True, False)
    """

    if TYPE_CHECKING:  # what the subclasses define
        @property
        def state_size(self) -> int | tuple[int, ...]: ...

        def param_shapes(self, input_dim: int) -> dict[str, tuple[int, ...]]: ...

        def init(self, key: Array, input_dim: int, dtype=jnp.float32) -> Any: ...

        def step(self, params: Any, inputs: Array, states: Any,
                 masks: Any = None) -> tuple[Array, Any]: ...

    _input_param = "kernel"  # the param whose first axis is the input width F

    def __post_init__(self):
        cls = type(self).__name__
        for name in ("dropout", "recurrent_dropout"):
            if hasattr(self, name):
                _check_rate(getattr(self, name), name, cls)
        for f in dataclasses.fields(self):
            if f.name.endswith("activation"):
                _resolve.activation(getattr(self, f.name), f"{cls}: {f.name}")
            elif f.name.endswith("initializer"):
                _resolve.initializer(getattr(self, f.name), f"{cls}: {f.name}")
            elif f.name == "use_bias":
                check_bool(getattr(self, f.name), f.name, cls)

    @property
    def output_size(self) -> int:
        size = self.state_size
        return size if isinstance(size, int) else size[0]

    def get_initial_state(self, batch_size: int, dtype=jnp.float32) -> Any:
        """Zero states: a tuple with one [B, S] array per entry of ``state_size``."""
        size = self.state_size
        sizes = (size,) if isinstance(size, int) else size
        return tuple(jnp.zeros((batch_size, s), dtype) for s in sizes)

    # --- params --------------------------------------------------------------------

    def check_params(self, params: Any, input_dim: int | None = None) -> int:
        """Checks params' keys and shapes against ``param_shapes``; returns their input_dim F.

        Raises:
          TypeError: `params` is not a dict.
          ValueError: a key is missing or unexpected, or a shape is wrong.
        """
        cls = type(self).__name__
        if not isinstance(params, dict):
            raise TypeError(
                f"{cls}: params must be a dict with keys {sorted(self.param_shapes(1))}; got "
                f"{type(params).__name__}. Create them with cell.init(key, input_dim)."
            )
        expected = set(self.param_shapes(1))
        if set(params) != expected:
            missing, extra = sorted(expected - set(params)), sorted(set(params) - expected)
            bias = f" (use_bias={self.use_bias})" if hasattr(self, "use_bias") else ""
            raise ValueError(
                f"{cls}: params must have keys {sorted(expected)}; missing {missing}, "
                f"unexpected {extra}{bias}. Create them with cell.init(key, input_dim), or "
                "copy a Keras cell's weights by name."
            )
        first = self._input_param  # the [F, ...] param whose first axis is the input width
        first_shape = tuple(getattr(params[first], "shape", ()))
        if len(first_shape) != 2:
            raise ValueError(
                f"{cls}: params[{first!r}] must be [F, {self.param_shapes(1)[first][1]}]; got "
                f"shape {first_shape}."
            )
        f = first_shape[0] if input_dim is None else input_dim
        units = getattr(self, "units", None)
        for name, shape in self.param_shapes(f).items():
            got = tuple(getattr(params[name], "shape", ()))
            if got != shape:
                raise ValueError(
                    f"{cls}(units={units}): params[{name!r}] must have shape {shape} for "
                    f"{f} input features; got {got}. Re-create the params with "
                    f"cell.init(key, {f}), or build the cell with the units they were made for."
                )
        return f

    # --- dropout -------------------------------------------------------------------

    def _mask_count(self) -> int:
        """0: one dropout mask for all gates; k: one per gate ([k, B, *] masks)."""
        return 0

    def dropout_masks(self, rng: Array | None, training: bool, batch_size: int, input_dim: int,
                      dtype) -> tuple[Array | None, Array | None] | None:
        """Draws Keras's variational dropout masks for one sequence.

        Returns:
          ``None`` when not training or without dropout; else ``(input_mask,
          recurrent_mask)``, each ``None``, [B, F] (resp. [B, H]) or, one per gate,
          [k, B, F] (resp. [k, B, H]).

        Raises:
          ValueError: training with dropout but no `rng`.
        """
        rate = getattr(self, "dropout", 0.0)
        rec_rate = getattr(self, "recurrent_dropout", 0.0)
        if not training or (rate == 0 and rec_rate == 0):
            return None
        if rng is None:
            raise ValueError(
                f"{type(self).__name__}: training=True with dropout={rate}, "
                f"recurrent_dropout={rec_rate} needs a random key; got rng=None. "
                "Pass rng=jax.random.key(...), or training=False."
            )
        k_in, k_rec = jax.random.split(rng)
        lead = (self._mask_count(),) if self._mask_count() else ()
        x_mask = h_mask = None
        if rate > 0:
            x_mask = _dropout_mask(k_in, rate, lead + (batch_size, input_dim), dtype)
        if rec_rate > 0:
            h_mask = _dropout_mask(k_rec, rec_rate, lead + (batch_size, self.output_size),
                                   dtype)
        return x_mask, h_mask

    # --- calling -------------------------------------------------------------------

    def __call__(self, params: Any, inputs: Array, states: Sequence[Array], *,
                 training: bool = False, rng: Array | None = None) -> tuple[Array, Any]:
        """One time step.

        Args:
          params: from `init`.
          inputs: [B, F] inputs of this step.
          states: as from `get_initial_state`: a tuple of [B, S] arrays.
          training: apply dropout.
          rng: a `jax.random` key, needed when training with dropout.

        Returns:
          ``(output, new_states)``: output [B, H] and the states' tuple.
        """
        inputs = jnp.asarray(inputs)
        cls = type(self).__name__
        if inputs.ndim != 2:
            raise ValueError(
                f"{cls}: inputs must be [B, F]; got shape {inputs.shape}. A cell takes one time "
                "step; use jaxrnn.RNN(cell) for sequences."
            )
        f = self.check_params(params)
        if inputs.shape[1] != f:
            raise ValueError(
                f"{cls}: inputs must be [B, F] with F={f} (the params' input_dim); got shape "
                f"{inputs.shape}."
            )
        like = self.get_initial_state(inputs.shape[0])
        if len(jax.tree.leaves(states)) != len(like):
            raise ValueError(
                f"{cls}: expected {len(like)} state array(s) of shape {like[0].shape}; got "
                f"{len(jax.tree.leaves(states))}. Start from cell.get_initial_state(batch_size)."
            )
        states = restructure(states, like, cls)
        for s, z in zip(states, like):
            if jnp.shape(s) != z.shape:
                raise ValueError(
                    f"{cls}: every state must be {z.shape}; got {jnp.shape(s)}."
                )
        masks = self.dropout_masks(rng, training, inputs.shape[0], f, inputs.dtype)
        return self.step(params, inputs, states, masks)

    # --- config --------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments, JSON-serializable (functions by name)."""
        config = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("activation", "initializer")):
                value = _resolve.serialize(value, f"{type(self).__name__}: {f.name}")
            config[f.name] = value
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        """Rebuilds the cell from `get_config`'s output."""
        return cls(**config)


@dataclasses.dataclass(frozen=True)
class RNNCellBase(Cell):
    """Keras's gated-cell layout (not a cell itself): ``units``, ``k`` gates, params
    ``kernel`` [F, k*H], ``recurrent_kernel`` [H, k*H] and ``bias`` [k*H], each from its
    initializer, and Keras 3's dropout (one mask per gate with recurrent dropout).

    Subclasses define ``state_size``, ``_gates`` and ``step``.

    Example:
      >>> import jaxrnn as jr
      >>> isinstance(jr.GRUCell(4), jr.RNNCellBase)
      True
      >>> jr.LSTMCell(4).param_shapes(3)  # Keras's names and shapes, for F=3 inputs
      {'kernel': (3, 16), 'recurrent_kernel': (4, 16), 'bias': (16,)}
    """

    if TYPE_CHECKING:  # what the subclasses declare (as dataclass fields)
        @property
        def units(self) -> int: ...
        @property
        def use_bias(self) -> bool: ...
        @property
        def kernel_initializer(self) -> Initializer: ...
        @property
        def recurrent_initializer(self) -> Initializer: ...  # absent: no recurrent kernel
        @property
        def bias_initializer(self) -> Initializer: ...

    _gates = 1

    def __post_init__(self):
        _check_units(self.units, type(self).__name__)
        super().__post_init__()

    @property
    def output_size(self) -> int:
        return self.units

    def get_initial_state(self, batch_size: int, dtype=jnp.float32) -> tuple[Array, ...]:
        """Zero states: a tuple with one [B, H] array per state."""
        return (jnp.zeros((batch_size, self.units), dtype),)

    def param_shapes(self, input_dim: int) -> dict[str, tuple[int, ...]]:
        """The params' shapes for inputs of `input_dim` features, in Keras's layout."""
        kh = self._gates * self.units
        shapes: dict[str, tuple[int, ...]] = {"kernel": (input_dim, kh)}
        if hasattr(self, "recurrent_initializer"):
            shapes["recurrent_kernel"] = (self.units, kh)
        if self.use_bias:
            shapes["bias"] = self._bias_shape()
        return shapes

    def _bias_shape(self) -> tuple[int, ...]:
        return (self._gates * self.units,)

    def _init_bias(self, key: Array, dtype) -> Array:
        return _initialize(self.bias_initializer, key, self._bias_shape(), dtype)

    def init(self, key: Array, input_dim: int, dtype=jnp.float32) -> dict[str, Array]:
        """Creates the params.

        Args:
          key: a `jax.random` key.
          input_dim: F, the number of input features.
          dtype: the params' dtype.

        Returns:
          ``{"kernel": [F, k*H], "recurrent_kernel": [H, k*H], "bias": [k*H]}`` with k the
          number of gates (Keras's names and shapes); no ``"bias"`` when ``use_bias=False``.
        """
        if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim <= 0:
            raise ValueError(
                f"{type(self).__name__}.init: input_dim must be a positive int (the number of "
                f"input features F); got {input_dim!r}."
            )
        shapes = self.param_shapes(input_dim)
        recurrent = "recurrent_kernel" in shapes
        keys = list(jax.random.split(key, 3 if recurrent else 2))
        params = {"kernel": _initialize(self.kernel_initializer, keys[0], shapes["kernel"],
                                        dtype)}
        if recurrent:
            params["recurrent_kernel"] = _initialize(
                self.recurrent_initializer, keys[1], shapes["recurrent_kernel"], dtype)
        if self.use_bias:
            params["bias"] = self._init_bias(keys[-1], dtype)
        return params

    def _mask_count(self) -> int:
        # Keras 3 uses one input mask for all gates unless recurrent dropout is on, when it
        # switches to `implementation=1`: one mask per gate, for inputs and recurrent state.
        rec_rate = getattr(self, "recurrent_dropout", 0.0)
        return self._gates if rec_rate > 0 and self._gates > 1 else 0


# ----------------------------------------------------------------------------- cells


@_registry.register
@dataclasses.dataclass(frozen=True)
class SimpleRNNCell(RNNCellBase):
    """A fully connected recurrent cell, as Keras's ``SimpleRNNCell``.

    ``h_t = activation(x_t @ kernel + bias + h_{t-1} @ recurrent_kernel)``; the output is
    ``h_t``. Params: ``kernel`` [F, H], ``recurrent_kernel`` [H, H], ``bias`` [H].

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> cell = jr.SimpleRNNCell(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> out, (h,) = cell(params, jnp.ones((2, 3)), cell.get_initial_state(2))
      >>> out.shape  # [B, H]
      (2, 4)
    """

    units: int
    activation: Activation = "tanh"
    use_bias: bool = True
    kernel_initializer: Initializer = "glorot_uniform"
    recurrent_initializer: Initializer = "orthogonal"
    bias_initializer: Initializer = "zeros"
    dropout: float = 0.0
    recurrent_dropout: float = 0.0

    @property
    def state_size(self) -> int:
        return self.units

    def step(self, params, inputs, states, masks=None):
        """One step with dropout masks from `dropout_masks` (no checks)."""
        with jax.named_scope("SimpleRNNCell"):
            (h,) = states
            x_mask, h_mask = masks or (None, None)
            z = project(inputs, params["kernel"], x_mask, 1)
            if self.use_bias:
                z = z + params["bias"][None, :]
            z = z + project(h, params["recurrent_kernel"], h_mask, 1)
            h = _resolve.activation(self.activation)(z)
            return h, (h,)


_ELEMENTWISE_INITIALIZERS = ("zeros", "ones", "random_normal", "truncated_normal",
                             "random_uniform")


def _initialize_vector(spec: Initializer, key: Array, n: int, dtype) -> Array:
    """A 1-D weight [n] from an initializer, with Keras's fans for a 1-D shape.

    Keras gives a 1-D weight fan_in = fan_out = n; JAX's variance-scaling initializers refuse
    1-D shapes. The diagonal of an [n, n] draw has exactly Keras's distribution for them
    (glorot/he/lecun, uniform or normal); the elementwise named ones draw [n] directly.
    """
    if isinstance(spec, str) and spec.lower() in _ELEMENTWISE_INITIALIZERS:
        return _initialize(spec, key, (n,), dtype)
    return jnp.diagonal(_initialize(spec, key, (n, n), dtype))


@dataclasses.dataclass(frozen=True)
class _LSTMBase(RNNCellBase):
    """What Keras's LSTM family shares (not a cell itself): Keras's ``LSTMCell`` arguments
    (the fields below, in its order; a subclass adds its own after them), four gates in
    Keras's order ``i, f, c, o``, states ``LSTMState(h, c)`` and the forget-bias
    initialization."""

    units: int
    activation: Activation = "tanh"
    recurrent_activation: Activation = "sigmoid"
    use_bias: bool = True
    kernel_initializer: Initializer = "glorot_uniform"
    recurrent_initializer: Initializer = "orthogonal"
    bias_initializer: Initializer = "zeros"
    unit_forget_bias: bool = True
    dropout: float = 0.0
    recurrent_dropout: float = 0.0

    _gates = 4

    def __post_init__(self):
        super().__post_init__()
        check_bool(self.unit_forget_bias, "unit_forget_bias", type(self).__name__)

    @property
    def state_size(self) -> tuple[int, int]:
        return (self.output_size, self.units)

    def _init_bias(self, key, dtype):
        if not self.unit_forget_bias:
            return _initialize(self.bias_initializer, key, (4 * self.units,), dtype)
        k1, k2 = jax.random.split(key)
        return jnp.concatenate([
            _initialize(self.bias_initializer, k1, (self.units,), dtype),
            jnp.ones((self.units,), dtype),  # forget gate starts open, as in Keras
            _initialize(self.bias_initializer, k2, (2 * self.units,), dtype),
        ])

    def get_initial_state(self, batch_size: int, dtype=jnp.float32) -> LSTMState:
        """Zero states ``LSTMState(h=[B, H], c=[B, H])``."""
        return LSTMState(jnp.zeros((batch_size, self.output_size), dtype),
                         jnp.zeros((batch_size, self.units), dtype))


@_registry.register
@dataclasses.dataclass(frozen=True)
class LSTMCell(_LSTMBase):
    """A long short-term memory cell, as Keras's ``LSTMCell`` (PyTorch's with `proj_size`).

    With ``z = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias`` split into the gates
    ``i, f, g, o`` (Keras's order):

      i, f, o = recurrent_activation(z_i), recurrent_activation(z_f), recurrent_activation(z_o)
      c_t = f * c_{t-1} + i * activation(z_g)
      h_t = o * activation(c_t)                      (proj_size=0, Keras)
      h_t = (o * activation(c_t)) @ projection       (proj_size=P > 0, PyTorch)

    The output is ``h_t``; the states are ``LSTMState(h, c)``. Params: ``kernel``
    [F, 4H], ``recurrent_kernel`` [H, 4H], ``bias`` [4H]. With ``unit_forget_bias``
    the forget gate's bias starts at ones (Jozefowicz et al., 2015), as in Keras.

    With ``proj_size=P > 0`` this is PyTorch's projected LSTM (``nn.LSTM(proj_size=P)``,
    Sak et al., 2014, "LSTMP"): h is [B, P] while c stays [B, H]; ``recurrent_kernel`` is
    [P, 4H] and a ``projection`` [H, P] (PyTorch's ``weight_hr`` transposed, drawn by
    `projection_initializer`) is added; the output is [B, P]. Recurrent dropout masks h,
    so they are [B, P]. P must be smaller than H, as in PyTorch. The fused path runs it.

    Args:
      proj_size: P, the size of the projected h; 0 (the default) for no projection.
      projection_initializer: the initializer of ``projection`` (used only when P > 0).

    The other arguments are Keras's ``LSTMCell``'s, with its defaults.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> cell = jr.LSTMCell(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> params["kernel"].shape  # [F, 4H]
      (3, 16)
      >>> out, state = cell(params, jnp.ones((2, 3)), cell.get_initial_state(2))
      >>> state.c.shape  # [B, H]
      (2, 4)
      >>> proj = jr.LSTMCell(4, proj_size=2)  # PyTorch's nn.LSTM(3, 4, proj_size=2)
      >>> jax.tree.map(jnp.shape, proj.init(jax.random.key(0), 3))
      {'bias': (16,), 'kernel': (3, 16), 'projection': (4, 2), 'recurrent_kernel': (2, 16)}
      >>> h, c = proj.get_initial_state(5)
      >>> h.shape, c.shape  # [B, P], [B, H]
      ((5, 2), (5, 4))
    """

    proj_size: int = 0
    projection_initializer: Initializer = "glorot_uniform"

    def __post_init__(self):
        super().__post_init__()
        p = self.proj_size
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < self.units:
            raise ValueError(
                f"LSTMCell: proj_size must be an int with 0 <= proj_size < units={self.units} "
                f"(the projected h is smaller than c, as in PyTorch); got proj_size={p!r}. Use "
                "proj_size=0 for no projection."
            )

    @property
    def output_size(self) -> int:
        return self.proj_size or self.units

    def param_shapes(self, input_dim: int) -> dict[str, tuple[int, ...]]:
        """The params' shapes for inputs of `input_dim` features: Keras's layout, with
        ``recurrent_kernel`` [P, 4H] and ``projection`` [H, P] when ``proj_size=P > 0``."""
        shapes = super().param_shapes(input_dim)
        if self.proj_size:
            shapes["recurrent_kernel"] = (self.proj_size, 4 * self.units)
            shapes["projection"] = (self.units, self.proj_size)
        return shapes

    def init(self, key: Array, input_dim: int, dtype=jnp.float32) -> dict[str, Array]:
        """Creates the params (see `RNNCellBase.init`), and ``projection`` [H, P] when
        ``proj_size=P > 0``."""
        if not self.proj_size:
            return super().init(key, input_dim, dtype)
        key, k_proj = jax.random.split(key)
        params = super().init(key, input_dim, dtype)
        params["projection"] = _initialize(self.projection_initializer, k_proj,
                                           (self.units, self.proj_size), dtype)
        return params

    def get_config(self) -> dict[str, Any]:
        """Keras's config; ``proj_size`` and ``projection_initializer`` only when P > 0."""
        config = super().get_config()
        if not self.proj_size:
            del config["proj_size"], config["projection_initializer"]
        return config

    def step(self, params, inputs, states, masks=None):
        """One step with dropout masks from `dropout_masks` (no checks)."""
        with jax.named_scope("LSTMCell"):
            h, c = states
            x_mask, h_mask = masks or (None, None)
            z = project(inputs, params["kernel"], x_mask, 4)
            z = z + project(h, params["recurrent_kernel"], h_mask, 4)
            if self.use_bias:
                z = z + params["bias"][None, :]
            i, f, g, o = jnp.split(z, 4, axis=-1)
            act = _resolve.activation(self.activation)
            rec = _resolve.activation(self.recurrent_activation)
            c = rec(f) * c + rec(i) * act(g)
            h = rec(o) * act(c)
            if self.proj_size:
                h = h @ params["projection"]  # PyTorch's h = W_hr (o * tanh(c))
            return h, LSTMState(h, c)


@_registry.register
@dataclasses.dataclass(frozen=True)
class GRUCell(RNNCellBase):
    """A gated recurrent unit cell, as Keras's ``GRUCell``.

    With the gates in Keras's order ``z, r, h``:

      z = recurrent_activation(x W_z + b_z + h_{t-1} U_z + rb_z)
      r = recurrent_activation(x W_r + b_r + h_{t-1} U_r + rb_r)
      reset_after=True:  n = activation(x W_h + b_h + r * (h_{t-1} U_h + rb_h))
      reset_after=False: n = activation(x W_h + b_h + (r * h_{t-1}) U_h)
      h_t = z * h_{t-1} + (1 - z) * n

    Params: ``kernel`` [F, 3H], ``recurrent_kernel`` [H, 3H], ``bias`` [2, 3H] (input and
    recurrent biases) with ``reset_after=True``, else [3H]. ``reset_after=True`` is the
    cuDNN-compatible form, Keras's default.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> cell = jr.GRUCell(4)
      >>> jax.tree.map(jnp.shape, cell.init(jax.random.key(0), 3))["bias"]  # [2, 3H]
      (2, 12)
    """

    units: int
    activation: Activation = "tanh"
    recurrent_activation: Activation = "sigmoid"
    use_bias: bool = True
    kernel_initializer: Initializer = "glorot_uniform"
    recurrent_initializer: Initializer = "orthogonal"
    bias_initializer: Initializer = "zeros"
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    reset_after: bool = True

    _gates = 3

    @property
    def state_size(self) -> int:
        return self.units

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def step(self, params, inputs, states, masks=None):
        """One step with dropout masks from `dropout_masks` (no checks)."""
        with jax.named_scope("GRUCell"):
            (h,) = states
            x_mask, h_mask = masks or (None, None)
            units = self.units
            act = _resolve.activation(self.activation)
            rec = _resolve.activation(self.recurrent_activation)
            u = params["recurrent_kernel"]
            xz = project(inputs, params["kernel"], x_mask, 3)
            in_bias = rec_bias = None
            if self.use_bias:
                in_bias, rec_bias = (params["bias"][0], params["bias"][1]) if self.reset_after \
                    else (params["bias"], None)
                xz = xz + in_bias[None, :]
            x_z, x_r, x_h = jnp.split(xz, 3, axis=-1)
            if self.reset_after:
                hz = project(h, u, h_mask, 3)
                if rec_bias is not None:
                    hz = hz + rec_bias[None, :]
                h_z, h_r, h_h = jnp.split(hz, 3, axis=-1)
                z, r = rec(x_z + h_z), rec(x_r + h_r)
                n = act(x_h + r * h_h)
            else:
                zr_mask = None if h_mask is None else h_mask[:2] if h_mask.ndim == 3 else h_mask
                hz = project(h, u[:, :2 * units], zr_mask, 2)
                h_z, h_r = jnp.split(hz, 2, axis=-1)
                z, r = rec(x_z + h_z), rec(x_r + h_r)
                h_for_n = h if h_mask is None else h * (h_mask[2] if h_mask.ndim == 3 else h_mask)
                n = act(x_h + (r * h_for_n) @ u[:, 2 * units:])
            h = z * h + (1 - z) * n
            return h, (h,)


@_registry.register
@dataclasses.dataclass(frozen=True, init=False)
class StackedRNNCells:
    """Cells run one above the other at every step, as Keras's ``StackedRNNCells``.

    Cell ``i`` takes the output of cell ``i - 1``; the stack's output is the last cell's.
    Params are a list with one entry per cell; states a tuple with one entry per cell.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> stack = jr.StackedRNNCells([jr.LSTMCell(8), jr.GRUCell(4)])
      >>> params = stack.init(jax.random.key(0), 3)
      >>> out, states = stack(params, jnp.ones((2, 3)), stack.get_initial_state(2))
      >>> out.shape, len(states)
      ((2, 4), 2)
    """

    cells: tuple

    def __init__(self, cells: Sequence[Any]):
        if isinstance(cells, (str, bytes)) or not isinstance(cells, (list, tuple)):
            raise TypeError(
                f"StackedRNNCells: cells must be a list of cells; got {type(cells).__name__}."
            )
        if not cells:
            raise ValueError(
                "StackedRNNCells: cells is empty; give at least one cell, e.g. "
                "[jaxrnn.LSTMCell(32)]."
            )
        for i, cell in enumerate(cells):
            missing = has_cell_interface(cell)
            if missing:
                raise TypeError(
                    f"StackedRNNCells: cells[{i}] ({type(cell).__name__}) lacks the cell "
                    f"interface: no {missing}. A cell needs state_size, init(key, input_dim, "
                    "dtype) and __call__(params, inputs, states, *, training, rng)."
                )
            if input_rank(cell) != 1:
                raise ValueError(
                    f"StackedRNNCells: cells[{i}] ({type(cell).__name__}) takes feature maps, "
                    "not [B, F] vectors, so it cannot be stacked cell by cell; stack its "
                    "layers instead: jaxrnn.Sequential([jaxrnn.ConvLSTM2D(..., "
                    "return_sequences=True), ...])."
                )
        object.__setattr__(self, "cells", tuple(cells))

    @property
    def state_size(self) -> tuple:
        return tuple(c.state_size for c in self.cells)

    @property
    def output_size(self) -> int:
        return output_size_of(self.cells[-1])

    def _input_dims(self, input_dim: int) -> list[int]:
        dims = [input_dim]
        for cell in self.cells[:-1]:
            dims.append(output_size_of(cell))
        return dims

    def init(self, key: Array, input_dim: int, dtype=jnp.float32) -> list:
        """Creates a list with one params dict per cell, each cell fed by the one below."""
        keys = jax.random.split(key, len(self.cells))
        return [cell.init(k, d, dtype) for cell, k, d in
                zip(self.cells, keys, self._input_dims(input_dim))]

    def check_params(self, params: Any, input_dim: int | None = None) -> int | None:
        """Checks each cell's params; returns the input_dim F of the first cell (None when
        the first cell cannot tell it: a user-defined cell without ``check_params``)."""
        if not isinstance(params, (list, tuple)) or len(params) != len(self.cells):
            got = f"{len(params)} entries" if isinstance(params, (list, tuple)) else \
                type(params).__name__
            raise ValueError(
                f"StackedRNNCells: params must be a list with one entry per cell "
                f"({len(self.cells)}); got {got}. Create them with stack.init(key, input_dim)."
            )
        first = None
        dim = input_dim
        for i, (cell, p) in enumerate(zip(self.cells, params)):
            check = getattr(cell, "check_params", None)
            if check is not None:
                try:
                    got_dim = check(p, dim)
                except ValueError as e:
                    raise ValueError(f"StackedRNNCells: cells[{i}]: {e}") from None
                first = got_dim if i == 0 else first
            dim = output_size_of(cell)
        return first

    def get_initial_state(self, batch_size: int, dtype=jnp.float32) -> tuple:
        """A tuple with each cell's zero states."""
        return tuple(initial_state_of(c, batch_size, dtype) for c in self.cells)

    def dropout_masks(self, rng, training, batch_size, input_dim, dtype):
        """Each cell's dropout (see `make_dropout`), with its own key."""
        keys = [None] * len(self.cells) if rng is None else list(jax.random.split(rng,
                                                                                   len(self.cells)))
        return tuple(make_dropout(c, k, training, batch_size, d, dtype) for c, k, d in
                     zip(self.cells, keys, self._input_dims(input_dim)))

    def step(self, params, inputs, states, masks=None):
        """One step through every cell (no checks); `masks` from `dropout_masks`."""
        if masks is None:
            masks = tuple(make_dropout(c, None, False, 0, 0, None) for c in self.cells)
        new_states = []
        for cell, p, s, m in zip(self.cells, params, states, masks):
            inputs, s = apply_cell(cell, p, inputs, s, m)
            new_states.append(s)
        return inputs, tuple(new_states)

    def __call__(self, params, inputs, states, *, training=False, rng=None):
        """One time step through the stack: ``(output [B, H_last], states tuple)``."""
        inputs = jnp.asarray(inputs)
        if inputs.ndim != 2:
            raise ValueError(
                f"StackedRNNCells: inputs must be [B, F]; got shape {inputs.shape}. A cell "
                "takes one time step; use jaxrnn.RNN(cells) for sequences."
            )
        self.check_params(params, inputs.shape[1])
        like = self.get_initial_state(inputs.shape[0], inputs.dtype)
        states = restructure(states, like, "StackedRNNCells")
        masks = self.dropout_masks(rng, training, inputs.shape[0], inputs.shape[1], inputs.dtype)
        return self.step(params, inputs, states, masks)

    def get_config(self) -> dict[str, Any]:
        return {"cells": [_registry.serialize(c) for c in self.cells]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls([_registry.deserialize(c, custom_objects) for c in config["cells"]])
