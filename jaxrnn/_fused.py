"""Fused LSTM and GRU time loops with a hand-written backward pass.

`RNN` takes this path by default for `LSTMCell`, `GRUCell` (both ``reset_after``
variants) and `StackedRNNCells` made only of those two. It returns exactly what the
generic `jaxrnn._scan.scan_rnn` returns (Keras 3's masking, `go_backwards`,
`zero_output_for_mask`, dropout and recurrent dropout, any `unroll`), to float32 rounding,
and so do its gradients. What makes it fast on XLA CPU:

* Training: the input projection ``x_t @ kernel + bias`` of every step is one
  [T*B, F] x [F, k*H] matmul before the loop; the loop does only ``h @ recurrent_kernel``
  and the gate math.
* Under differentiation the LSTM's gates are permuted once, outside the loop, from Keras's
  ``(i, f, c, o)`` to ``(i, f, o | c)`` so that one `recurrent_activation` covers a
  contiguous [B, 3H] block (GRU's ``(z, r | h)`` already is). The permutation happens inside
  the core's jvp rule, so inference never copies the weights; it is undone on the gradients
  by JAX's transpose of the column gather.
* A hand-written backward loop: the forward loop saves the activated gates, ``act(c)`` and
  the entering ``c`` (LSTM) or the reset-gated recurrent part (GRU); the backward loop
  computes only the per-step gate gradients and ``dz @ recurrent_kernelᵀ`` (the transpose
  taken once, outside the loop); ``dU = Σ_t h_{t-1}ᵀ dz_t``, ``dW``, ``db`` and ``dx`` are
  single 2-D matmuls after it. Every mode of autodiff works (see "Forward and reverse mode"
  below).
* The projected LSTM (``proj_size=P``, PyTorch's): the step ends with
  ``h = (o * act(c)) @ projection`` [B, P]; the backward loop adds one ``dh @ projectionᵀ``
  per step, and ``d projection = Σ_t (o_t * act(c_t))ᵀ dh_t`` is one matmul after it, from
  the saved gates (nothing more is saved).
* Inference pays for no residuals: without differentiation JAX runs the core's primal
  function, a loop that projects each step's input itself (no [T, B, k*H] buffer) and
  stacks only the outputs it must return.
* The backward and tangent loops fetch step t's inputs in step t-1 (see `_scan`): XLA CPU
  otherwise fuses the per-step slice into the gate-math fusion, which then runs 2-3x
  slower. The forward loops, whose step input is added to the matmul's output, do not.
* Masks are `jnp.where` inside the loops (a masked step passes its gradient straight to the
  carried state); so are resets (a reset step sends the gradient of its entering state to
  the reset state, accumulated in the backward loop's carry). Without resets the loops are
  exactly the reset-free ones.
* Long sequences: above the layer's ``remat_threshold`` bytes of residuals (or with
  ``remat=True`` / an int),
  the sequence is cut into segments run under `jax.checkpoint`: the forward keeps only the
  states at segment boundaries, and the backward recomputes one segment at a time (the input
  projection included), so memory is O(T/k + k) steps instead of O(T).

Activations: ``"tanh"`` and ``"sigmoid"`` take their derivative from the saved activated
value. Any other activation (a name or a callable) saves the pre-activation instead and
differentiates it with `jax.vjp` in the backward loop; an activation that is not known to
be elementwise (``"softmax"``, any user callable) is applied gate by gate on [B, H] blocks,
exactly as the cells do. Nothing supported falls back to the generic scan.

Forward and reverse mode: each core is a `jax.custom_jvp`. Its tangent is the solution of a
block lower-triangular linear system, one block per step: the unknowns of step t are the
tangents of its pre-activations and of the states it leaves, and the right-hand side holds
everything that comes from outside the loop (the tangents of the inputs, kernels, biases,
initial and reset states, folded in by single large matmuls). `jax.lax.custom_linear_solve`
solves it:

* `jax.jvp`, `jax.jacfwd`, `jax.linearize`: a forward tangent loop (``solve``);
* `jax.grad` and `jax.vjp` transpose the solve, and the transpose is the hand-written backward
  loop above (``transpose_solve``: the ``_*_adjoint`` functions), never autodiff of the
  forward loop; the gradients of the weights are JAX's transposes of the right-hand side's
  matmuls (the same single matmuls as before);
* second order (``jax.jvp(jax.grad(f))``, `jax.hessian`) differentiates the solve implicitly
  through ``matvec``, the system's loop-free operator, and `jax.vmap` batches all of it.

The pre-activations' block is the right-hand side's own (an identity block; the recurrent
term is part of the states' equations), so the backward loop never reads a cotangent of it:
without that, every training step would stream a [T, B, k*H] array of zeros through the
loop.

Where this path is *not* taken (the layer runs the generic scan instead): cells other than
`LSTMCell`/`GRUCell` or their subclasses, stacks containing any other cell, and
``RNN(..., fused=False)``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxrnn import _cells, _resolve
from jaxrnn._loop import (
    LoopOptions,
    auto_segment,
    reset_where,
    run_layerwise,
    segment_length,
    segmented,
    static_size,
)

Array = jax.Array

def supports(cell: Any) -> bool:
    """Whether `fused_rnn` can run `cell`: an `LSTMCell`, a `GRUCell`, or a stack of them."""
    if type(cell) in (_cells.LSTMCell, _cells.GRUCell):
        return True
    if type(cell) is _cells.StackedRNNCells:
        return all(type(c) in (_cells.LSTMCell, _cells.GRUCell) for c in cell.cells)
    return False


# ----------------------------------------------------------------------------- activations

_ELEMENTWISE = frozenset(id(fn) for name, fn in _resolve.ACTIVATIONS.items()
                         if name != "softmax")


@dataclasses.dataclass(frozen=True)
class _Act:
    """An activation applied to a block of `k` gates, with its derivative.

    ``res`` is what the forward loop saves: the activated value for tanh and sigmoid
    (their derivatives are functions of it), else the pre-activation.
    """

    fn: Callable[[Array], Array]
    kind: str  # "tanh", "sigmoid" or "generic"
    elementwise: bool

    @classmethod
    def of(cls, spec: Any) -> _Act:
        fn = _resolve.activation(spec)
        kind = "tanh" if fn is jnp.tanh else "sigmoid" if fn is jax.nn.sigmoid else "generic"
        return cls(fn, kind, id(fn) in _ELEMENTWISE)

    def __call__(self, z: Array, k: int) -> Array:
        if self.elementwise or k == 1:
            return self.fn(z)
        return jnp.concatenate([self.fn(p) for p in jnp.split(z, k, axis=-1)], axis=-1)

    def res(self, z: Array, y: Array) -> Array:
        return z if self.kind == "generic" else y

    def value(self, res: Array, k: int) -> Array:
        return self(res, k) if self.kind == "generic" else res

    def jvp(self, res: Array, dz: Array, k: int) -> Array:
        """The tangent of the activated value, given the saved `res` and the pre-activation's
        tangent `dz` (for an elementwise activation the same product as `grad`)."""
        if self.kind == "tanh":
            return dz * (1 - res * res)
        if self.kind == "sigmoid":
            return dz * (res * (1 - res))
        return jax.jvp(lambda z: self(z, k), (res,), (dz,))[1]

    def grad(self, res: Array, dy: Array, k: int) -> Array:
        """The gradient wrt the pre-activation, given the saved `res` and dL/dy."""
        if self.kind == "tanh":
            return dy * (1 - res * res)
        if self.kind == "sigmoid":
            return dy * (res * (1 - res))
        _, vjp = jax.vjp(lambda z: self(z, k), res)
        return vjp(dy)[0]


@dataclasses.dataclass(frozen=True)
class _Config:
    """Static options of one core loop (hashable: a `custom_jvp` nondiff argument)."""

    rec: _Act
    act: _Act
    seq: bool  # return the outputs of every step, else only the final states
    unroll: int | bool


# ----------------------------------------------------------------------------- projections


def _plus_bias(z_t: Array, bias: Array | None) -> Array:
    """One step's projection [B, G*H] plus the bias [G*H], or the projection (no bias).

    The forward loops of differentiation project every step's inputs before the loop
    (`_in_proj`) but add the bias inside it, where the add joins the step's gate fusion.
    Added to the [T, B, G*H] projection it is a pass of its own (XLA CPU does not fuse it
    into the matmul) and a second buffer of that size. Measured at B, T, F, H = 256, 64,
    128, 512, the training step's temporaries were 19% (LSTM) and 13% (GRU) larger that
    way, and the step took 0.96-1.08x the time it takes with the bias in the loop.
    """
    return z_t if bias is None else z_t + bias[None, :]


def _step_proj(x_t: Array, w: Array, b: Array | None, xm: Array | None, k: int) -> Array:
    """One step's input projection, as the generic cell computes it (inference path)."""
    return _plus_bias(_cells.project(x_t, w, xm, k), b)


def _in_proj(x: Array, w: Array, bias: Array | None, mask: Array | None, k: int) -> Array:
    """``(x * mask) @ w + bias`` for all steps: x [T, B, F], mask None, [B, F] or [k, B, F]."""
    if mask is None:
        return _cells.dense(x, w, bias)
    if mask.ndim == 2:
        return _cells.dense(x * mask[None], w, bias)
    kh = w.shape[1] // k
    return jnp.concatenate([_cells.dense(x * mask[j][None], w[:, j * kh:(j + 1) * kh],
                                         None if bias is None else bias[j * kh:(j + 1) * kh])
                            for j in range(k)], axis=-1)


def _rec_proj_t(dz: Array, ut: Array, hm: Array | None, k: int) -> Array:
    """The transpose of `_cells.project` wrt h, given ``ut = uᵀ``: [B, k*H'] -> [B, H]."""
    if hm is None:
        return dz @ ut
    if hm.ndim == 2:
        return (dz @ ut) * hm
    d = jnp.einsum("bkj,kjh->kbh", dz.reshape(dz.shape[0], k, -1), ut.reshape(k, -1, ut.shape[1]))
    return jnp.sum(d * hm, axis=0)


def _prev(first: Array, seq: Array) -> Array:
    """The states entering each step: [first, seq[0], ..., seq[T-2]]."""
    return jnp.concatenate([first[None], seq[:-1]], axis=0)


def _masked(keep: Array | None, new: Array, old: ArrayLike) -> Array:
    return new if keep is None else jnp.where(keep, new, old)


def _cut(r_t: Array | None, d: Array) -> Array:
    """A tangent (or cotangent) of the carried state, cut where the step was reset."""
    return d if r_t is None else jnp.where(r_t[..., None], jnp.zeros((), d.dtype), d)


def _scan(body, init, xs, cfg: _Config, reverse: bool = False, prefetch: bool = True):
    """`lax.scan(body, init, xs)` that fetches each step's inputs one step ahead.

    XLA CPU fuses a scan's per-step ``dynamic-slice`` of `xs` into the elementwise fusion
    that consumes it, and that fusion then runs 2-3x slower (measured: a GRU step at B=8,
    H=128 took 17 us instead of 6). Here step t's inputs arrive in the carry, sliced by
    step t-1 as a loop output of their own, so the gate math reads dense buffers.
    ``prefetch=False`` is the plain scan, for loops whose step inputs meet the recurrent
    matmul's output (the inference and the differentiated forward loops): there the
    prefetch buys nothing and costs copies a step (the forward loops of training measured
    0.87-1.01x the prefetched ones' time, the batch-1 shapes gaining most).
    """
    if not prefetch:
        return lax.scan(body, init, xs, reverse=reverse, unroll=cfg.unroll)
    t = jax.tree.leaves(xs)[0].shape[0]
    first, step = (t - 1, -1) if reverse else (0, 1)

    def fetch(i):
        return jax.tree.map(lambda a: lax.dynamic_index_in_dim(a, i, keepdims=False), xs)

    def wrapped(carry, _):
        c, cur, i = carry
        nxt = fetch(jnp.clip(i + step, 0, t - 1))
        c, y = body(c, cur)
        return (c, nxt, i + step), y

    if static_size(t) is None:  # a symbolic T (jax.export, ONNX)
        # The first index is an array (no Python comparison with a symbolic size), and the
        # scan's length comes from an input's leading axis (not jnp.arange(T), which
        # exporters such as jax2onnx size with a placeholder).
        i0 = jnp.asarray(first, jnp.int32)
        (c, _, _), ys = lax.scan(wrapped, (init, fetch(i0), i0), jax.tree.leaves(xs)[0],
                                 reverse=reverse, unroll=cfg.unroll)
    else:
        init = (init, fetch(first), jnp.asarray(first, jnp.int32))
        (c, _, _), ys = lax.scan(wrapped, init, None, length=t, reverse=reverse,
                                 unroll=cfg.unroll)
    return c, ys


# ----------------------------------------------------------------------------- tangents
#
# Differentiation of a core (see "Forward and reverse mode" in the module docstring). The
# tangent of the loop solves a block lower-triangular linear system, packed along the last
# axis into [T, B, *] arrays: per step t the unknowns x_t = [q_t | dh_t (| dc_t)] and the
# right-hand side s_t = [s^z_t | s^h_t (| s^c_t)]. q_t = s^z_t (an identity block) is the
# tangent of the pre-activations that comes from outside the loop: the inputs, kernels and
# biases, and where they enter, the initial and reset states (s^h, s^c hold the rest of
# those). The states' equations add the recurrent term P(dh_{t-1}) (cut at resets) to q_t
# and apply the step's Jacobian, masks included. `jax.lax.custom_linear_solve` solves it
# forwards with a tangent loop (`jax.jvp`), its transpose with the hand-written backward loop
# (`jax.grad`), and differentiates it implicitly through `matvec` (loop-free: x_t against
# the step's equations given x_{t-1}) for second order.


def _tangent(t: Any) -> Any:
    """A tangent argument, None where it is a symbolic zero."""
    return None if type(t) is jax.custom_derivatives.SymbolicZero else t


def _add(*terms: Array | None) -> Array | None:
    """The sum of the terms that are not None (None if all are)."""
    out = None
    for a in terms:
        if a is not None:
            out = a if out is None else out + a
    return out


def _cols(a: Array | None, lo: int, hi: int) -> Array | None:
    return None if a is None else a[..., lo:hi]


def _first(v: Array, t: Any) -> Array:
    """[B, ...] -> [T, B, ...]: `v` at step 0, zeros after."""
    return jnp.concatenate([v[None], jnp.zeros((t - 1, *v.shape), v.dtype)], axis=0)


def _exogenous(d0: Array | None, dr: Array | None, reset: Array | None, t: Any):
    """The part of each step's entering-state tangent that comes from outside the loop:
    `d0` (the initial state's) at step 0, `dr` (the reset state's) at reset steps. [T, B, X]
    or None when it is zero."""
    base = None if d0 is None else _first(d0, t)
    if reset is None or (dr is None and base is None):
        return base
    r = reset[:, :, None]
    if dr is None:
        assert base is not None
        return jnp.where(r, jnp.zeros((), base.dtype), base)
    return jnp.where(r, dr[None], jnp.zeros((), dr.dtype) if base is None else base)


def _proj_tangent(x, w, xm, k, dx, dw, db) -> Array | None:
    """The tangent of ``_in_proj(x, w, b, xm, k)`` (bilinear in x and (w, b)), or None."""
    return _add(None if dx is None else _in_proj(dx, w, None, xm, k),
                None if dw is None else _in_proj(x, dw, db, xm, k),
                None if db is None or dw is not None else
                jnp.broadcast_to(db, (*x.shape[:-1], db.shape[-1])))


def _project_or_none(h: Array | None, u: Array, hm: Array | None, k: int) -> Array | None:
    return None if h is None else _cells.project(h, u, hm, k)


def _linear_solve(parts: list, widths: tuple[int, ...], dtype, matvec, solve, transpose_solve):
    """Solves the tangent system for the right-hand side whose blocks (along the last axis)
    are `parts` (None: zero); returns the packed solution, or None when the right-hand side is
    zero. The blocks are packed into one array so that it is linear in the tangents as soon as
    any block is (`jax.lax.custom_linear_solve` transposes only linear right-hand sides)."""
    if all(p is None for p in parts):
        return None
    lead = next(p for p in parts if p is not None).shape[:-1]
    rhs = jnp.concatenate([jnp.zeros((*lead, w), dtype) if p is None else p.astype(dtype)
                           for p, w in zip(parts, widths)], axis=-1)
    return lax.custom_linear_solve(matvec, rhs, solve=lambda _, s: solve(s),
                                   transpose_solve=lambda _, g: transpose_solve(g))


def _split(a: Array, widths: tuple[int, ...]) -> list[Array]:
    out, lo = [], 0
    for w in widths:
        out.append(a[..., lo:lo + w])
        lo += w
    return out


def _shift(seq: Array) -> Array:
    """The tangents entering each step from the previous one: [0, seq[0], ..., seq[T-2]]."""
    return _prev(jnp.zeros_like(seq[0]), seq)


# ----------------------------------------------------------------------------- LSTM core
#
# `_lstm_core` takes Keras's gate order (i, f, c, o); its jvp rule permutes the kernels,
# bias and dropout masks to (i, f, o | g) once (`_to_fused_order`), and everything it calls
# (`_lstm_core_fwd`, the tangent and adjoint loops) works in that order: one
# recurrent_activation over [B, 3H], one activation over [B, H]. zx [T, B, 4H] is the input
# projection with the bias; u [P, 4H]; r [H, P] the projected LSTM's projection
# (h = (o * act(c)) @ r, h [B, P]), or None (P = H).


def _proj(m: Array, r: Array | None) -> Array:
    """The projected LSTM's ``m @ r`` over the last axis (any leading axes), or `m`."""
    return m if r is None else _cells.dense(m, r)


def _lstm_step(cfg: _Config, u, r, hm, h, c, zx_t, m_t):
    n = c.shape[-1]
    z = zx_t + _cells.project(h, u, hm, 4)
    zs, zg = z[:, :3 * n], z[:, 3 * n:]
    s = cfg.rec(zs, 3)
    g = cfg.act(zg, 1)
    c_new = s[:, n:2 * n] * c + s[:, :n] * g
    tc = cfg.act(c_new, 1)
    h_new = _proj(s[:, 2 * n:] * tc, r)
    keep = None if m_t is None else m_t[:, None]
    # Saving act(c) costs a [B, H] store but spares the backward loop its costliest op.
    res = jnp.concatenate([cfg.rec.res(zs, s), cfg.act.res(zg, g), cfg.act.res(c_new, tc)],
                          axis=-1)
    return _masked(keep, h_new, h), _masked(keep, c_new, c), res


def _entering(first: Array, seq: Array, reset: Array | None, rs: Any) -> Array:
    """The states entering each step, after the resets: [T, B, H]."""
    prev = _prev(first, seq)
    return prev if reset is None else jnp.where(reset[:, :, None], rs[None], prev)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _lstm_core(cfg: _Config, x, w, b, u, r, h0, c0, mask, xm, hm, reset, hr, cr):
    # Inference: the projection inside the loop, as the generic scan does (a [T, B, 4H]
    # buffer of projections measured slower than projecting step by step when nothing
    # needs it afterwards), and no residuals.
    def body(carry, inp):
        x_t, m_t, r_t = inp
        h, c = reset_where(r_t, (hr, cr), carry)
        n = c.shape[-1]
        z = _step_proj(x_t, w, b, xm, 4) + _cells.project(h, u, hm, 4)
        # Gate by gate, as the generic cell does: XLA then fuses each activation into the
        # op that consumes it (one [B, 3H] sigmoid block would be a buffer of its own).
        i, f, o = (cfg.rec(z[:, j * n:(j + 1) * n], 1) for j in (0, 1, 3))  # Keras order
        c_new = f * c + i * cfg.act(z[:, 2 * n:3 * n], 1)
        keep = None if m_t is None else m_t[:, None]
        h = _masked(keep, _proj(o * cfg.act(c_new, 1), r), h)
        c = _masked(keep, c_new, c)
        return (h, c), (h if cfg.seq else None)

    (h, c), hs = _scan(body, (h0, c0), (x, mask, reset), cfg, prefetch=False)
    return (hs, h, c) if cfg.seq else (h, c)


def _lstm_core_fwd(cfg: _Config, x, w, b, u, r, h0, c0, mask, xm, hm, reset, hr, cr):
    """The forward loop of differentiation: the outputs, and per step the activated gates,
    ``act(c)`` and the entering ``c``."""
    zx = _in_proj(x, w, None, xm, 4)

    def body(carry, inp):
        zx_t, m_t, r_t = inp
        h, c = reset_where(r_t, (hr, cr), carry)
        h_new, c_new, res = _lstm_step(cfg, u, r, hm, h, c, _plus_bias(zx_t, b), m_t)
        return (h_new, c_new), (h_new, c, res)

    (h, c), (hs, cprev, res) = _scan(body, (h0, c0), (zx, mask, reset), cfg, prefetch=False)
    return ((hs, h, c) if cfg.seq else (h, c)), (res, cprev, hs)


class _LSTMGates:
    """The activated gates of every step, from the forward loop's residuals."""

    def __init__(self, cfg: _Config, res: Array):
        n = res.shape[-1] // 5
        self.rs, self.rg, self.rc = res[..., :3 * n], res[..., 3 * n:4 * n], res[..., 4 * n:]
        s = cfg.rec.value(self.rs, 3)
        self.i, self.f, self.o = s[..., :n], s[..., n:2 * n], s[..., 2 * n:]
        self.g = cfg.act.value(self.rg, 1)
        self.tc = cfg.act.value(self.rc, 1)


def _lstm_tangents(cfg: _Config, gates: _LSTMGates, cp, keep, dz, dh_in, dc_in, sc, r):
    """A step's state tangents from its pre-activation tangent `dz`, the tangents of the
    entering states and the right-hand side's c block `sc` (None: zero): ``(dc, dh - sh)``,
    where ``dh - sh`` depends on the right-hand side only through ``dc``."""
    n = dc_in.shape[-1]
    ds = cfg.rec.jvp(gates.rs, dz[..., :3 * n], 3)
    dg = cfg.act.jvp(gates.rg, dz[..., 3 * n:], 1)
    dc = gates.f * dc_in + cp * ds[..., n:2 * n] + gates.g * ds[..., :n] + gates.i * dg
    dc = _masked(keep, dc, dc_in)
    if sc is not None:
        dc = dc + sc
    dh = _proj(gates.o * cfg.act.jvp(gates.rc, dc, 1) + gates.tc * ds[..., 2 * n:], r)
    return dc, _masked(keep, dh, dh_in)


_MaybeArray = TypeVar("_MaybeArray", Array, None)


def _to_fused_order(a: _MaybeArray, axis: int = -1) -> _MaybeArray:
    """Keras's gate order (i, f, c, o) -> (i, f, o, c) along `axis` (None and a per-sample
    dropout mask, which has no gate axis, pass through)."""
    if a is None or (axis == 0 and a.ndim != 3):
        return a
    i, f, g, o = jnp.split(a, 4, axis=axis)
    return jnp.concatenate([i, f, o, g], axis=axis)


def _lstm_core_jvp(cfg: _Config, primals, tangents):
    x, w, b, u, r, h0, c0, mask, xm, hm, reset, hr, cr = primals
    dx, dw, db, du, dr, dh0, dc0, _, _, _, _, dhr, dcr = map(_tangent, tangents)
    # The loops below want the gates in the order (i, f, o | g); their transposes undo it.
    w, b, u, dw, db, du = map(_to_fused_order, (w, b, u, dw, db, du))
    xm, hm = _to_fused_order(xm, axis=0), _to_fused_order(hm, axis=0)
    primals = x, w, b, u, r, h0, c0, mask, xm, hm, reset, hr, cr
    out, (res, cprev, hs) = _lstm_core_fwd(cfg, *primals)
    t, n = x.shape[0], c0.shape[-1]
    keep = None if mask is None else mask[:, :, None]
    widths = (4 * n, h0.shape[-1], n)
    gates = _LSTMGates(cfg, res)

    # The right-hand side: [z | h | c] blocks.
    eh, ec = _exogenous(dh0, dhr, reset, t), _exogenous(dc0, dcr, reset, t)
    sz = _add(_proj_tangent(x, w, xm, 4, dx, dw, db),
              None if du is None else _in_proj(_entering(h0, hs, reset, hr), du, None, hm, 4),
              _exogenous(_project_or_none(dh0, u, hm, 4), _project_or_none(dhr, u, hm, 4),
                         reset, t))
    sh = None if eh is None or keep is None else jnp.where(keep, jnp.zeros((), eh.dtype), eh)
    if dr is not None:  # h = m @ r: the projection's own tangent, m @ dr, where a step runs
        sh = _add(sh, _masked(keep, _cells.dense(gates.o * gates.tc, dr), 0))
    sc = None if ec is None else ec * _masked(keep, gates.f, 1)

    def matvec(xv):
        q, dh, dc = _split(xv, widths)
        dh_in, dc_in = _cut(reset, _shift(dh)), _cut(reset, _shift(dc))
        dz = q + _in_proj(dh_in, u, None, hm, 4)
        # c's equation without its right-hand side; h's reads the unknown dc itself.
        nc, _ = _lstm_tangents(cfg, gates, cprev, keep, dz, dh_in, dc_in, None, r)
        n_h = _masked(keep, _proj(gates.o * cfg.act.jvp(gates.rc, dc, 1) + gates.tc *
                                  cfg.rec.jvp(gates.rs, dz[..., :3 * n], 3)[..., 2 * n:], r),
                      dh_in)
        return jnp.concatenate([q, dh - n_h, dc - nc], axis=-1)

    def solve(rhs):
        def body(carry, inp):
            s_t, res_t, cp, m_t, r_t = inp
            dh_in, dc_in = _cut(r_t, carry[0]), _cut(r_t, carry[1])
            sz_t, sh_t, sc_t = _split(s_t, widths)
            dz = sz_t + _cells.project(dh_in, u, hm, 4)
            dc, dh = _lstm_tangents(cfg, _LSTMGates(cfg, res_t), cp,
                                    None if m_t is None else m_t[:, None], dz, dh_in, dc_in,
                                    sc_t, r)
            dh = dh + sh_t
            return (dh, dc), (dh, dc)

        zeros = (jnp.zeros_like(h0), jnp.zeros_like(c0))
        dh, dc = _scan(body, zeros, (rhs, res, cprev, mask, reset), cfg)[1]
        return jnp.concatenate([rhs[..., :4 * n], dh, dc], axis=-1)

    tx = _linear_solve([sz, sh, sc], widths, res.dtype, matvec, solve,
                       functools.partial(_lstm_adjoint, cfg, res, cprev, u, r, hm, mask,
                                         reset))
    if tx is None:
        return out, jax.tree.map(jnp.zeros_like, out)
    _, th, tc = _split(tx, widths)
    return out, ((th, th[-1], tc[-1]) if cfg.seq else (th[-1], tc[-1]))


def _lstm_adjoint(cfg: _Config, res, cprev, u, r, hm, mask, reset, ct):
    """The backward loop: the transpose of the tangent system's solve. Given the cotangents
    of the unknowns `ct` [T, B, 4H + P + H] (in the states' blocks, the layer's output
    cotangents; P = H without a projection `r`), returns those of the right-hand side,
    ``[dz | dh | dc]`` per step: ``dz`` [4H], the pre-activations' gradient (whence the
    kernels', biases' and inputs' gradients, as single matmuls), is the loop's plus `ct`'s
    own q block, added after the loop."""
    n = cprev.shape[-1]
    p = n if r is None else r.shape[1]
    rec, act = cfg.rec, cfg.act
    ut = u.T  # transposed once: [4H, H] @ in the loop is faster than a transposed dot
    rt = None if r is None else r.T
    # The states' cotangents in one buffer: one fetch per step (the c part is zero but at
    # the last step in first-order differentiation).
    ctq, cts = ct[..., :4 * n], ct[..., 4 * n:]

    def body(carry, inp):
        dh, dc = carry
        cts_t, res_t, cp, m_t, r_t = inp
        dh = dh + cts_t[:, :p]
        s = rec.value(res_t[:, :3 * n], 3)
        g = act.value(res_t[:, 3 * n:4 * n], 1)
        tc = act.value(res_t[:, 4 * n:], 1)
        i, f, o = s[:, :n], s[:, n:2 * n], s[:, 2 * n:]
        keep = None if m_t is None else m_t[:, None]
        dh_c = _masked(keep, dh, 0)
        dm = dh_c if rt is None else dh_c @ rt  # the gradient wrt o * act(c)
        dc = dc + cts_t[:, p:] + act.grad(res_t[:, 4 * n:], dm * o, 1)
        dc_c = _masked(keep, dc, 0)
        ds = jnp.concatenate([dc_c * g, dc_c * cp, dm * tc], axis=-1)
        dz = jnp.concatenate([rec.grad(res_t[:, :3 * n], ds, 3),
                              act.grad(res_t[:, 3 * n:4 * n], dc_c * i, 1)], axis=-1)
        dh_prev = _rec_proj_t(dz, ut, hm, 4)
        dc_prev = dc_c * f
        if keep is not None:
            dh_prev = dh_prev + jnp.where(keep, 0, dh)
            dc_prev = jnp.where(keep, dc_prev, dc)
        return (_cut(r_t, dh_prev), _cut(r_t, dc_prev)), (dz, dh, dc)

    zero = jnp.zeros_like(cprev[0])
    zero_h = zero if r is None else jnp.zeros((zero.shape[0], p), zero.dtype)
    _, (dz, dh, dc) = _scan(body, (zero_h, zero), (cts, res, cprev, mask, reset), cfg,
                            reverse=True)
    return jnp.concatenate([ctq + dz, dh, dc], axis=-1)


_lstm_core.defjvp(_lstm_core_jvp, symbolic_zeros=True)


# ----------------------------------------------------------------------------- GRU cores
#
# reset_after=True: zx [T, B, 3H] holds x @ W + input bias + the z, r part of the recurrent
# bias; rb [H] (or None) is the h part of the recurrent bias, added inside r * (h U_h + rb).
# The tangent system's unknowns per step: [z, r | n] pre-activations (3H), h (H).


def _gru_step(cfg: _Config, u, rb, hm, h, zx_t, m_t):
    n = h.shape[-1]
    hz = _cells.project(h, u, hm, 3)
    zr_pre = zx_t[:, :2 * n] + hz[:, :2 * n]
    hh = hz[:, 2 * n:]
    if rb is not None:
        hh = hh + rb[None, :]
    zr = cfg.rec(zr_pre, 2)
    z, r = zr[:, :n], zr[:, n:]
    n_pre = zx_t[:, 2 * n:] + r * hh
    cand = cfg.act(n_pre, 1)
    h_new = z * h + (1 - z) * cand
    keep = None if m_t is None else m_t[:, None]
    res = jnp.concatenate([cfg.rec.res(zr_pre, zr), cfg.act.res(n_pre, cand), hh], axis=-1)
    return _masked(keep, h_new, h), res


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _gru_core(cfg: _Config, x, w, b, u, rb, h0, mask, xm, hm, reset, hr):
    def body(h, inp):
        x_t, m_t, r_t = inp
        h = reset_where(r_t, hr, h)
        h, _ = _gru_step(cfg, u, rb, hm, h, _step_proj(x_t, w, b, xm, 3), m_t)
        return h, (h if cfg.seq else None)

    h, hs = _scan(body, h0, (x, mask, reset), cfg, prefetch=False)
    return (hs, h) if cfg.seq else h


def _gru_core_fwd(cfg: _Config, x, w, b, u, rb, h0, mask, xm, hm, reset, hr):
    zx = _in_proj(x, w, None, xm, 3)

    def body(h, inp):
        zx_t, m_t, r_t = inp
        h_new, res = _gru_step(cfg, u, rb, hm, reset_where(r_t, hr, h), _plus_bias(zx_t, b),
                               m_t)
        return h_new, (h_new, res)

    h, (hs, res) = _scan(body, h0, (zx, mask, reset), cfg, prefetch=False)
    return ((hs, h) if cfg.seq else h), (res, hs)


class _GRUGates:
    """The activated gates of every step (and ``hh``, reset_after), from the residuals."""

    def __init__(self, cfg: _Config, res: Array, n: int):
        self.rzr, self.rn = res[..., :2 * n], res[..., 2 * n:3 * n]
        zr = cfg.rec.value(self.rzr, 2)
        self.z, self.r = zr[..., :n], zr[..., n:]
        self.cand = cfg.act.value(self.rn, 1)
        self.hh = res[..., 3 * n:]


def _gru_tangent_h(cfg, gates: _GRUGates, hp, keep, dzr, dn, dh_in, sh):
    """The tangent of the state leaving a step (both GRU variants)."""
    n = dh_in.shape[-1]
    dz = cfg.rec.jvp(gates.rzr, dzr, 2)[..., :n]
    dh = gates.z * dh_in + (hp - gates.cand) * dz + (1 - gates.z) * cfg.act.jvp(gates.rn, dn, 1)
    return _add(sh, _masked(keep, dh, dh_in))


def _gru_core_jvp(cfg: _Config, primals, tangents):
    x, w, b, u, rb, h0, mask, xm, hm, reset, hr = primals
    dx, dw, db, du, drb, dh0, _, _, _, _, dhr = map(_tangent, tangents)
    out, (res, hs) = _gru_core_fwd(cfg, *primals)
    t, n = x.shape[0], h0.shape[-1]
    keep = None if mask is None else mask[:, :, None]
    hprev = _entering(h0, hs, reset, hr)
    gates = _GRUGates(cfg, res, n)

    eh = _exogenous(dh0, dhr, reset, t)
    # d(hU + rb) from outside the loop: [z, r | h] parts; the h part is gated by r.
    q = _add(None if du is None else _in_proj(hprev, du, None, hm, 3),
             _exogenous(_project_or_none(dh0, u, hm, 3), _project_or_none(dhr, u, hm, 3),
                        reset, t))
    qh = _add(_cols(q, 2 * n, 3 * n), None if drb is None else jnp.broadcast_to(drb, gates.r.shape))
    sq = None if qh is None else jnp.concatenate(
        [jnp.zeros_like(gates.rzr) if q is None else q[..., :2 * n], gates.r * qh], axis=-1)
    sz = _add(_proj_tangent(x, w, xm, 3, dx, dw, db), sq)
    sh = None if eh is None else eh * _masked(keep, gates.z, 1)

    def pre_activations(g: _GRUGates, q, dh_in, hp, whole):
        """The tangents of [z, r] and n's pre-activations: q (the right-hand side's block)
        plus what the entering state's tangent adds through ``dh_in @ u``."""
        p = _in_proj(dh_in, u, None, hm, 3) if whole else _cells.project(dh_in, u, hm, 3)
        dzr = q[..., :2 * n] + p[..., :2 * n]
        dn = q[..., 2 * n:] + cfg.rec.jvp(g.rzr, dzr, 2)[..., n:] * g.hh + g.r * p[..., 2 * n:]
        return dzr, dn

    return _gru_tangent_solve(
        cfg, out, sz, sh, res, hprev, mask, reset, h0, pre_activations,
        functools.partial(_gru_adjoint, cfg, res, hprev, u, hm, mask, reset))


def _gru_tangent_solve(cfg: _Config, out, sz, sh, res, hprev, mask, reset, h0,
                       pre_activations, adjoint):
    """The GRU cores' tangent system (both variants) given its right-hand side ``[sz | sh]``
    and the variant's pre-activation tangents, ``pre_activations(gates, q, dh_in, h_prev,
    whole) -> (d[z, r], dn)`` (`whole`: [T, B, *] arrays at once, else one step's)."""
    n = h0.shape[-1]
    keep = None if mask is None else mask[:, :, None]
    widths = (3 * n, n)
    gates = _GRUGates(cfg, res, n)

    def matvec(xv):
        q, dh = _split(xv, widths)
        dh_in = _cut(reset, _shift(dh))
        dzr, dn = pre_activations(gates, q, dh_in, hprev, True)
        nh = _gru_tangent_h(cfg, gates, hprev, keep, dzr, dn, dh_in, None)
        return jnp.concatenate([q, dh - nh], axis=-1)

    def solve(rhs):
        def body(dh, inp):
            s_t, res_t, hp, m_t, r_t = inp
            dh_in = _cut(r_t, dh)
            g = _GRUGates(cfg, res_t, n)
            dzr, dn = pre_activations(g, s_t[:, :3 * n], dh_in, hp, False)
            dh = _gru_tangent_h(cfg, g, hp, None if m_t is None else m_t[:, None], dzr, dn,
                                dh_in, s_t[:, 3 * n:])
            return dh, dh

        dh = _scan(body, jnp.zeros_like(h0), (rhs, res, hprev, mask, reset), cfg)[1]
        return jnp.concatenate([rhs[..., :3 * n], dh], axis=-1)

    tx = _linear_solve([sz, sh], widths, res.dtype, matvec, solve, adjoint)
    if tx is None:
        return out, jax.tree.map(jnp.zeros_like, out)
    th = tx[..., 3 * n:]
    return out, ((th, th[-1]) if cfg.seq else th[-1])


def _gru_adjoint(cfg: _Config, res, hprev, u, hm, mask, reset, ct):
    """The backward loop (see `_gru_backward`) of reset_after=True."""
    n = hprev.shape[-1]
    ut = u.T

    def through_r(res_t, hp, r, dn, dz_pre, dh_z):
        dzr = cfg.rec.grad(res_t[:, :2 * n], jnp.concatenate([dz_pre, dn * res_t[:, 3 * n:]],
                                                               -1), 2)
        dhz = jnp.concatenate([dzr, dn * r], axis=-1)
        return dzr, dh_z + _rec_proj_t(dhz, ut, hm, 3)

    return _gru_backward(cfg, res, hprev, mask, reset, ct, through_r)


def _gru_backward(cfg: _Config, res, hprev, mask, reset, ct, through_r):
    """The GRU cores' backward loop (both variants; see `_lstm_adjoint`): ct [T, B, 4H] ->
    per step the cotangents of the [z, r | n] pre-activations and of h.

    ``through_r(res_t, h_prev, r, dn, dz_pre, dh_z) -> (d[z, r], dh_prev)`` is what differs:
    the [z, r] pre-activations' cotangent given the n pre-activation's (`dn`) and z's part
    (`dz_pre`, before the activation's derivative), and the entering state's cotangent given
    its part through z (`dh_z`)."""
    n = hprev.shape[-1]
    rec, act = cfg.rec, cfg.act
    ctq, cth = ct[..., :3 * n], ct[..., 3 * n:]

    def body(dh, inp):
        cth_t, res_t, hp, m_t, r_t = inp
        dh = dh + cth_t
        zr = rec.value(res_t[:, :2 * n], 2)
        z, r = zr[:, :n], zr[:, n:]
        cand = act.value(res_t[:, 2 * n:3 * n], 1)
        keep = None if m_t is None else m_t[:, None]
        dh_c = _masked(keep, dh, 0)
        dn = act.grad(res_t[:, 2 * n:3 * n], dh_c * (1 - z), 1)
        dzr, dh_prev = through_r(res_t, hp, r, dn, dh_c * (hp - cand), dh_c * z)
        if keep is not None:
            dh_prev = dh_prev + jnp.where(keep, 0, dh)
        return _cut(r_t, dh_prev), (jnp.concatenate([dzr, dn], axis=-1), dh)

    _, (dz, dh) = _scan(body, jnp.zeros_like(hprev[0]), (cth, res, hprev, mask, reset), cfg,
                        reverse=True)
    return jnp.concatenate([ctq + dz, dh], axis=-1)


_gru_core.defjvp(_gru_core_jvp, symbolic_zeros=True)


# reset_after=False: zx [T, B, 3H] = x @ W + bias; n = act(x W_h + b_h + (r * h) U_h).


def _split_hm(hm: Array | None):
    """Recurrent dropout masks for (z, r) and for h."""
    if hm is None or hm.ndim == 2:
        return hm, hm
    return hm[:2], hm[2]


def _grub_step(cfg: _Config, u, hm, h, zx_t, m_t):
    n = h.shape[-1]
    hm_zr, hm_h = _split_hm(hm)
    zr_pre = zx_t[:, :2 * n] + _cells.project(h, u[:, :2 * n], hm_zr, 2)
    zr = cfg.rec(zr_pre, 2)
    z, r = zr[:, :n], zr[:, n:]
    hd = h if hm_h is None else h * hm_h
    n_pre = zx_t[:, 2 * n:] + (r * hd) @ u[:, 2 * n:]
    cand = cfg.act(n_pre, 1)
    h_new = z * h + (1 - z) * cand
    keep = None if m_t is None else m_t[:, None]
    res = jnp.concatenate([cfg.rec.res(zr_pre, zr), cfg.act.res(n_pre, cand)], axis=-1)
    return _masked(keep, h_new, h), res


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _grub_core(cfg: _Config, x, w, b, u, h0, mask, xm, hm, reset, hr):
    def body(h, inp):
        x_t, m_t, r_t = inp
        h = reset_where(r_t, hr, h)
        h, _ = _grub_step(cfg, u, hm, h, _step_proj(x_t, w, b, xm, 3), m_t)
        return h, (h if cfg.seq else None)

    h, hs = _scan(body, h0, (x, mask, reset), cfg, prefetch=False)
    return (hs, h) if cfg.seq else h


def _grub_core_fwd(cfg: _Config, x, w, b, u, h0, mask, xm, hm, reset, hr):
    zx = _in_proj(x, w, None, xm, 3)

    def body(h, inp):
        zx_t, m_t, r_t = inp
        h_new, res = _grub_step(cfg, u, hm, reset_where(r_t, hr, h), _plus_bias(zx_t, b), m_t)
        return h_new, (h_new, res)

    h, (hs, res) = _scan(body, h0, (zx, mask, reset), cfg, prefetch=False)
    return ((hs, h) if cfg.seq else h), (res, hs)


def _dropped(h: Array, hm: Array | None) -> Array:
    return h if hm is None else h * hm


def _grub_core_jvp(cfg: _Config, primals, tangents):
    x, w, b, u, h0, mask, xm, hm, reset, hr = primals
    dx, dw, db, du, dh0, _, _, _, _, dhr = map(_tangent, tangents)
    out, (res, hs) = _grub_core_fwd(cfg, *primals)
    t, n = x.shape[0], h0.shape[-1]
    keep = None if mask is None else mask[:, :, None]
    hm_zr, hm_h = _split_hm(hm)
    u_zr, u_h = u[:, :2 * n], u[:, 2 * n:]
    hprev = _entering(h0, hs, reset, hr)
    gates = _GRUGates(cfg, res, n)
    hm_t = None if hm_h is None else hm_h[None]

    eh = _exogenous(dh0, dhr, reset, t)
    if eh is None:
        en = None
    elif reset is None:  # only step 0 has an exogenous entering state: one small matmul
        en = _first((gates.r[0] * _dropped(dh0, hm_h)) @ u_h, t)
    else:
        en = _cells.dense(gates.r * _dropped(eh, hm_t), u_h)
    dzx = _proj_tangent(x, w, xm, 3, dx, dw, db)
    szr = _add(_cols(dzx, 0, 2 * n),
               None if du is None else _in_proj(hprev, du[:, :2 * n], None, hm_zr, 2),
               _exogenous(_project_or_none(dh0, u_zr, hm_zr, 2),
                          _project_or_none(dhr, u_zr, hm_zr, 2), reset, t))
    sn = _add(_cols(dzx, 2 * n, 3 * n),
              None if du is None else _cells.dense(gates.r * _dropped(hprev, hm_t), du[:, 2 * n:]),
              en)
    sz = None if szr is None and sn is None else jnp.concatenate(
        [jnp.zeros_like(gates.rzr) if szr is None else szr,
         jnp.zeros_like(gates.rn) if sn is None else sn], axis=-1)
    sh = None if eh is None else eh * _masked(keep, gates.z, 1)

    def pre_activations(g: _GRUGates, q, dh_in, hp, whole):
        if whole:
            dzr = q[..., :2 * n] + _in_proj(dh_in, u_zr, None, hm_zr, 2)
        else:
            dzr = q[..., :2 * n] + _cells.project(dh_in, u_zr, hm_zr, 2)
        dr = cfg.rec.jvp(g.rzr, dzr, 2)[..., n:]
        hm_step = hm_t if whole else hm_h
        dq = dr * _dropped(hp, hm_step) + g.r * _dropped(dh_in, hm_step)
        return dzr, q[..., 2 * n:] + _cells.dense(dq, u_h)

    return _gru_tangent_solve(
        cfg, out, sz, sh, res, hprev, mask, reset, h0, pre_activations,
        functools.partial(_grub_adjoint, cfg, res, hprev, u, hm, mask, reset))


def _grub_adjoint(cfg: _Config, res, hprev, u, hm, mask, reset, ct):
    """The backward loop (see `_gru_backward`) of reset_after=False."""
    n = hprev.shape[-1]
    hm_zr, hm_h = _split_hm(hm)
    ut_zr, ut_h = u[:, :2 * n].T, u[:, 2 * n:].T

    def through_r(res_t, hp, r, dn, dz_pre, dh_z):
        dq = dn @ ut_h  # gradient wrt q = r * hd
        hd = _dropped(hp, hm_h)
        dzr = cfg.rec.grad(res_t[:, :2 * n], jnp.concatenate([dz_pre, dq * hd], -1), 2)
        return dzr, dh_z + _rec_proj_t(dzr, ut_zr, hm_zr, 2) + _dropped(dq * r, hm_h)

    return _gru_backward(cfg, res, hprev, mask, reset, ct, through_r)


_grub_core.defjvp(_grub_core_jvp, symbolic_zeros=True)


# ----------------------------------------------------------------------------- one cell


def _prepare(cell: Any, params: dict, dropout: Any, seq: bool, unroll: int):
    """The cell's loop: ``run(x [T, B, F], states, mask [T, B] | None, reset [T, B] | None,
    reset_states) -> (outputs [T, B, H] or None, final states)``, states as flat tuples."""
    x_mask, h_mask = dropout if dropout is not None else (None, None)
    cfg = _Config(_Act.of(cell.recurrent_activation), _Act.of(cell.activation), seq, unroll)
    n = cell.units
    w, u = params["kernel"], params["recurrent_kernel"]
    b = params.get("bias")
    if isinstance(cell, _cells.LSTMCell):
        r = params.get("projection")  # proj_size > 0

        def run_lstm(x, states, mask, reset, reset_states):
            h0, c0 = states
            hr, cr = reset_states or (None, None)
            out = _lstm_core(cfg, x, w, b, u, r, h0, c0, mask, x_mask, h_mask, reset, hr, cr)
            return (out[0], out[1:]) if seq else (None, out)

        return run_lstm

    rb = None
    if b is not None and cell.reset_after:
        # The z, r parts of the recurrent bias add like the input bias: fold them in.
        b, rb = b[0] + jnp.concatenate([b[1][:2 * n], jnp.zeros_like(b[1][2 * n:])]), \
            b[1][2 * n:]

    def run(x, states, mask, reset, reset_states):
        (h0,) = states
        (hr,) = reset_states or (None,)
        if cell.reset_after:
            out = _gru_core(cfg, x, w, b, u, rb, h0, mask, x_mask, h_mask, reset, hr)
        else:
            out = _grub_core(cfg, x, w, b, u, h0, mask, x_mask, h_mask, reset, hr)
        return (out[0], (out[1],)) if seq else (None, (out,))

    return run


def _residual_bytes(cell: Any, x: Array) -> Any:
    """What the forward loop saves for the backward pass (may be symbolic)."""
    t, b, _ = x.shape
    gates = 4 if isinstance(cell, _cells.LSTMCell) else 3
    return t * b * cell.units * (2 * gates + 3) * x.dtype.itemsize


# ----------------------------------------------------------------------------- entry point


def fused_rnn(cell: Any, params: Any, states: Any, xs: Array, mask: Array | None,
              reset: Array | None, reset_states: Any, dropout: Any,
              opts: LoopOptions) -> tuple[Array, Any]:
    """Runs an LSTM/GRU cell (or a stack of them) over time; same results as `scan_rnn`.

    Args:
      cell: an `LSTMCell`, `GRUCell` or `StackedRNNCells` of them (see `supports`).
      params: the cell's params in the compute dtype (a stack: a list of dicts).
      states: the initial states, ``LSTMState(h, c)`` or ``(h,)`` of [B, H] arrays (a
        stack: a tuple with one entry per cell).
      xs: [T, B, F] time-major inputs, in processing order.
      mask: [T, B] booleans, True where a step is real, or None.
      reset: [T, B] booleans, True where the states are replaced by `reset_states` before
        the step, or None.
      reset_states: states like `states` (used only with `reset`).
      dropout: from `jaxrnn._cells.make_dropout`: None, or ``(input_mask, recurrent_mask)``
        (a stack: one such entry per cell).
      opts: the loop's options. ``opts.remat=None`` checkpoints segments of about sqrt(T)
        steps when a layer's residuals would exceed ``opts.remat_threshold`` bytes.

    Returns:
      ``(outputs, final_states)``: outputs [T, B, H] in processing order when
      `return_sequences`, else the last processed output [B, H]; the final states with the
      structure of `states`.
    """

    def run_one(c, p, s, x, mask, reset, rs, d, seq):
        run = _prepare(c, p, d, seq, opts.unroll)
        reset_flat = None if reset is None else tuple(jax.tree.leaves(rs))

        def piece(states, inp):
            x_seg, m_seg, r_seg = inp
            hs, states = run(x_seg, states, m_seg, r_seg, reset_flat)
            return states, hs

        t = x.shape[0]
        k = segment_length(opts, t, auto_segment(opts, _residual_bytes(c, x), t))
        inputs = (x, mask, reset)
        flat = tuple(jax.tree.leaves(s))
        fin, hs = segmented(piece, flat, inputs, k) if k else piece(flat, inputs)
        return hs, jax.tree.unflatten(jax.tree.structure(s), list(fin))

    return run_layerwise(run_one, cell, params, states, xs, mask, reset, reset_states, dropout,
                         opts)
