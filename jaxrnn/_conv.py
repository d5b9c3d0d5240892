"""Convolutional LSTM: Keras 3's ``ConvLSTMCell`` and its ``ConvLSTM1D/2D/3D`` layers.

The gates of an LSTM computed by convolutions instead of matrix products (Shi et al.,
2015), over inputs with 1, 2 or 3 spatial axes. The cell is a `jaxrnn.Cell` whose states
are feature maps, ``[B, *spatial, filters]``; the layers are `jaxrnn.RNN` over it, so masks,
resets, initial states, `Bidirectional` and `save`/`load` work as for every other cell.
Weights have Keras's names, shapes and gate order, so a Keras ConvLSTM's weights drop in
by name.
"""

from __future__ import annotations

import dataclasses
import itertools
import numbers
from collections.abc import Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _layers, _registry, _resolve
from jaxrnn._cells import (
    Activation,
    Cell,
    Initializer,
    LSTMState,
    _dropout_mask,
    _initialize,
    check_bool,
    dense,
    restructure,
)

Array = jax.Array

DATA_FORMATS = ("channels_last", "channels_first")
PADDINGS = ("valid", "same")
_SPATIAL_NAMES = {1: ("W",), 2: ("H", "W"), 3: ("D", "H", "W")}


def _int_tuple(value: Any, n: int, name: str, who: str, example: str) -> tuple[int, ...]:
    """`value` (an int, or `n` ints) as a tuple of `n` positive ints, as Keras's
    ``standardize_tuple`` makes it."""

    def positive(v: Any) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) > 0

    if positive(value):
        return (int(value),) * n
    if isinstance(value, (list, tuple)) and len(value) == n and all(positive(v) for v in value):
        return tuple(int(v) for v in value)
    raise ValueError(
        f"{who}: {name} must be a positive int or a tuple of {n} positive ints (one per "
        f"spatial axis); got {value!r}. Pass e.g. {name}={example}."
    )


CONV_IMPLS = ("conv", "im2col")


def default_conv_impl(backend: str | None = None) -> str:
    """The convolution a cell with ``conv_impl=None`` uses on `backend` (default: JAX's).

    ``"im2col"`` on CPU: there XLA runs a convolution's gradients inside a loop (the scan
    over time) tens of times slower than the same products as matmuls; ``"conv"`` (XLA's
    convolution, cuDNN on GPU) elsewhere.
    """
    return "im2col" if (backend or jax.default_backend()) == "cpu" else "conv"


def _xla_conv(x: Array, w: Array, strides: Sequence[int], padding: str,
              dilation: Sequence[int], channels_first: bool, groups: int = 1) -> Array:
    """An N-d convolution with Keras's layouts: x [B, *S, C] (channels_first: [B, C, *S]),
    w [*K, C / groups, O]; as Keras's JAX backend computes ``ops.conv``."""
    n = x.ndim
    spatial = tuple(range(2, n)) if channels_first else tuple(range(1, n - 1))
    io = (0, 1) + spatial if channels_first else (0, n - 1) + spatial
    dn = lax.ConvDimensionNumbers(lhs_spec=io, rhs_spec=(n - 1, n - 2) + tuple(range(n - 2)),
                                  out_spec=io)
    return lax.conv_general_dilated(x, w, tuple(strides), padding.upper(),
                                    rhs_dilation=tuple(dilation), dimension_numbers=dn,
                                    feature_group_count=groups)


def _im2col_conv(x: Array, w: Array, strides: Sequence[int], padding: str,
                 dilation: Sequence[int], channels_first: bool, groups: int = 1) -> Array:
    """`_xla_conv` as one matmul: the input's patches (one strided slice per kernel offset,
    side by side on the channel axis) [B, *S', K*C] times the kernel [K*C, O]. Its
    gradients are matmuls too; see `default_conv_impl`."""
    if channels_first:
        x = jnp.moveaxis(x, 1, -1)
    rank = w.ndim - 2
    ks = w.shape[:rank]
    span = [(k - 1) * d + 1 for k, d in zip(ks, dilation)]
    pads = lax.padtype_to_pads(x.shape[1:-1], span, tuple(strides), padding.upper())
    xp = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    out = [(n - s) // st + 1 for n, s, st in zip(xp.shape[1:-1], span, strides)]
    cols = []
    for offsets in itertools.product(*(range(k) for k in ks)):  # the kernel's row-major order
        start = [o * d for o, d in zip(offsets, dilation)]
        cols.append(lax.slice(
            xp, (0, *start, 0),
            (xp.shape[0], *[b + (m - 1) * st + 1 for b, m, st in zip(start, out, strides)],
             xp.shape[-1]),
            (1, *strides, 1)))
    patches = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]  # [B, *S', K*C]
    k = len(cols)
    if groups == 1:
        y = dense(patches, w.reshape(-1, w.shape[-1]))
    else:  # group g: its channels of every patch times its columns of the kernel
        cin, o = w.shape[-2], w.shape[-1] // groups
        p = patches.reshape(-1, k, groups, cin)
        y = jnp.einsum("nkgc,kcgo->ngo", p, w.reshape(k, cin, groups, o))
        y = y.reshape(*patches.shape[:-1], groups * o)
    return jnp.moveaxis(y, -1, 1) if channels_first else y


# Only the inputs are kept for the backward pass, which rebuilds the patches (K times the
# input's size) rather than storing them for every step.
_im2col_conv_remat = jax.checkpoint(_im2col_conv, static_argnums=(2, 3, 4, 5, 6))


# ----------------------------------------------------------------------------- the cell


@_registry.register
@dataclasses.dataclass(frozen=True)
class ConvLSTMCell(Cell):
    """A convolutional LSTM cell, as Keras 3's ``ConvLSTMCell`` (Shi et al., 2015).

    With ``*`` a convolution, the gates in Keras's order ``i, f, g, o``:

      z = (x_t * kernel + bias) + (h_{t-1} * recurrent_kernel)
      i, f, o = recurrent_activation(z_i), recurrent_activation(z_f), recurrent_activation(z_o)
      c_t = f * c_{t-1} + i * activation(z_g)
      h_t = o * activation(c_t)

    The input convolution has the cell's `strides`, `padding` and `dilation_rate`; the
    recurrent one is always ``"same"`` with stride 1 and no dilation, as in Keras. The
    output is ``h_t``; the states are ``LSTMState(h, c)``, each [B, *S', filters]
    ([B, filters, *S'] for ``channels_first``) with S' the convolution's output size.

    Params (Keras's names and layouts): ``kernel`` [*kernel_size, C, 4*filters],
    ``recurrent_kernel`` [*kernel_size, filters, 4*filters], ``bias`` [4*filters].

    The states' spatial size depends on the inputs', so ``get_initial_state`` takes the
    shape of one step's inputs: ``step_shape`` (S..., C), batch excluded.

    Args:
      rank: the number of spatial axes: 1, 2 or 3.
      filters: the number of output channels.
      kernel_size: an int or a tuple of `rank` ints.
      strides: an int or a tuple of `rank` ints (only 1 with a `dilation_rate` > 1).
      padding: ``"valid"`` (no padding) or ``"same"`` (the output is ``ceil(S / stride)``),
        any case.
      data_format: ``"channels_last"`` (inputs [B, *S, C]) or ``"channels_first"`` ([B, C,
        *S]); ``None`` is ``"channels_last"`` (jaxrnn has no global Keras config).
      dilation_rate: an int or a tuple of `rank` ints, of the input convolution.
      activation: of the cell input and the output (a name or a callable).
      recurrent_activation: of the gates i, f, o (a name or a callable).
      use_bias: whether there is a ``bias``.
      kernel_initializer: for ``kernel`` (a name or a callable).
      recurrent_initializer: for ``recurrent_kernel``.
      bias_initializer: for ``bias``.
      unit_forget_bias: the forget gate's bias starts at ones (Jozefowicz et al., 2015).
      dropout: Keras's input dropout: one mask per gate, shaped as a step's inputs, drawn
        once per sequence.
      recurrent_dropout: the same for the hidden state, one mask per gate.
      conv_impl: how the convolutions run (not a Keras argument; results agree to float
        rounding): ``"conv"``, XLA's convolution (`jax.lax.conv_general_dilated`);
        ``"im2col"``, the inputs' patches times the kernel as one matmul, whose gradients
        are matmuls as well (the backward pass rebuilds the patches rather than storing
        them); ``None``: ``"im2col"`` on CPU, where XLA runs convolution gradients inside
        the time loop many times slower, else ``"conv"``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> cell = jr.ConvLSTMCell(2, filters=4, kernel_size=3, padding="same")
      >>> params = cell.init(jax.random.key(0), 3)  # 3 input channels
      >>> params["kernel"].shape  # [*kernel_size, C, 4 * filters]
      (3, 3, 3, 16)
      >>> x = jnp.ones((2, 8, 8, 3))  # one step: [B, H, W, C]
      >>> state = cell.get_initial_state(2, step_shape=x.shape[1:])
      >>> out, state = cell(params, x, state)
      >>> out.shape, state.c.shape  # [B, H, W, filters]
      ((2, 8, 8, 4), (2, 8, 8, 4))
    """

    rank: int
    filters: int
    kernel_size: int | tuple[int, ...]
    strides: int | tuple[int, ...] = 1
    padding: str = "valid"
    data_format: str | None = None
    dilation_rate: int | tuple[int, ...] = 1
    activation: Activation = "tanh"
    recurrent_activation: Activation = "sigmoid"
    use_bias: bool = True
    kernel_initializer: Initializer = "glorot_uniform"
    recurrent_initializer: Initializer = "orthogonal"
    bias_initializer: Initializer = "zeros"
    unit_forget_bias: bool = True
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    conv_impl: str | None = None

    # Fields Keras's ConvLSTM1D/2D/3D take no argument for (jaxrnn.to_keras): the rank is
    # the class; conv_impl does not change results.
    _keras_implicit = ("rank", "conv_impl")

    def __post_init__(self):
        who = "ConvLSTMCell"
        rank = self.rank
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or \
                rank not in (1, 2, 3):
            raise ValueError(
                f"{who}: rank must be 1, 2 or 3 (the number of spatial axes, as in "
                f"ConvLSTM1D/2D/3D); got {rank!r}."
            )
        object.__setattr__(self, "rank", int(rank))
        f = self.filters
        if isinstance(f, bool) or not isinstance(f, numbers.Integral) or f <= 0:
            raise ValueError(
                f"{who}: filters must be a positive int (the number of output channels); got "
                f"{f!r}. Pass e.g. filters=32."
            )
        object.__setattr__(self, "filters", int(f))
        ex = str((3,) * rank) if rank > 1 else "3"
        for name in ("kernel_size", "strides", "dilation_rate"):
            object.__setattr__(self, name, _int_tuple(getattr(self, name), rank, name, who,
                                                      ex if name == "kernel_size" else "1"))
        if max(self._strides) > 1 and max(self._dilation) > 1:
            raise ValueError(
                f"{who}: strides > 1 is not compatible with dilation_rate > 1 (as in Keras); "
                f"got strides={self.strides} and dilation_rate={self.dilation_rate}. Pass "
                "strides=1 or dilation_rate=1."
            )
        padding = self.padding
        if not isinstance(padding, str) or padding.lower() not in PADDINGS:
            raise ValueError(
                f"{who}: padding must be 'valid' or 'same'; got {padding!r}."
            )
        object.__setattr__(self, "padding", padding.lower())
        fmt = "channels_last" if self.data_format is None else self.data_format
        if not isinstance(fmt, str) or fmt.lower() not in DATA_FORMATS:
            raise ValueError(
                f"{who}: data_format must be 'channels_last' (inputs [B, T, *spatial, C]) or "
                f"'channels_first' ([B, T, C, *spatial]); got {self.data_format!r}."
            )
        object.__setattr__(self, "data_format", fmt.lower())
        check_bool(self.unit_forget_bias, "unit_forget_bias", who)
        if self.conv_impl is not None and self.conv_impl not in CONV_IMPLS:
            raise ValueError(
                f"{who}: conv_impl must be None (the backend's default), 'conv' or 'im2col'; "
                f"got {self.conv_impl!r}."
            )
        super().__post_init__()

    # --- shapes --------------------------------------------------------------------

    input_rank = property(lambda self: self.rank + 1,
                          doc="The axes of one step's inputs, batch excluded: rank + 1.")

    # kernel_size, strides and dilation_rate, which __post_init__ made tuples of `rank` ints
    _kernel = property(lambda self: cast(tuple[int, ...], self.kernel_size))
    _strides = property(lambda self: cast(tuple[int, ...], self.strides))
    _dilation = property(lambda self: cast(tuple[int, ...], self.dilation_rate))

    @property
    def _channels_first(self) -> bool:
        return self.data_format == "channels_first"

    @property
    def step_layout(self) -> str:
        """One step's axes, for messages: e.g. ``"H, W, C"``."""
        names = _SPATIAL_NAMES[self.rank]
        return ", ".join(("C", *names) if self._channels_first else (*names, "C"))

    @property
    def state_size(self) -> tuple[int, int]:
        """The channels of ``h`` and ``c``; each state is a [B, *S', filters] feature map."""
        return (self.filters, self.filters)

    @property
    def output_size(self) -> int:
        return self.filters

    def _split(self, step_shape: Sequence[Any]) -> tuple[tuple, Any]:
        """``(spatial sizes, channels)`` of one step's shape."""
        step_shape = tuple(step_shape)
        if self._channels_first:
            return step_shape[1:], step_shape[0]
        return step_shape[:-1], step_shape[-1]

    def input_dim_of(self, step_shape: Sequence[int | None]) -> int:
        """Checks the shape of one step's inputs (batch excluded); returns its channels C.

        Spatial sizes may be None (unknown); the channels must be an int.

        Raises:
          ValueError: the rank is not ``rank + 1``, the channels are not a positive int,
            or, with ``"valid"`` padding, the (dilated) kernel is larger than the input.
        """
        step_shape = tuple(step_shape)
        who = f"ConvLSTMCell(rank={self.rank})"
        if len(step_shape) != self.rank + 1:
            raise ValueError(
                f"{who}: one step of the inputs must be [{self.step_layout}] "
                f"({self.rank} spatial axes and the channels, {self.data_format}); got a step "
                f"of shape {step_shape}. For a {len(step_shape) - 1}-D input use "
                f"ConvLSTM{max(len(step_shape) - 1, 1)}D."
            )
        spatial, channels = self._split(step_shape)
        if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or \
                channels <= 0:
            raise ValueError(
                f"{who}: the channels of the inputs ({self.data_format}: axis "
                f"{'1' if self._channels_first else '-1'} of a step) must be a positive int; "
                f"got {channels!r} in the step shape {step_shape}."
            )
        for s in spatial:
            if s is not None and (isinstance(s, bool) or not isinstance(s, numbers.Integral)
                                  or s <= 0):
                raise ValueError(f"{who}: spatial sizes must be positive ints; got "
                                 f"{step_shape}.")
        if self.padding == "valid":
            span = tuple((k - 1) * d + 1 for k, d in zip(self._kernel, self._dilation))
            if any(s is not None and s < k for s, k in zip(spatial, span)):
                dil = "" if span == self.kernel_size else \
                    f" (kernel_size {self.kernel_size} dilated by {self.dilation_rate})"
                raise ValueError(
                    f"{who}: with padding='valid' the kernel spans {span}{dil}, larger than "
                    f"the inputs' spatial size {tuple(spatial)} (step shape {step_shape}, "
                    f"{self.data_format}). Use padding='same', a smaller kernel_size or "
                    "dilation_rate, or larger inputs."
                )
        return int(channels)

    def output_shape(self, step_shape: Sequence[int]) -> tuple[int, ...]:
        """The shape of one step's output and of each state, batch excluded, for inputs of
        one step of `step_shape`."""
        self.input_dim_of(step_shape)
        spatial, _ = self._split(step_shape)
        out = []
        for s, k, st, d in zip(spatial, self._kernel, self._strides, self._dilation):
            if s is None:
                raise ValueError(
                    f"ConvLSTMCell(rank={self.rank}): the states' shape needs the inputs' "
                    f"spatial sizes; got None in the step shape {tuple(step_shape)}. Give "
                    "static spatial sizes (as Keras's ConvLSTM requires)."
                )
            if self.padding == "same":
                out.append(-(-s // st))
            else:
                out.append((s - (k - 1) * d - 1) // st + 1)
        f = self.filters
        return (f, *out) if self._channels_first else (*out, f)

    def get_initial_state(self, batch_size: int, dtype=jnp.float32, *,
                          step_shape: Sequence[int] | None = None) -> LSTMState:
        """Zero states ``LSTMState(h, c)``, each [B, *S', filters].

        Args:
          batch_size: B.
          dtype: the states' dtype.
          step_shape: the shape of one step's inputs, batch excluded: (*S, C)
            (channels_first: (C, *S)), e.g. ``x.shape[1:]`` for a step x.
        """
        if step_shape is None:
            raise ValueError(
                f"ConvLSTMCell(rank={self.rank}): the states' spatial size depends on the "
                f"inputs', so get_initial_state needs step_shape=, the shape of one step "
                f"of the inputs without batch ([{self.step_layout}]), e.g. "
                "cell.get_initial_state(B, step_shape=x.shape[1:])."
            )
        zeros = jnp.zeros((batch_size, *self.output_shape(step_shape)), dtype)
        return LSTMState(zeros, zeros)

    # --- params --------------------------------------------------------------------

    def param_shapes(self, input_dim: int) -> dict[str, tuple[int, ...]]:
        """Keras's shapes for inputs with `input_dim` channels."""
        k, f = self._kernel, self.filters
        shapes = {"kernel": (*k, input_dim, 4 * f), "recurrent_kernel": (*k, f, 4 * f)}
        if self.use_bias:
            shapes["bias"] = (4 * f,)
        return shapes

    def check_params(self, params: Any, input_dim: int | None = None) -> int:
        """Checks params' keys and shapes; returns their input channels C.

        Raises:
          TypeError: `params` is not a dict.
          ValueError: a key is missing or unexpected, or a shape is wrong.
        """
        who = f"ConvLSTMCell(rank={self.rank}, filters={self.filters})"
        expected = self.param_shapes(1)
        if not isinstance(params, dict):
            raise TypeError(
                f"{who}: params must be a dict with keys {sorted(expected)}; got "
                f"{type(params).__name__}. Create them with cell.init(key, input_channels)."
            )
        if set(params) != set(expected):
            missing, extra = sorted(set(expected) - set(params)), sorted(set(params) -
                                                                          set(expected))
            raise ValueError(
                f"{who}: params must have keys {sorted(expected)}; missing {missing}, "
                f"unexpected {extra} (use_bias={self.use_bias}). Create them with "
                "cell.init(key, input_channels), or copy a Keras cell's weights by name."
            )
        kshape = tuple(getattr(params["kernel"], "shape", ()))
        if len(kshape) != self.rank + 2:
            raise ValueError(
                f"{who}: params['kernel'] must be [*kernel_size, C, 4*filters] = "
                f"{self.param_shapes(1)['kernel'][:-2]} + (C, {4 * self.filters}); got shape "
                f"{kshape}."
            )
        c = kshape[-2] if input_dim is None else input_dim
        for name, shape in self.param_shapes(c).items():
            got = tuple(getattr(params[name], "shape", ()))
            if got != shape:
                raise ValueError(
                    f"{who}: params[{name!r}] must have shape {shape} for {c} input channels "
                    f"(kernel_size {self.kernel_size}); got {got}. Re-create the params with "
                    f"cell.init(key, {c}), or build the cell with the kernel_size and filters "
                    "they were made for."
                )
        return c

    def init(self, key: Array, input_dim: int, dtype=jnp.float32) -> dict[str, Array]:
        """Creates the params for inputs with `input_dim` channels C.

        Returns:
          ``{"kernel": [*kernel_size, C, 4F], "recurrent_kernel": [*kernel_size, F, 4F],
          "bias": [4F]}`` with F = filters; no ``"bias"`` when ``use_bias=False``.
        """
        if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim <= 0:
            raise ValueError(
                f"ConvLSTMCell.init: input_dim must be a positive int (the number of input "
                f"channels C); got {input_dim!r}."
            )
        shapes = self.param_shapes(input_dim)
        k_kernel, k_rec, k_bias = jax.random.split(key, 3)
        params = {
            "kernel": _initialize(self.kernel_initializer, k_kernel, shapes["kernel"], dtype),
            "recurrent_kernel": _initialize(self.recurrent_initializer, k_rec,
                                            shapes["recurrent_kernel"], dtype),
        }
        if self.use_bias:
            f = self.filters
            if self.unit_forget_bias:
                k1, k2 = jax.random.split(k_bias)
                params["bias"] = jnp.concatenate([
                    _initialize(self.bias_initializer, k1, (f,), dtype),
                    jnp.ones((f,), dtype),  # forget gate starts open, as in Keras
                    _initialize(self.bias_initializer, k2, (2 * f,), dtype),
                ])
            else:
                params["bias"] = _initialize(self.bias_initializer, k_bias, (4 * f,), dtype)
        return params

    # --- dropout -------------------------------------------------------------------

    def _mask_count(self) -> int:
        return 4  # Keras's ConvLSTMCell: one mask per gate (dropout_mask_count = 4)

    def dropout_masks(self, rng: Array | None, training: bool, batch_size: int,
                      input_dim: int, dtype, *, step_shape: Sequence[int] | None = None
                      ) -> tuple[Array | None, Array | None] | None:
        """Keras's dropout masks for one sequence: ``None`` when not training or without
        dropout, else ``(input_mask [4, B, *step_shape] or None, recurrent_mask [4, B,
        *state_shape] or None)``, one mask per gate.

        Raises:
          ValueError: training with dropout but no `rng`, or no `step_shape`.
        """
        rate, rec_rate = self.dropout, self.recurrent_dropout
        if not training or (rate == 0 and rec_rate == 0):
            return None
        if rng is None:
            raise ValueError(
                f"ConvLSTMCell: training=True with dropout={rate}, recurrent_dropout="
                f"{rec_rate} needs a random key; got rng=None. Pass rng=jax.random.key(...), "
                "or training=False."
            )
        if step_shape is None:
            raise ValueError("ConvLSTMCell.dropout_masks: pass step_shape=, the shape of one "
                             "step of the inputs without batch.")
        k_in, k_rec = jax.random.split(rng)
        x_mask = h_mask = None
        if rate > 0:
            x_mask = _dropout_mask(k_in, rate, (4, batch_size, *step_shape), dtype)
        if rec_rate > 0:
            h_mask = _dropout_mask(k_rec, rec_rate,
                                   (4, batch_size, *self.output_shape(step_shape)), dtype)
        return x_mask, h_mask

    # --- calling -------------------------------------------------------------------

    def _gated_conv(self, x: Array, w: Array, mask: Array | None, strides, padding,
                    dilation) -> Array:
        """``x * w`` for all four gates; with per-gate masks [4, B, ...], gate k sees
        ``x * mask[k]``: one grouped convolution, group k the gate k's quarter of `w`."""
        cf = self._channels_first
        conv = _xla_conv if (self.conv_impl or default_conv_impl()) == "conv" else \
            _im2col_conv_remat
        if mask is None:
            return conv(x, w, tuple(strides), padding, tuple(dilation), cf, 1)
        xm = x[None] * mask  # [4, B, ...]
        axis = 1 if cf else x.ndim - 1  # channels, in x's axes
        xm = jnp.moveaxis(xm, 0, axis)  # [B, ..., 4, C, ...]: gate-major channels
        xm = xm.reshape(*x.shape[:axis], 4 * x.shape[axis], *x.shape[axis + 1:])
        return conv(xm, w, tuple(strides), padding, tuple(dilation), cf, 4)

    def step(self, params, inputs, states, masks=None):
        """One step with dropout masks from `dropout_masks` (no checks)."""
        with jax.named_scope("ConvLSTMCell"):
            h, c = states
            x_mask, h_mask = masks or (None, None)
            ones = (1,) * self.rank
            z = self._gated_conv(inputs, params["kernel"], x_mask, self.strides, self.padding,
                                 self.dilation_rate)
            if self.use_bias:
                shape = (1, -1, *ones) if self._channels_first else (1, *ones, -1)
                z = z + params["bias"].reshape(shape)
            z = z + self._gated_conv(h, params["recurrent_kernel"], h_mask, ones, "same", ones)
            i, f, g, o = jnp.split(z, 4, axis=1 if self._channels_first else -1)
            act = _resolve.activation(self.activation)
            rec = _resolve.activation(self.recurrent_activation)
            c = rec(f) * c + rec(i) * act(g)
            h = rec(o) * act(c)
            return h, LSTMState(h, c)

    def __call__(self, params: Any, inputs: Array, states: Sequence[Array], *,
                 training: bool = False, rng: Array | None = None) -> tuple[Array, Any]:
        """One time step.

        Args:
          params: from `init`.
          inputs: [B, *S, C] inputs of this step ([B, C, *S] for channels_first).
          states: ``(h, c)`` as from ``get_initial_state(B, step_shape=inputs.shape[1:])``.
          training: apply dropout.
          rng: a `jax.random` key, needed when training with dropout.

        Returns:
          ``(output, LSTMState(h, c))``, each [B, *S', filters].
        """
        inputs = jnp.asarray(inputs)
        who = f"ConvLSTMCell(rank={self.rank})"
        if inputs.ndim != self.rank + 2:
            raise ValueError(
                f"{who}: inputs must be [B, {self.step_layout}]; got shape {inputs.shape}. A "
                f"cell takes one time step; use jaxrnn.ConvLSTM{self.rank}D for sequences."
            )
        channels = self.input_dim_of(inputs.shape[1:])
        self.check_params(params, channels)
        like = self.get_initial_state(inputs.shape[0], step_shape=inputs.shape[1:])
        if len(jax.tree.leaves(states)) != 2:
            raise ValueError(
                f"{who}: expected 2 state arrays (h, c) of shape {like.h.shape}; got "
                f"{len(jax.tree.leaves(states))}. Start from "
                "cell.get_initial_state(B, step_shape=inputs.shape[1:])."
            )
        states = restructure(states, like, "ConvLSTMCell")
        for s, z in zip(states, like):
            if jnp.shape(s) != z.shape:
                raise ValueError(f"{who}: every state must be {z.shape}; got {jnp.shape(s)}.")
        masks = self.dropout_masks(rng, training, inputs.shape[0], channels, inputs.dtype,
                                   step_shape=inputs.shape[1:])
        return self.step(params, inputs, states, masks)


# ----------------------------------------------------------------------------- layers


def _conv_lstm(rank: int, args: dict[str, Any]) -> _layers.RNN:
    """``RNN(ConvLSTMCell(rank, ...), ...)`` from a shorthand's local variables."""
    cell_args = {f.name: args[f.name] for f in dataclasses.fields(ConvLSTMCell)
                 if f.name != "rank"}
    return _layers._layer(ConvLSTMCell(rank, **cell_args), args)




def ConvLSTM1D(
    filters: int, kernel_size: int | tuple[int], *, strides: int | tuple[int] = 1,
    padding: str = "valid", data_format: str | None = None,
    dilation_rate: int | tuple[int] = 1, activation: Activation = "tanh",
    recurrent_activation: Activation = "sigmoid", use_bias: bool = True,
    kernel_initializer: Initializer = "glorot_uniform",
    recurrent_initializer: Initializer = "orthogonal", bias_initializer: Initializer = "zeros",
    unit_forget_bias: bool = True, dropout: float = 0.0, recurrent_dropout: float = 0.0,
    conv_impl: str | None = None,
    return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
    stateful: bool = False, unroll: bool | int = False, zero_output_for_mask: bool = False,
    time_major: bool = False, parallel: bool | None = None, fused: bool | None = None,
    dtype: str | None = None, param_dtype: str | None = None,
    remat: bool | int | None = None, remat_threshold: int | None = None,
    solver: str | None = None, learn_initial_state: bool = False,
) -> _layers.RNN:
    """``RNN(ConvLSTMCell(1, filters, kernel_size, ...), ...)``, as Keras's ``ConvLSTM1D``.

    Sequences [B, T, W, C] (channels_first: [B, T, C, W]); outputs [B, T, W', filters]
    with return_sequences, else [B, W', filters].

    Cell arguments (see `ConvLSTMCell`): filters, kernel_size, strides, padding,
    data_format, dilation_rate, activation, recurrent_activation, use_bias,
    kernel_initializer, recurrent_initializer, bias_initializer, unit_forget_bias, dropout,
    recurrent_dropout; Keras's names and defaults (``data_format=None`` is
    ``"channels_last"``); and conv_impl, how the convolutions run. Layer arguments (keyword-only, as for `RNN`): return_sequences,
    return_state, go_backwards, stateful, unroll, zero_output_for_mask, time_major, dtype,
    param_dtype, remat, remat_threshold, learn_initial_state (and parallel, fused, solver,
    which a ConvLSTM never uses: it runs on the generic scan).

    Every `RNN` feature applies: ``mask`` [B, T] (Keras's own masked ConvLSTM fails),
    ``reset``, ``initial_state`` (two arrays, h and c), `Bidirectional` (its ``"concat"``
    joins the last axis, as Keras's does: the channels for ``channels_last``), `save` and
    `load`. A stateful layer's zeros need the inputs' shape:
    ``layer.reset_state(B, step_shape=x.shape[2:])``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> layer = jr.ConvLSTM1D(4, 3, return_sequences=True)
      >>> params = layer.init(jax.random.key(0), (2, 5, 10, 3))  # (B, T, W, C)
      >>> layer(params, jnp.ones((2, 5, 10, 3))).shape  # [B, T, W - 2, filters]
      (2, 5, 8, 4)
    """
    return _conv_lstm(1, locals())


def ConvLSTM2D(
    filters: int, kernel_size: int | tuple[int, int], *, strides: int | tuple[int, int] = 1,
    padding: str = "valid", data_format: str | None = None,
    dilation_rate: int | tuple[int, int] = 1, activation: Activation = "tanh",
    recurrent_activation: Activation = "sigmoid", use_bias: bool = True,
    kernel_initializer: Initializer = "glorot_uniform",
    recurrent_initializer: Initializer = "orthogonal", bias_initializer: Initializer = "zeros",
    unit_forget_bias: bool = True, dropout: float = 0.0, recurrent_dropout: float = 0.0,
    conv_impl: str | None = None,
    return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
    stateful: bool = False, unroll: bool | int = False, zero_output_for_mask: bool = False,
    time_major: bool = False, parallel: bool | None = None, fused: bool | None = None,
    dtype: str | None = None, param_dtype: str | None = None,
    remat: bool | int | None = None, remat_threshold: int | None = None,
    solver: str | None = None, learn_initial_state: bool = False,
) -> _layers.RNN:
    """``RNN(ConvLSTMCell(2, filters, kernel_size, ...), ...)``, as Keras's ``ConvLSTM2D``.

    Sequences [B, T, H, W, C] (channels_first: [B, T, C, H, W]); outputs
    [B, T, H', W', filters] with return_sequences, else [B, H', W', filters].

    Cell arguments (see `ConvLSTMCell`): filters, kernel_size, strides, padding,
    data_format, dilation_rate, activation, recurrent_activation, use_bias,
    kernel_initializer, recurrent_initializer, bias_initializer, unit_forget_bias, dropout,
    recurrent_dropout; Keras's names and defaults (``data_format=None`` is
    ``"channels_last"``); and conv_impl, how the convolutions run. Layer arguments (keyword-only, as for `RNN`): return_sequences,
    return_state, go_backwards, stateful, unroll, zero_output_for_mask, time_major, dtype,
    param_dtype, remat, remat_threshold, learn_initial_state (and parallel, fused, solver,
    which a ConvLSTM never uses: it runs on the generic scan).

    Every `RNN` feature applies: ``mask`` [B, T] (Keras's own masked ConvLSTM fails),
    ``reset``, ``initial_state`` (two arrays, h and c), `Bidirectional` (its ``"concat"``
    joins the last axis, as Keras's does: the channels for ``channels_last``), `save` and
    `load`. A stateful layer's zeros need the inputs' shape:
    ``layer.reset_state(B, step_shape=x.shape[2:])``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> layer = jr.ConvLSTM2D(4, (3, 3), padding="same", return_state=True)
      >>> params = layer.init(jax.random.key(0), (2, 5, 8, 8, 1))  # (B, T, H, W, C)
      >>> y, h, c = layer(params, jnp.ones((2, 5, 8, 8, 1)))
      >>> y.shape, c.shape  # [B, H, W, filters] each
      ((2, 8, 8, 4), (2, 8, 8, 4))
    """
    return _conv_lstm(2, locals())


def ConvLSTM3D(
    filters: int, kernel_size: int | tuple[int, int, int], *,
    strides: int | tuple[int, int, int] = 1, padding: str = "valid",
    data_format: str | None = None, dilation_rate: int | tuple[int, int, int] = 1,
    activation: Activation = "tanh", recurrent_activation: Activation = "sigmoid",
    use_bias: bool = True, kernel_initializer: Initializer = "glorot_uniform",
    recurrent_initializer: Initializer = "orthogonal", bias_initializer: Initializer = "zeros",
    unit_forget_bias: bool = True, dropout: float = 0.0, recurrent_dropout: float = 0.0,
    conv_impl: str | None = None,
    return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
    stateful: bool = False, unroll: bool | int = False, zero_output_for_mask: bool = False,
    time_major: bool = False, parallel: bool | None = None, fused: bool | None = None,
    dtype: str | None = None, param_dtype: str | None = None,
    remat: bool | int | None = None, remat_threshold: int | None = None,
    solver: str | None = None, learn_initial_state: bool = False,
) -> _layers.RNN:
    """``RNN(ConvLSTMCell(3, filters, kernel_size, ...), ...)``, as Keras's ``ConvLSTM3D``.

    Sequences [B, T, D, H, W, C] (channels_first: [B, T, C, D, H, W]); outputs
    [B, T, D', H', W', filters] with return_sequences, else [B, D', H', W', filters].

    Cell arguments (see `ConvLSTMCell`): filters, kernel_size, strides, padding,
    data_format, dilation_rate, activation, recurrent_activation, use_bias,
    kernel_initializer, recurrent_initializer, bias_initializer, unit_forget_bias, dropout,
    recurrent_dropout; Keras's names and defaults (``data_format=None`` is
    ``"channels_last"``); and conv_impl, how the convolutions run. Layer arguments (keyword-only, as for `RNN`): return_sequences,
    return_state, go_backwards, stateful, unroll, zero_output_for_mask, time_major, dtype,
    param_dtype, remat, remat_threshold, learn_initial_state (and parallel, fused, solver,
    which a ConvLSTM never uses: it runs on the generic scan).

    Every `RNN` feature applies: ``mask`` [B, T] (Keras's own masked ConvLSTM fails),
    ``reset``, ``initial_state`` (two arrays, h and c), `Bidirectional` (its ``"concat"``
    joins the last axis, as Keras's does: the channels for ``channels_last``), `save` and
    `load`. A stateful layer's zeros need the inputs' shape:
    ``layer.reset_state(B, step_shape=x.shape[2:])``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> layer = jr.ConvLSTM3D(2, 3, strides=2, padding="same")
      >>> params = layer.init(jax.random.key(0), (1, 3, 4, 6, 6, 1))  # (B, T, D, H, W, C)
      >>> layer(params, jnp.ones((1, 3, 4, 6, 6, 1))).shape  # ceil(size / stride)
      (1, 2, 3, 3, 2)
    """
    return _conv_lstm(3, locals())
