"""Fused LSTM and GRU time loops with a hand-written backward pass.

`RNN` takes this path by default for `LSTMCell`, `GRUCell` (both ``reset_after``
variants) and `StackedRNNCells` made only of those two. It returns exactly what the
generic `jaxrnn._scan.scan_rnn` returns (Keras 3's masking, `go_backwards`,
`zero_output_for_mask`, dropout and recurrent dropout, any `unroll`), to float32 rounding,
and so do its gradients. What makes it fast on XLA CPU:

* Training: the input projection ``x_t @ kernel + bias`` of every step is one
  [T*B, F] x [F, k*H] matmul before the loop; the loop does only ``h @ recurrent_kernel``
  and the gate math.
* LSTM gates are permuted once, outside the loop, from Keras's ``(i, f, c, o)`` to
  ``(i, f, o | c)`` so that one `recurrent_activation` covers a contiguous [B, 3H] block
  (GRU's ``(z, r | h)`` already is). The permutation is undone on the gradients by autodiff
  of the column gather.
* A `jax.custom_vjp` core: the forward loop saves the activated gates, ``act(c)`` and the
  entering ``c`` (LSTM) or the reset-gated recurrent part (GRU); the backward loop computes
  only the per-step gate gradients and ``dz @ recurrent_kernelᵀ`` (the transpose taken once,
  outside the loop); ``dU = Σ_t h_{t-1}ᵀ dz_t``, ``dW``, ``db`` and ``dx`` are single 2-D
  matmuls after it. The backward rule is written in differentiable JAX ops (`lax.scan`,
  matmuls, `jax.vjp`), so second order works: ``jax.jvp(jax.grad(f))``, ``jax.hessian``.
* Inference pays for no residuals: without differentiation JAX runs the core's primal
  function, a loop that projects each step's input itself (no [T, B, k*H] buffer) and
  stacks only the outputs it must return.
* Every loop fetches step t's inputs in step t-1 (see `_scan`): XLA CPU otherwise fuses the
  per-step slice into the gate-math fusion, which then runs 2-3x slower.
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

Where this path is *not* taken (the layer runs the generic scan instead): cells other than
`LSTMCell`/`GRUCell` or their subclasses, stacks containing any other cell, and
``RNN(..., fused=False)``. Known limitation: forward-mode differentiation of the layer alone
(`jax.jvp`, `jax.jacfwd` of the layer's output) is not defined for a `jax.custom_vjp`; use
``fused=False`` for it. Forward over reverse (``jax.jvp`` of ``jax.grad``) works.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

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
    """Static options of one core loop (hashable: a `custom_vjp` nondiff argument)."""

    rec: _Act
    act: _Act
    seq: bool  # return the outputs of every step, else only the final states
    unroll: int | bool


# ----------------------------------------------------------------------------- projections


def _step_proj(x_t: Array, w: Array, b: Array | None, xm: Array | None, k: int) -> Array:
    """One step's input projection, as the generic cell computes it (inference path)."""
    z = _cells.project(x_t, w, xm, k)
    return z if b is None else z + b[None, :]


def _proj_grads(x: Array, w: Array, b: Array | None, xm: Array | None, k: int, dzx: Array):
    """``(dx, dw, db)`` of `_in_proj`: big matmuls after the backward loop (autodiff of
    the 2-D projection, itself differentiable for second order)."""
    if b is None:
        _, vjp = jax.vjp(lambda x, w: _in_proj(x, w, None, xm, k), x, w)
        return (*vjp(dzx), None)
    _, vjp = jax.vjp(lambda x, w, b: _in_proj(x, w, b, xm, k), x, w, b)
    return vjp(dzx)


def _tmm(a: Array, b: Array) -> Array:
    """``Σ_{t,b} a[t, b]ᵀ b[t, b]``: [T, B, H] x [T, B, J] -> [H, J], one 2-D matmul
    accumulated in float32 at least, returned in `a`'s dtype."""
    acc = jnp.promote_types(a.dtype, jnp.float32)
    a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return jnp.matmul(a2.T, b2, preferred_element_type=acc).astype(a.dtype)


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


def _rec_grad_u(hp: Array, dz: Array, hm: Array | None, k: int) -> Array:
    """``Σ_t (h_{t-1} * hm)ᵀ dz_t``, one matmul: hp [T, B, H], dz [T, B, k*H'] -> [H, k*H']."""
    if hm is None:
        return _tmm(hp, dz)
    if hm.ndim == 2:
        return _tmm(hp * hm[None], dz)
    kh = dz.shape[-1] // k
    return jnp.concatenate([_tmm(hp * hm[j][None], dz[..., j * kh:(j + 1) * kh])
                            for j in range(k)], axis=1)


def _sum_tb(a: Array) -> Array:
    acc = jnp.promote_types(a.dtype, jnp.float32)
    return jnp.sum(a, axis=(0, 1), dtype=acc).astype(a.dtype)


def _prev(first: Array, seq: Array) -> Array:
    """The states entering each step: [first, seq[0], ..., seq[T-2]]."""
    return jnp.concatenate([first[None], seq[:-1]], axis=0)


def _masked(keep: Array | None, new: Array, old: ArrayLike) -> Array:
    return new if keep is None else jnp.where(keep, new, old)


def _scan(body, init, xs, cfg: _Config, reverse: bool = False):
    """`lax.scan(body, init, xs)` that fetches each step's inputs one step ahead.

    XLA CPU fuses a scan's per-step ``dynamic-slice`` of `xs` into the elementwise fusion
    that consumes it, and that fusion then runs 2-3x slower (measured: a GRU step at B=8,
    H=128 took 17 us instead of 6). Here step t's inputs arrive in the carry, sliced by
    step t-1 as a loop output of their own, so the gate math reads dense buffers.
    """
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


# ----------------------------------------------------------------------------- LSTM core
#
# Gates in the order (i, f, o | g): one recurrent_activation over [B, 3H], one activation
# over [B, H]. zx [T, B, 4H] is the input projection with the bias; u [H, 4H].


def _lstm_step(cfg: _Config, u, hm, h, c, zx_t, m_t):
    n = h.shape[-1]
    z = zx_t + _cells.project(h, u, hm, 4)
    zs, zg = z[:, :3 * n], z[:, 3 * n:]
    s = cfg.rec(zs, 3)
    g = cfg.act(zg, 1)
    c_new = s[:, n:2 * n] * c + s[:, :n] * g
    tc = cfg.act(c_new, 1)
    h_new = s[:, 2 * n:] * tc
    keep = None if m_t is None else m_t[:, None]
    # Saving act(c) costs a [B, H] store but spares the backward loop its costliest op.
    res = jnp.concatenate([cfg.rec.res(zs, s), cfg.act.res(zg, g), cfg.act.res(c_new, tc)],
                          axis=-1)
    return _masked(keep, h_new, h), _masked(keep, c_new, c), res


def _entering(first: Array, seq: Array, reset: Array | None, rs: Any) -> Array:
    """The states entering each step, after the resets: [T, B, H]."""
    prev = _prev(first, seq)
    return prev if reset is None else jnp.where(reset[:, :, None], rs[None], prev)


def _route_reset(r_t: Array | None, d_prev: Array, d_rs: Any):
    """Splits the gradient wrt a step's entering state between the carried state and, where
    the step was reset, the reset state: ``(d_carried, d_rs)``."""
    if r_t is None:
        return d_prev, d_rs
    rk = r_t[:, None]
    return jnp.where(rk, 0, d_prev), d_rs + jnp.where(rk, d_prev, 0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _lstm_core(cfg: _Config, x, w, b, u, h0, c0, mask, xm, hm, reset, hr, cr):
    # Inference: the projection inside the loop, as the generic scan does (a [T, B, 4H]
    # buffer of projections measured slower than projecting step by step when nothing
    # needs it afterwards), and no residuals.
    def body(carry, inp):
        x_t, m_t, r_t = inp
        h, c = reset_where(r_t, (hr, cr), carry)
        h, c, _ = _lstm_step(cfg, u, hm, h, c, _step_proj(x_t, w, b, xm, 4), m_t)
        return (h, c), (h if cfg.seq else None)

    (h, c), hs = _scan(body, (h0, c0), (x, mask, reset), cfg)
    return (hs, h, c) if cfg.seq else (h, c)


def _lstm_core_fwd(cfg: _Config, x, w, b, u, h0, c0, mask, xm, hm, reset, hr, cr):
    zx = _in_proj(x, w, b, xm, 4)

    def body(carry, inp):
        zx_t, m_t, r_t = inp
        h, c = reset_where(r_t, (hr, cr), carry)
        h_new, c_new, res = _lstm_step(cfg, u, hm, h, c, zx_t, m_t)
        return (h_new, c_new), (h_new, c, res)

    (h, c), (hs, cprev, res) = _scan(body, (h0, c0), (zx, mask, reset), cfg)
    out = (hs, h, c) if cfg.seq else (h, c)
    return out, (res, cprev, hs, x, w, b, u, h0, mask, xm, hm, reset, hr)


def _lstm_core_bwd(cfg: _Config, saved, cts):
    res, cprev, hs, x, w, b, u, h0, mask, xm, hm, reset, hr = saved
    if cfg.seq:
        dhs, dh_t, dc_t = cts
    else:
        (dh_t, dc_t), dhs = cts, None
    n = h0.shape[-1]
    rec, act = cfg.rec, cfg.act
    ut = u.T  # transposed once: [4H, H] @ in the loop is faster than a transposed dot

    def body(carry, inp):
        dh, dc, dhr, dcr = carry
        dhs_t, res_t, cp, m_t, r_t = inp
        if dhs_t is not None:
            dh = dh + dhs_t
        s = rec.value(res_t[:, :3 * n], 3)
        g = act.value(res_t[:, 3 * n:4 * n], 1)
        tc = act.value(res_t[:, 4 * n:], 1)
        i, f, o = s[:, :n], s[:, n:2 * n], s[:, 2 * n:]
        keep = None if m_t is None else m_t[:, None]
        dh_c = _masked(keep, dh, 0)
        dc_c = _masked(keep, dc, 0)
        dc_c = dc_c + act.grad(res_t[:, 4 * n:], dh_c * o, 1)
        ds = jnp.concatenate([dc_c * g, dc_c * cp, dh_c * tc], axis=-1)
        dz = jnp.concatenate([rec.grad(res_t[:, :3 * n], ds, 3),
                              act.grad(res_t[:, 3 * n:4 * n], dc_c * i, 1)], axis=-1)
        dh_prev = _rec_proj_t(dz, ut, hm, 4)
        dc_prev = dc_c * f
        if keep is not None:
            dh_prev = dh_prev + jnp.where(keep, 0, dh)
            dc_prev = jnp.where(keep, dc_prev, dc)
        dh_prev, dhr = _route_reset(r_t, dh_prev, dhr)
        dc_prev, dcr = _route_reset(r_t, dc_prev, dcr)
        return (dh_prev, dc_prev, dhr, dcr), dz

    zero = None if reset is None else jnp.zeros_like(dh_t)
    (dh0, dc0, dhr, dcr), dz = _scan(body, (dh_t, dc_t, zero, zero),
                                     (dhs, res, cprev, mask, reset), cfg, reverse=True)
    du = _rec_grad_u(_entering(h0, hs, reset, hr), dz, hm, 4)
    return (*_proj_grads(x, w, b, xm, 4, dz), du, dh0, dc0, None, None, None, None, dhr, dcr)


_lstm_core.defvjp(_lstm_core_fwd, _lstm_core_bwd)


# ----------------------------------------------------------------------------- GRU cores
#
# reset_after=True: zx [T, B, 3H] holds x @ W + input bias + the z, r part of the recurrent
# bias; rb [H] (or None) is the h part of the recurrent bias, added inside r * (h U_h + rb).


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


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _gru_core(cfg: _Config, x, w, b, u, rb, h0, mask, xm, hm, reset, hr):
    def body(h, inp):
        x_t, m_t, r_t = inp
        h = reset_where(r_t, hr, h)
        h, _ = _gru_step(cfg, u, rb, hm, h, _step_proj(x_t, w, b, xm, 3), m_t)
        return h, (h if cfg.seq else None)

    h, hs = _scan(body, h0, (x, mask, reset), cfg)
    return (hs, h) if cfg.seq else h


def _gru_core_fwd(cfg: _Config, x, w, b, u, rb, h0, mask, xm, hm, reset, hr):
    zx = _in_proj(x, w, b, xm, 3)

    def body(h, inp):
        zx_t, m_t, r_t = inp
        h_new, res = _gru_step(cfg, u, rb, hm, reset_where(r_t, hr, h), zx_t, m_t)
        return h_new, (h_new, res)

    h, (hs, res) = _scan(body, h0, (zx, mask, reset), cfg)
    out = (hs, h) if cfg.seq else h
    return out, (res, hs, x, w, b, u, rb, h0, mask, xm, hm, reset, hr)


def _gru_core_bwd(cfg: _Config, saved, cts):
    res, hs, x, w, b, u, rb, h0, mask, xm, hm, reset, hr = saved
    dhs, dh_t = cts if cfg.seq else (None, cts)
    n = h0.shape[-1]
    rec, act = cfg.rec, cfg.act
    hprev = _entering(h0, hs, reset, hr)
    ut = u.T

    def body(carry, inp):
        dh, dhr = carry
        dhs_t, res_t, hp, m_t, r_t = inp
        if dhs_t is not None:
            dh = dh + dhs_t
        zr = rec.value(res_t[:, :2 * n], 2)
        z, r = zr[:, :n], zr[:, n:]
        cand = act.value(res_t[:, 2 * n:3 * n], 1)
        hh = res_t[:, 3 * n:]
        keep = None if m_t is None else m_t[:, None]
        dh_c = _masked(keep, dh, 0)
        dn = act.grad(res_t[:, 2 * n:3 * n], dh_c * (1 - z), 1)
        dzr = rec.grad(res_t[:, :2 * n], jnp.concatenate([dh_c * (hp - cand), dn * hh], -1), 2)
        dhz = jnp.concatenate([dzr, dn * r], axis=-1)
        dh_prev = dh_c * z + _rec_proj_t(dhz, ut, hm, 3)
        if keep is not None:
            dh_prev = dh_prev + jnp.where(keep, 0, dh)
        return _route_reset(r_t, dh_prev, dhr), (dzr, dn)

    zero = None if reset is None else jnp.zeros_like(dh_t)
    (dh0, dhr), (dzr, dn) = _scan(body, (dh_t, zero), (dhs, res, hprev, mask, reset), cfg,
                                  reverse=True)
    r = rec.value(res[..., :2 * n], 2)[..., n:]
    dhh = dn * r
    dzx = jnp.concatenate([dzr, dn], axis=-1)
    du = _rec_grad_u(hprev, jnp.concatenate([dzr, dhh], axis=-1), hm, 3)
    drb = None if rb is None else _sum_tb(dhh)
    return (*_proj_grads(x, w, b, xm, 3, dzx), du, drb, dh0, None, None, None, None, dhr)


_gru_core.defvjp(_gru_core_fwd, _gru_core_bwd)


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


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _grub_core(cfg: _Config, x, w, b, u, h0, mask, xm, hm, reset, hr):
    def body(h, inp):
        x_t, m_t, r_t = inp
        h = reset_where(r_t, hr, h)
        h, _ = _grub_step(cfg, u, hm, h, _step_proj(x_t, w, b, xm, 3), m_t)
        return h, (h if cfg.seq else None)

    h, hs = _scan(body, h0, (x, mask, reset), cfg)
    return (hs, h) if cfg.seq else h


def _grub_core_fwd(cfg: _Config, x, w, b, u, h0, mask, xm, hm, reset, hr):
    zx = _in_proj(x, w, b, xm, 3)

    def body(h, inp):
        zx_t, m_t, r_t = inp
        h_new, res = _grub_step(cfg, u, hm, reset_where(r_t, hr, h), zx_t, m_t)
        return h_new, (h_new, res)

    h, (hs, res) = _scan(body, h0, (zx, mask, reset), cfg)
    out = (hs, h) if cfg.seq else h
    return out, (res, hs, x, w, b, u, h0, mask, xm, hm, reset, hr)


def _grub_core_bwd(cfg: _Config, saved, cts):
    res, hs, x, w, b, u, h0, mask, xm, hm, reset, hr = saved
    dhs, dh_t = cts if cfg.seq else (None, cts)
    n = h0.shape[-1]
    rec, act = cfg.rec, cfg.act
    hm_zr, hm_h = _split_hm(hm)
    ut_zr, ut_h = u[:, :2 * n].T, u[:, 2 * n:].T
    hprev = _entering(h0, hs, reset, hr)

    def body(carry, inp):
        dh, dhr = carry
        dhs_t, res_t, hp, m_t, r_t = inp
        if dhs_t is not None:
            dh = dh + dhs_t
        zr = rec.value(res_t[:, :2 * n], 2)
        z, r = zr[:, :n], zr[:, n:]
        cand = act.value(res_t[:, 2 * n:], 1)
        keep = None if m_t is None else m_t[:, None]
        dh_c = _masked(keep, dh, 0)
        dn = act.grad(res_t[:, 2 * n:], dh_c * (1 - z), 1)
        dq = dn @ ut_h  # gradient wrt q = r * hd
        hd = hp if hm_h is None else hp * hm_h
        dzr = rec.grad(res_t[:, :2 * n], jnp.concatenate([dh_c * (hp - cand), dq * hd], -1), 2)
        dhd = dq * r
        dh_prev = dh_c * z + _rec_proj_t(dzr, ut_zr, hm_zr, 2) + \
            (dhd if hm_h is None else dhd * hm_h)
        if keep is not None:
            dh_prev = dh_prev + jnp.where(keep, 0, dh)
        return _route_reset(r_t, dh_prev, dhr), jnp.concatenate([dzr, dn], axis=-1)

    zero = None if reset is None else jnp.zeros_like(dh_t)
    (dh0, dhr), dzx = _scan(body, (dh_t, zero), (dhs, res, hprev, mask, reset), cfg,
                            reverse=True)
    r = rec.value(res[..., :2 * n], 2)[..., n:]
    q = r * (hprev if hm_h is None else hprev * hm_h[None])
    du = jnp.concatenate([_rec_grad_u(hprev, dzx[..., :2 * n], hm_zr, 2),
                          _tmm(q, dzx[..., 2 * n:])], axis=1)
    return (*_proj_grads(x, w, b, xm, 3, dzx), du, dh0, None, None, None, None, dhr)


_grub_core.defvjp(_grub_core_fwd, _grub_core_bwd)


# ----------------------------------------------------------------------------- one cell


def _lstm_perm(a: Array, n: int, axis: int = -1) -> Array:
    """Keras's gate order (i, f, c, o) -> (i, f, o, c) along `axis`."""
    i, f, g, o = jnp.split(a, 4, axis=axis)
    return jnp.concatenate([i, f, o, g], axis=axis)


def _prepare(cell: Any, params: dict, dropout: Any, seq: bool, unroll: int):
    """The cell's loop: ``run(x [T, B, F], states, mask [T, B] | None, reset [T, B] | None,
    reset_states) -> (outputs [T, B, H] or None, final states)``, states as flat tuples."""
    x_mask, h_mask = dropout if dropout is not None else (None, None)
    cfg = _Config(_Act.of(cell.recurrent_activation), _Act.of(cell.activation), seq, unroll)
    n = cell.units
    w, u = params["kernel"], params["recurrent_kernel"]
    b = params.get("bias")
    if isinstance(cell, _cells.LSTMCell):
        w, u = _lstm_perm(w, n), _lstm_perm(u, n)
        b = None if b is None else _lstm_perm(b, n)
        if x_mask is not None and x_mask.ndim == 3:
            x_mask = _lstm_perm(x_mask, n, axis=0)
        if h_mask is not None and h_mask.ndim == 3:
            h_mask = _lstm_perm(h_mask, n, axis=0)

        def run_lstm(x, states, mask, reset, reset_states):
            h0, c0 = states
            hr, cr = reset_states or (None, None)
            out = _lstm_core(cfg, x, w, b, u, h0, c0, mask, x_mask, h_mask, reset, hr, cr)
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
