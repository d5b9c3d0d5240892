"""Cells with a linear recurrence, which `RNN` runs in parallel over time.

`MinGRUCell` and `MinLSTMCell` (Feng et al., 2024) and `LRUCell` (Orvieto et al., 2023)
have states that follow ``h_t = a_t * h_{t-1} + b_t`` with ``a_t``, ``b_t`` computed from
the inputs alone. They are ordinary cells -- ``cell(params, x_t, states)`` steps them, and
they stack with any other cell -- and they also declare that recurrence through
``linear_recurrence``, so that ``jaxrnn.RNN`` runs them with `jax.lax.associative_scan`
(see `jaxrnn._parallel`). Both modes give the same results up to float rounding.

References:
  Leo Feng, Frederick Tung, Mohamed Osama Ahmed, Yoshua Bengio, Hossein Hajimirsadeghi.
  "Were RNNs All We Needed?" arXiv:2410.01201, 2024.
  Antonio Orvieto, Samuel L. Smith, Albert Gu, Anushan Fernando, Caglar Gulcehre, Razvan
  Pascanu, Soham De. "Resurrecting Recurrent Neural Networks for Long Sequences." ICML 2023,
  arXiv:2303.06349.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _cells, _registry
from jaxrnn._cells import Cell, Initializer, RNNCellBase
from jaxrnn._loop import static_size
from jaxrnn._parallel import LinearRecurrence

Array = jax.Array


# ----------------------------------------------------------------------------- helpers


def g(x: Array) -> Array:
    """Feng et al.'s positive activation: ``x + 0.5`` for ``x >= 0``, else ``sigmoid(x)``.

    Continuous at 0 and always > 0, so that ``log g`` exists (their log-space minGRU).
    """
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def log_g(x: Array) -> Array:
    """``log(g(x))``, computed without forming ``g``: ``log(x + 0.5)`` or ``-softplus(-x)``.

    Its derivative is ``g'(x) / g(x)`` everywhere, ``x = 0`` included (2, from the
    ``x + 0.5`` branch that `g` takes there), so that the log-space parallel mode and the
    stepped cell have the same gradients even where a pre-activation is exactly 0 (a zero
    input, or a dropped one, through a zero bias). Hence ``where(x >= 0, x, 0)`` to keep
    ``log`` off negative numbers: ``relu`` has derivative 0 at 0.
    """
    pos = x >= 0
    return jnp.where(pos, jnp.log(jnp.where(pos, x, 0.0) + 0.5), -jax.nn.softplus(-x))


@jax.custom_jvp
def normalized_gates(k_f: Array, k_i: Array) -> tuple[Array, Array]:
    """minLSTM's gates ``f / (f + i)`` and ``i / (f + i)``, ``f = sigmoid(k_f)``,
    ``i = sigmoid(k_i)``, for any pre-activations (infinities included), with three exps
    and one division.

    With ``s = max(0, -k_f, -k_i)``, ``w = exp(-s)``, ``u = exp(-k_f - s)``,
    ``v = exp(-k_i - s)`` (all in [0, 1], one of them 1): ``f = w / (w + u)``,
    ``i = w / (w + v)``, so ``f / (f + i) = (w + v) / (2w + u + v)`` -- no overflow and no
    0/0 even where both sigmoids underflow, and a small ``i'`` keeps its relative precision.
    The derivative, ``d f' = f' i' ((1 - f) dk_f - (1 - i) dk_i) = -d i'``, is computed as
    ``((w + v) u dk_f - (w + u) v dk_i) / (2w + u + v)^2``: no division that can underflow
    to 0/0. Pre-activations are clipped to a quarter of the dtype's largest value, so that
    ``+-inf`` gives the limits (0 or 1) instead of ``inf - inf``.
    """
    return _normalized_gates(k_f, k_i)[0]


def _normalized_gates(k_f, k_i):
    big = jnp.finfo(jnp.result_type(k_f, k_i)).max / 4
    k_f, k_i = jnp.clip(k_f, -big, big), jnp.clip(k_i, -big, big)
    s = -jnp.minimum(jnp.minimum(k_f, k_i), 0)
    w, u, v = jnp.exp(-s), jnp.exp(-k_f - s), jnp.exp(-k_i - s)
    inv = 1 / (2 * w + u + v)
    return ((w + v) * inv, (w + u) * inv), (u, v, inv)


@normalized_gates.defjvp
def _normalized_gates_jvp(primals, tangents):
    (f, i), (u, v, inv) = _normalized_gates(*primals)
    dk_f, dk_i = tangents
    # f' i' (1 - f) = (w + v) u inv^2 = f' u inv, and f' i' (1 - i) = i' v inv.
    df = inv * (f * u * dk_f - i * v * dk_i)
    return (f, i), (df, -df)


def _input_mask(dropout: Any) -> Array | None:
    """The [B, F] input dropout mask out of `dropout_masks`' result (or None)."""
    if dropout is None:
        return None
    return dropout[0]


# ----------------------------------------------------------------------------- minGRU / minLSTM


@dataclasses.dataclass(frozen=True)
class _MinRNNCell(RNNCellBase):
    """Shared parts of minGRU and minLSTM: gates from the input only, state = output.

    The fields are both cells' arguments (see their docstrings)."""

    units: int
    log_space: bool = True
    use_bias: bool = True
    kernel_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    dropout: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        _cells.check_bool(self.log_space, "log_space", type(self).__name__)

    @property
    def state_size(self) -> int:
        return self.units

    def _project(self, params: dict[str, Array], x: Array, x_mask: Array | None) -> list[Array]:
        """``(x * mask) @ kernel + bias`` for x [..., B, F], one [..., B, H] array per gate.

        The kernel is sliced per gate, not the product: slicing a [T, B, k*H] activation
        along its last axis makes strided copies that cost more than the matmul on CPU.
        """
        if x_mask is not None:
            x = x * x_mask.reshape((1,) * (x.ndim - 2) + x_mask.shape)
        h = self.units
        out = []
        for i in range(self._gates):
            z = _cells.dense(x, params["kernel"][:, i * h:(i + 1) * h])
            if self.use_bias:
                z = z + params["bias"][i * h:(i + 1) * h].reshape((1,) * (z.ndim - 1) + (h,))
            out.append(z)
        return out

    def _candidate(self, k_h: Array) -> Array:
        return g(k_h) if self.log_space else k_h


@_registry.register
@dataclasses.dataclass(frozen=True)
class MinGRUCell(_MinRNNCell):
    """The minimal GRU of Feng et al. (2024), "Were RNNs All We Needed?" (arXiv:2410.01201).

    The gates see only the input, so the recurrence is linear in ``h`` and trains in
    parallel over time. With ``[k_z, k_h] = x_t @ kernel + bias``:

      z_t = sigmoid(k_z)
      h~_t = g(k_h)                       (log_space=True;  k_h when log_space=False)
      h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

    ``g(x) = x + 0.5`` for ``x >= 0`` and ``sigmoid(x)`` otherwise keeps ``h~_t > 0``, so the
    parallel mode can work in log space, as in the paper's numerically stable version:
    ``log a_t = -softplus(k_z)``, ``log b_t = -softplus(-k_z) + log g(k_h)``, combined with
    ``logaddexp``; the initial state stays out of log space (``h_t = A_t h_0 + B_t``), so it
    may have any sign. ``log_space=False`` is the paper's plain minGRU (``h~_t = k_h``) with a
    linear-space scan. Stepping the cell computes the same ``h_t`` directly.

    The output is ``h_t``; the states are ``(h,)``. Params: ``kernel`` [F, 2H] (gate order
    ``z, h~``) and ``bias`` [2H]. ``dropout`` drops inputs (one mask per sequence, as
    Keras); there is no recurrent kernel, hence no ``recurrent_dropout``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> from jaxrnn import MinGRUCell
      >>> layer = jr.RNN(MinGRUCell(8), return_sequences=True)  # parallel over time
      >>> params = layer.init(jax.random.key(0), (2, 100, 3))
      >>> params["kernel"].shape  # [F, 2H]
      (3, 16)
      >>> layer(params, jnp.ones((2, 100, 3))).shape  # [B, T, H]
      (2, 100, 8)
    """

    _gates = 2

    def step(self, params, inputs, states, masks=None):
        """One step with dropout masks from `dropout_masks` (no checks)."""
        with jax.named_scope("MinGRUCell"):
            (h,) = states
            k_z, k_h = self._project(params, inputs, _input_mask(masks))
            z = jax.nn.sigmoid(k_z)
            h = (1 - z) * h + z * self._candidate(k_h)
            return h, (h,)

    def linear_recurrence(self, params, xs, states, dropout=None, *,
                          log_space=False) -> LinearRecurrence:
        """``a_t = 1 - z_t``, ``b_t = z_t * h~_t`` for xs [T, B, F]; their logs when the
        engine asks for `log_space` and the cell has it."""
        with jax.named_scope("MinGRUCell"):
            k_z, k_h = self._project(params, xs, _input_mask(dropout))
            log_space = log_space and self.log_space
            if log_space:
                a = -jax.nn.softplus(k_z)  # log(1 - z)
                b = -jax.nn.softplus(-k_z) + log_g(k_h)  # log z + log g(k_h)
            else:
                z = jax.nn.sigmoid(k_z)
                a, b = 1 - z, z * self._candidate(k_h)
            return LinearRecurrence(a, b, states[0], readout=lambda h: h,
                                    final_states=lambda h, y: (h,), encode=lambda s: s[0],
                                    log_space=log_space)


@_registry.register
@dataclasses.dataclass(frozen=True)
class MinLSTMCell(_MinRNNCell):
    """The minimal LSTM of Feng et al. (2024), "Were RNNs All We Needed?" (arXiv:2410.01201).

    With ``[k_f, k_i, k_h] = x_t @ kernel + bias``, the gates are normalised so that they
    sum to one (which makes the state's scale independent of time):

      f_t = sigmoid(k_f),  i_t = sigmoid(k_i)
      f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)
      h~_t = g(k_h)                       (log_space=True;  k_h when log_space=False)
      h_t = f'_t * h_{t-1} + i'_t * h~_t

    computed exactly for any pre-activations by `normalized_gates`; in log space (the
    paper's stable version), with ``d = softplus(-k_f) - softplus(-k_i)`` (= log i - log f),
    ``log a_t = -softplus(d)``, ``log b_t = -softplus(-d) + log g(k_h)``. See `MinGRUCell` for
    ``g`` and the initial state. The output is ``h_t``; the states are ``(h,)``.

    Params: ``kernel`` [F, 3H] (gate order ``f, i, h~``) and ``bias`` [3H]. ``dropout`` drops
    inputs (one mask per sequence).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxrnn import MinLSTMCell
      >>> cell = MinLSTMCell(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> out, (h,) = cell(params, jnp.ones((2, 3)), cell.get_initial_state(2))
      >>> out.shape  # [B, H]
      (2, 4)
    """

    _gates = 3

    def step(self, params, inputs, states, masks=None):
        """One step with dropout masks from `dropout_masks` (no checks)."""
        with jax.named_scope("MinLSTMCell"):
            (h,) = states
            k_f, k_i, k_h = self._project(params, inputs, _input_mask(masks))
            f, i = normalized_gates(k_f, k_i)
            h = f * h + i * self._candidate(k_h)
            return h, (h,)

    def linear_recurrence(self, params, xs, states, dropout=None, *,
                          log_space=False) -> LinearRecurrence:
        """``a_t = f'_t``, ``b_t = i'_t * h~_t`` for xs [T, B, F]; their logs when the
        engine asks for `log_space` and the cell has it."""
        with jax.named_scope("MinLSTMCell"):
            k_f, k_i, k_h = self._project(params, xs, _input_mask(dropout))
            log_space = log_space and self.log_space
            if log_space:
                d = jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i)  # log i - log f
                a = -jax.nn.softplus(d)  # log f'
                b = -jax.nn.softplus(-d) + log_g(k_h)  # log i' + log g(k_h)
            else:
                a, i = normalized_gates(k_f, k_i)
                b = i * self._candidate(k_h)
            return LinearRecurrence(a, b, states[0], readout=lambda h: h,
                                    final_states=lambda h, y: (h,), encode=lambda s: s[0],
                                    log_space=log_space)


# ----------------------------------------------------------------------------- LRU


class LRUState(NamedTuple):
    """The state of an `LRUCell`. The output comes first, so that a masked step repeats the
    last real output (Keras's rule: a masked step outputs the carried first state).

    Example:
      >>> import jaxrnn as jr
      >>> state = jr.LRUCell(4).get_initial_state(2)
      >>> isinstance(state, jr.LRUState), state.y.shape  # y: [B, H]
      (True, (2, 4))
    """

    y: Array  # [B, H] the last output, Re(C h) + D * x
    h_re: Array  # [B, N] real part of the complex hidden state
    h_im: Array  # [B, N] imaginary part of the complex hidden state


_cells.register_for_export(LRUState, "jaxrnn.LRUState")

_LRU_PARAMS = ("nu_log", "theta_log", "gamma_log", "B_re", "B_im", "C_re", "C_im", "D")


@_registry.register
@dataclasses.dataclass(frozen=True)
class LRUCell(Cell):
    """The Linear Recurrent Unit of Orvieto et al. (2023), "Resurrecting Recurrent Neural
    Networks for Long Sequences" (ICML 2023, arXiv:2303.06349).

    A complex diagonal linear recurrence with a stable exponential parameterisation,
    an input normalisation and a real output projection:

      lambda = exp(-exp(nu_log) + i exp(theta_log))          (|lambda| < 1 always)
      gamma = exp(gamma_log), initialised to sqrt(1 - |lambda|^2)
      h_t = lambda * h_{t-1} + gamma * (x_t @ (B_re + i B_im))        [B, N] complex
      y_t = Re(h_t @ (C_re + i C_im)) + D * x_t                       [B, H] real

    Ring initialisation: ``|lambda|`` uniform on the ring ``[r_min, r_max]`` of the complex
    plane (by area), phase uniform in ``[0, max_phase]``; ``B`` ~ N(0, 1/(2F)) and
    ``C`` ~ N(0, 1/N) per real and imaginary part, ``D`` ~ N(0, 1), as in the paper's code.
    Defaults are the paper's (``r_min=0, r_max=1, max_phase=6.28``); long-range tasks use
    e.g. ``r_min=0.9, r_max=0.999`` and a smaller ``max_phase``.

    ``D * x`` adds the input to the output, so the cell maps H features to H:
    ``input_dim`` must equal ``units`` (put another cell, e.g. a `MinGRUCell`, below it to
    change the width).

    States: ``LRUState(y [B, H], h_re [B, N], h_im [B, N])``; the output ``y`` comes first
    (Keras's masked step repeats the first state), in both modes. In the parallel mode the
    output of a masked step is gathered from the last real step.

    Params (input-major, like Keras kernels; the paper's ``B`` [N, F] and ``C`` [H, N] are
    their transposes): ``nu_log``, ``theta_log``, ``gamma_log`` [N]; ``B_re``, ``B_im`` [F, N];
    ``C_re``, ``C_im`` [N, H]; ``D`` [H]. ``dropout`` drops the inputs (one mask per
    sequence), in both ``B x`` and ``D x``.

    Args:
      units: H, the number of input and output features.
      state_dim: N, the complex state's size; default ``units``.
      r_min: the inner radius of the ring of ``|lambda|`` at init, ``0 <= r_min < r_max``.
      r_max: the outer radius of that ring, ``r_max <= 1``.
      max_phase: the largest phase of ``lambda`` at init, > 0.
      dropout: input dropout rate.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> from jaxrnn import LRUCell
      >>> layer = jr.RNN(LRUCell(6, state_dim=16), return_state=True)
      >>> params = layer.init(jax.random.key(0), (2, 50, 6))
      >>> y, state_y, h_re, h_im = layer(params, jnp.ones((2, 50, 6)))
      >>> y.shape, h_re.shape  # [B, H], [B, N]
      ((2, 6), (2, 16))
    """

    units: int
    state_dim: int | None = None
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 6.28
    dropout: float = 0.0

    _input_param = "B_re"  # [F, N]: its first axis is the input width

    def __post_init__(self):
        _cells._check_units(self.units, "LRUCell")
        super().__post_init__()
        n = self.state_dim
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
            raise ValueError(
                f"LRUCell: state_dim must be a positive int or None (= units); got {n!r}."
            )
        for name in ("r_min", "r_max", "max_phase"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"LRUCell: {name} must be a float; got {v!r}.")
        if not 0.0 <= self.r_min < self.r_max <= 1.0:
            raise ValueError(
                "LRUCell: the ring of eigenvalue magnitudes needs 0 <= r_min < r_max <= 1; got "
                f"r_min={self.r_min!r}, r_max={self.r_max!r}. E.g. r_min=0.9, r_max=0.999."
            )
        if self.max_phase <= 0:
            raise ValueError(
                f"LRUCell: max_phase must be > 0 (radians); got {self.max_phase!r}."
            )

    @property
    def n(self) -> int:
        """N, the size of the complex state."""
        return self.units if self.state_dim is None else self.state_dim

    @property
    def state_size(self) -> tuple[int, int, int]:
        return (self.units, self.n, self.n)

    def get_initial_state(self, batch_size: int, dtype=jnp.float32) -> LRUState:
        """Zero states ``LRUState(y=[B, H], h_re=[B, N], h_im=[B, N])``."""
        return LRUState(jnp.zeros((batch_size, self.units), dtype),
                        jnp.zeros((batch_size, self.n), dtype),
                        jnp.zeros((batch_size, self.n), dtype))

    # --- params --------------------------------------------------------------------

    def param_shapes(self, input_dim: int) -> dict[str, tuple[int, ...]]:
        n, h = self.n, self.units
        return {"nu_log": (n,), "theta_log": (n,), "gamma_log": (n,),
                "B_re": (input_dim, n), "B_im": (input_dim, n),
                "C_re": (n, h), "C_im": (n, h), "D": (h,)}

    def _check_width(self, input_dim: int, who: str) -> None:
        if input_dim != self.units:
            raise ValueError(
                f"{who}: the LRU's output y = Re(C h) + D * x adds the input to the output, so "
                f"input_dim must equal units={self.units}; got input_dim={input_dim}. Change "
                "the width first, e.g. stack a MinGRUCell(units) below the LRUCell."
            )

    def init(self, key: Array, input_dim: int, dtype=jnp.float32) -> dict[str, Array]:
        """Creates the params with the paper's ring initialisation (see the class docstring)."""
        if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim <= 0:
            raise ValueError(
                "LRUCell.init: input_dim must be a positive int (the number of input features "
                f"F); got {input_dim!r}."
            )
        self._check_width(input_dim, "LRUCell.init")
        n, h, f32 = self.n, self.units, jnp.float32
        k = jax.random.split(key, 7)
        tiny = jnp.finfo(f32).tiny
        u1 = jax.random.uniform(k[0], (n,), f32)
        u2 = jax.random.uniform(k[1], (n,), f32, minval=tiny)
        r2 = jnp.maximum(u1 * (self.r_max ** 2 - self.r_min ** 2) + self.r_min ** 2, tiny)
        nu_log = jnp.log(-0.5 * jnp.log(r2))  # |lambda| = exp(-exp(nu_log)) = sqrt(r2)
        theta_log = jnp.log(self.max_phase * u2)
        # gamma = sqrt(1 - |lambda|^2), with |lambda|^2 = exp(-2 exp(nu_log)).
        gamma_log = 0.5 * jnp.log(-jnp.expm1(-2 * jnp.exp(nu_log)))
        params = {
            "nu_log": nu_log,
            "theta_log": theta_log,
            "gamma_log": gamma_log,
            "B_re": jax.random.normal(k[2], (input_dim, n), f32) / math.sqrt(2 * input_dim),
            "B_im": jax.random.normal(k[3], (input_dim, n), f32) / math.sqrt(2 * input_dim),
            "C_re": jax.random.normal(k[4], (n, h), f32) / math.sqrt(n),
            "C_im": jax.random.normal(k[5], (n, h), f32) / math.sqrt(n),
            "D": jax.random.normal(k[6], (h,), f32),
        }
        return {name: params[name].astype(dtype) for name in _LRU_PARAMS}

    def check_params(self, params: Any, input_dim: int | None = None) -> int:
        """Checks params' keys and shapes; returns their input_dim F (= units)."""
        f = super().check_params(params, input_dim)
        self._check_width(f, "LRUCell")
        return f

    # --- math ----------------------------------------------------------------------

    @staticmethod
    def _eigenvalues(params) -> tuple[Array, Array]:
        """``(Re lambda, Im lambda)`` [N] from ``nu_log``, ``theta_log``."""
        magnitude = jnp.exp(-jnp.exp(params["nu_log"]))
        phase = jnp.exp(params["theta_log"])
        return magnitude * jnp.cos(phase), magnitude * jnp.sin(phase)

    @staticmethod
    def _drop(x: Array, dropout: Any) -> Array:
        x_mask = _input_mask(dropout)
        if x_mask is None:
            return x
        return x * x_mask.reshape((1,) * (x.ndim - 2) + x_mask.shape)

    def _input_terms(self, params, x) -> tuple[Array, Array]:
        """``gamma * (x @ B)`` as (real, imaginary) parts, for x [..., F]."""
        gamma = jnp.exp(params["gamma_log"])
        gamma = gamma.reshape((1,) * (x.ndim - 1) + gamma.shape)
        b = jnp.concatenate([params["B_re"], params["B_im"]], axis=1)  # [F, 2N]: one matmul
        bu = _cells.dense(x, b) * jnp.concatenate([gamma, gamma], axis=-1)
        return bu[..., :self.n], bu[..., self.n:]

    def _output(self, params, x, h_re, h_im) -> Array:
        """``Re(h @ C) + D * x`` for x [..., H] and h [..., N]."""
        d = params["D"].reshape((1,) * (x.ndim - 1) + (-1,))
        c = jnp.concatenate([params["C_re"], -params["C_im"]], axis=0)  # [2N, H]: one matmul
        return _cells.dense(jnp.concatenate([h_re, h_im], axis=-1), c) + d * x

    def step(self, params, inputs, states, masks=None):
        """One step with dropout masks from `dropout_masks` (no checks); real arithmetic."""
        with jax.named_scope("LRUCell"):
            _, h_re, h_im = states
            x = self._drop(inputs, masks)
            lam_re, lam_im = self._eigenvalues(params)
            lam_re, lam_im = lam_re[None, :], lam_im[None, :]
            bu_re, bu_im = self._input_terms(params, x)
            h_re, h_im = (lam_re * h_re - lam_im * h_im + bu_re,
                          lam_re * h_im + lam_im * h_re + bu_im)
            y = self._output(params, x, h_re, h_im)
            return y, LRUState(y, h_re, h_im)

    def linear_recurrence(self, params, xs, states, dropout=None, *,
                          log_space=False) -> LinearRecurrence:
        """``a_t = lambda``, ``b_t = gamma * (x_t @ B)`` (complex) for xs [T, B, F].

        There is no log-space form (the terms are complex); `log_space` is ignored. With a
        symbolic T (`jax.export`, ONNX) the complex numbers come as (real, imaginary) pairs
        of real arrays (``LinearRecurrence.pairs``): ONNX runtimes have no complex arithmetic,
        and the jit path keeps the complex solver and its hand-written backward pass."""
        del log_space
        with jax.named_scope("LRUCell"):
            dtype = xs.dtype
            real = jnp.promote_types(dtype, jnp.float32)  # no complex half precision
            pairs = static_size(xs.shape[0]) is None
            make = (lambda re, im: (re, im)) if pairs else jax.lax.complex
            parts = (lambda h: h) if pairs else (lambda h: (jnp.real(h), jnp.imag(h)))
            params = jax.tree.map(lambda p: p.astype(real), params)
            x = self._drop(xs, dropout).astype(real)
            lam_re, lam_im = self._eigenvalues(params)
            a = make(lam_re[None, None, :], lam_im[None, None, :])  # [1, 1, N]: every step's
            # gamma * (x @ B) as one real product with B's real and imaginary columns
            # interleaved: its [T, B, 2N] result is read pairwise into complex numbers.
            # (`step` keeps `_input_terms`/`_output`: at one step's [B, *] size their
            # concatenated layout measured faster, 3.3 against 3.7-4.0 ms at T=256.)
            n = self.n
            gamma = jnp.exp(params["gamma_log"])[None, None, :]
            b_int = jnp.stack([params["B_re"], params["B_im"]], axis=-1).reshape(-1, 2 * n)
            bu = _cells.dense(x, b_int).reshape(x.shape[:-1] + (n, 2))
            b = make(bu[..., 0] * gamma, bu[..., 1] * gamma)  # [T, B, N]

            def encode(states):
                _, h_re, h_im = states
                return make(h_re.astype(real), h_im.astype(real))

            # Re(h @ C) = [Re h, Im h] @ [C_re; -C_im], rows interleaved like h's memory.
            c_int = jnp.stack([params["C_re"], -params["C_im"]], axis=1).reshape(2 * n, -1)

            def readout(h):
                h_int = jnp.stack(parts(h), axis=-1)
                y = _cells.dense(h_int.reshape(h_int.shape[:-2] + (2 * n,)), c_int)
                return (y + params["D"][None, None, :] * x).astype(dtype)

            def final_states(h, y):
                h_re, h_im = parts(h)
                return LRUState(y.astype(dtype), h_re.astype(dtype), h_im.astype(dtype))

            return LinearRecurrence(a, b, encode(states), readout=readout,
                                    final_states=final_states, encode=encode,
                                    readout_is_state=False, pairs=pairs)
