"""Parallel-in-time recurrences: `jax.lax.associative_scan` over linear recurrences.

A cell whose state follows ``h_t = a_t * h_{t-1} + b_t`` (elementwise, real or complex),
with ``a_t`` and ``b_t`` functions of the inputs alone, runs over a whole sequence in
O(log T) depth instead of T sequential steps. Such a cell declares its recurrence with
one method,

    cell.linear_recurrence(params, xs, states, dropout, *, log_space) -> LinearRecurrence

(`MinGRUCell`, `MinLSTMCell` and `LRUCell` in `jaxrnn._parallel_cells` do), and
`parallel_rnn` gives exactly what `jaxrnn._scan.scan_rnn` gives when it steps the cell
one step at a time -- Keras 3's semantics, masks and ``go_backwards`` included:

* the pairs ``(a_t, b_t)`` are combined by ``(a1, b1), (a2, b2) -> (a1 a2, a2 b1 + b2)``
  (in log space: ``(la1 + la2, logaddexp(la2 + lb1, lb2))``);
* a masked step is the identity ``a_t = 1, b_t = 0`` (log space: ``0, -big``), so it
  carries every state over;
* the initial state is folded in: ``h_t = A_t h_0 + B_t`` with ``(A_t, B_t)`` the scan's
  prefix, so a nonzero (even negative, in log space) ``h_0`` is exact;
* the output of a masked step is the carried output: for a cell whose output is its state
  (minGRU, minLSTM) that is ``h_t`` itself; otherwise (LRU) the output of the last real step
  at or before ``t`` -- a gather at the running maximum of the real steps' indices -- or the
  initial first state before any real step;
* ``go_backwards`` flips the sequence and mask once; everything after runs forwards, so the
  outputs come out in processing order as in Keras;
* a stack runs layer by layer over the whole sequence with the same mask. That is exactly the
  step-by-step stack: a masked step reverts every cell's states, so whatever a cell feeds the
  cell above at a masked step is never used; the stack's carried output is the last cell's.

All the work that depends on the inputs (projections, gates, readout) runs as a few large
operations over [T, B, *] arrays; only the elementwise recurrence itself is a scan, solved by
`linear_scan` with a hand-written backward pass (the adjoint is another linear recurrence).
Its tangent is a linear recurrence in the same coefficients, so forward mode (`jax.jvp`,
`jax.jacfwd`, `jax.linearize`) runs it forwards while `jax.grad` still runs the adjoint
(a `jax.lax.custom_linear_solve` inside a `jax.custom_jvp`).
Its solver (the layer's ``solver`` argument) is `jax.lax.associative_scan` (O(log T) depth)
except on CPU, where a `lax.scan` over the precomputed coefficients is faster (see
`default_solver`); there long sequences run in chunks that the backward pass recomputes from
their initial states (see `CPU_CHUNK`).

A reset is a zero coefficient: ``a_t = 0``, ``b_t = b_t + a_t h_init``, so a reset sequence
is still one linear recurrence and stays parallel (in log space, where ``h_init`` may have
any sign, the reset part is a second recurrence; see `solve`).

With a symbolic time axis (`jax.export`, ONNX export through jax2onnx) the recurrence runs
with the sequential solver (`jax.lax.associative_scan` needs a static length), a masked
step's output is held by a scan instead of a `jax.lax.cummax` (which jax2onnx cannot lower
over a symbolic axis), and the LRU's complex recurrence comes in (real, imaginary) pairs of
real arrays (``LinearRecurrence.pairs``; ONNX runtimes have no complex arithmetic).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _cells
from jaxrnn._loop import (
    LoopOptions,
    reset_where,
    run_layerwise,
    segment_length,
    segmented,
    static_size,
)

Array = jax.Array


class LinearRecurrence(NamedTuple):
    """A cell's linear recurrence over one sequence, ``h_t = a_t * h_{t-1} + b_t``.

    ``readout`` and ``final_states`` close over the cell's params and inputs.
    """

    # Each of a, b, h0 and the h of readout, final_states and encode is an array, or with
    # `pairs` a (real, imaginary) pair of real arrays of that shape.
    a: Any  # [T, B, N] coefficients a_t (log a_t when log_space), real or complex;
    # or [1, B or 1, N]: the same for every step (the LRU's lambda; a mask broadcasts it)
    b: Any  # [T, B, N] input terms b_t (log b_t when log_space), same dtype as a
    h0: Any  # [B, N] the state before the first step (any sign, also in log space)
    readout: Callable[[Any], Array]  # h [T, B, N] -> outputs [T, B, H], right at real steps
    final_states: Callable[[Any, Array], Any]  # (h_T [B, N], output_T [B, H]) -> states
    encode: Callable[[Any], Any]  # the cell's states -> h [B, N], as h0 was made
    log_space: bool = False  # a, b hold log a_t (<= 0), log b_t (b_t > 0)
    readout_is_state: bool = True  # outputs at masked steps already equal the carried output
    # A complex recurrence in real arithmetic (no complex dtype anywhere), solved by
    # `solve_pairs`; the LRU's form when T is symbolic.
    pairs: bool = False


def supports(cell: Any) -> bool:
    """Whether `parallel_rnn` can run `cell`: it (or every cell of a stack) declares
    ``linear_recurrence``."""
    if isinstance(cell, _cells.StackedRNNCells):
        return all(supports(c) for c in cell.cells)
    return callable(getattr(cell, "linear_recurrence", None))


SOLVERS = ("associative", "sequential")


def default_solver(backend: str | None = None) -> str:
    """The solver a layer with ``solver=None`` uses on `backend` (default: JAX's default).

    ``"sequential"`` on CPU: a `jax.lax.scan` over the precomputed coefficients (O(T) depth,
    well under a microsecond per step) runs the training step 2-5x faster there than
    `jax.lax.associative_scan`, whose strided slices XLA CPU fuses badly (see
    benchmarks/RESULTS.md); ``"associative"`` (O(log T) depth) elsewhere.
    """
    backend = backend or jax.default_backend()
    return "sequential" if backend == "cpu" else "associative"


def _combine(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    return a1 * a2, a2 * b1 + b2


def _combine_log(earlier, later):
    la1, lb1 = earlier
    la2, lb2 = later
    return la1 + la2, jnp.logaddexp(la2 + lb1, lb2)


def _recur(a: Array, b: Array, h0: Array, solver: str, *, reverse: bool = False) -> Array:
    """``h_t = a_t h_{t-1} + b_t`` along axis 0 from `h0` (from the end if `reverse`).

    `a` is [T, ...] like `b`, or [1, ...]: the same coefficient at every step."""
    if solver == "sequential":

        def body(h, ab):
            h = ab[0] * h + ab[1]
            return h, h

        if a.shape[0] == 1:  # the same a at every step: not an input of the loop
            return lax.scan(lambda h, b_t: body(h, (a[0], b_t)), h0, b, reverse=reverse)[1]
        return lax.scan(body, h0, (a, b), reverse=reverse)[1]
    a = jnp.broadcast_to(a, b.shape)
    end = -1 if reverse else 0
    b = b.at[end].add(a[end] * h0)  # fold h0 into the first processed step
    return lax.associative_scan(_combine, (a, b), reverse=reverse, axis=0)[1]


def _forward(a: Array, b: Array, h0: Array, log_space: bool,
             solver: str) -> tuple[Array, Array, Array | None]:
    """All states ``h`` [T, B, N], the linear-space coefficients ``a`` they came from, and
    the linear-space ``b`` where it was computed (the sequential solver in log space)."""
    if not log_space:
        return _recur(a, b, h0.astype(b.dtype), solver), a, None
    if solver == "sequential":  # |a_t| <= 1: the linear-space loop is as stable as the cell
        a, b = jnp.exp(a), jnp.exp(b)
        return _recur(a, b, h0, solver), a, b
    log_a, log_b = lax.associative_scan(_combine_log, (jnp.broadcast_to(a, b.shape), b), axis=0)
    # h_t = A_t h_0 + B_t: h_0 stays out of log space, so any sign is exact.
    return jnp.exp(log_a) * h0[None] + jnp.exp(log_b), jnp.exp(a), None


def _adjoint(a: Array, dh: Array, solver: str) -> Array:
    """The adjoint recurrence ``g_t = dh_t + a_{t+1} g_{t+1}`` (``a_T = 0``): the transpose of
    ``h_t = a_t h_{t-1} + s_t`` from ``h_{-1} = 0``, as a map from s to h."""
    if solver == "sequential" and a.shape[0] != 1:
        # Carry a_{t+1} g_{t+1} instead of shifting a.
        def body(carry, a_dh):
            g_t = a_dh[1] + carry
            return a_dh[0] * g_t, g_t

        return lax.scan(body, jnp.zeros_like(dh[0]), (a, dh), reverse=True)[1]
    # a_{t+1} at step t (a_T = 0: it starts from zero); an invariant a needs no shift
    a_next = a if a.shape[0] == 1 else jnp.concatenate([a[1:], jnp.zeros_like(a[:1])])
    return _recur(a_next, dh, jnp.zeros_like(dh[0]), solver, reverse=True)


def _is_zero(t: Any) -> bool:
    return type(t) is jax.custom_derivatives.SymbolicZero


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def linear_scan(a: Array, b: Array, h0: Array, log_space: bool = False,
                solver: str = "associative") -> Array:
    """Solves ``h_t = a_t * h_{t-1} + b_t`` for every t.

    Differentiation: the tangent of the states is itself a linear recurrence in the same
    coefficients, ``dh_t = a_t dh_{t-1} + s_t`` with ``s_t = da_t h_{t-1} + db_t`` (and
    ``a_0 dh_0`` added at t = 0), solved by `jax.lax.custom_linear_solve`: forwards by the
    same solver for `jax.jvp`, and for reverse mode by the adjoint recurrence
    ``g_t = dL/dh_t + a_{t+1} g_{t+1}`` (`_adjoint`), after which ``dL/db_t = g_t``,
    ``dL/da_t = g_t h_{t-1}`` and ``dL/dh_0 = a_0 g_0`` are the transposes of single
    elementwise products (no conjugates: JAX's convention for complex cotangents) -- much
    cheaper than differentiating through the scan. Every mode of JAX autodiff works:
    `jax.grad`, `jax.jvp`, `jax.jacfwd`, `jax.linearize`, `jax.hessian`, under `jax.vmap`.

    Args:
      a: [T, B, N] coefficients (log a_t when `log_space`), real or complex; or [1, B, N]
        or [1, 1, N], the same at every step (its gradient is then summed over those axes).
      b: [T, B, N] inputs (log b_t when `log_space`).
      h0: [B, N] the state before step 0 (any sign, also in log space).
      log_space: `a`, `b` are logs (``a_t`` in (0, 1], ``b_t`` >= 0); the associative
        solver then combines with ``logaddexp``.
      solver: ``"associative"`` or ``"sequential"`` (see `default_solver`).

    Returns:
      h: [T, B, N] the states after each step.
    """
    return _forward(a, b, h0, log_space, solver)[0]


def _linear_scan_jvp(log_space, solver, primals, tangents):
    a, b, h0 = primals
    da, db, dh0 = tangents
    h, a_lin, b_lin = _forward(a, b, h0, log_space, solver)
    s = None  # the tangent's input term s_t
    if not _is_zero(da):
        h_prev = jnp.concatenate([h0.astype(h.dtype)[None], h[:-1]], axis=0)
        s = (da * a_lin if log_space else da) * h_prev  # d/dlog x = x d/dx
    if not _is_zero(db):
        if log_space:
            db = db * (jnp.exp(b) if b_lin is None else b_lin)
        s = db if s is None else s + db
    if not _is_zero(dh0):
        s0 = (a_lin[0] * dh0.astype(h.dtype))[None]
        s0 = jnp.concatenate([s0, jnp.zeros((h.shape[0] - 1, *h.shape[1:]), h.dtype)])
        s = s0 if s is None else s + s0
    if s is None:
        return h, jnp.zeros_like(h)
    s = jnp.broadcast_to(s.astype(h.dtype), h.shape)
    zero = jnp.zeros_like(h[0])

    def matvec(x):  # x_t - a_t x_{t-1}: what `solve` inverts (implicit differentiation)
        return x - a_lin * jnp.concatenate([zero[None], x[:-1]], axis=0)

    dh = lax.custom_linear_solve(
        matvec, s, solve=lambda _, s: _recur(a_lin, s, zero, solver),
        transpose_solve=lambda _, g: _adjoint(a_lin, g, solver))
    return h, dh


linear_scan.defjvp(_linear_scan_jvp, symbolic_zeros=True)


def _log_zero(dtype) -> Array:
    # log(0) as a finite number: -inf would make logaddexp's gradient NaN on masked prefixes
    # (0 * inf); exp() of this is exactly 0 and sums of a few of them stay finite.
    return jnp.asarray(jnp.finfo(dtype).min / 8, dtype)


def solve(rec: LinearRecurrence, mask: Array | None, reset: Array | None, h_reset: Any,
          solver: str) -> Any:
    """All states ``h_t`` [T, B, N] of `rec` (a pair of them for ``rec.pairs``), masked
    steps carrying the state over.

    Args:
      rec: the recurrence (see `LinearRecurrence`).
      mask: [T, B] booleans, True where a step is real, or None.
      reset: [T, B] booleans, True where the state is replaced by `h_reset` before the
        step, or None.
      h_reset: [B, N] the state a reset starts from (``rec.encode`` of the reset states).
      solver: ``"associative"`` or ``"sequential"``.
    """
    if rec.pairs:
        return solve_pairs(rec, mask, reset, h_reset)
    a, b = rec.a, rec.b
    if mask is not None:
        keep = mask[:, :, None]  # [T, B, 1]
        one, zero = (jnp.zeros((), a.dtype), _log_zero(b.dtype)) if rec.log_space else \
            (jnp.ones((), a.dtype), jnp.zeros((), b.dtype))
        a, b = jnp.where(keep, a, one), jnp.where(keep, b, zero)
    if reset is None:
        return linear_scan(a, b, rec.h0, rec.log_space, solver)
    r = reset[:, :, None]  # [T, B, 1]
    a = jnp.broadcast_to(a, b.shape)
    if not rec.log_space:  # h_t = a_t h_init + b_t at a reset: a zero coefficient
        b = jnp.where(r, b + a * h_reset[None].astype(b.dtype), b)
        return linear_scan(jnp.where(r, jnp.zeros((), a.dtype), a), b, rec.h0, False, solver)
    # Log space: h_t = (the recurrence cut at resets, from h0) + P_t h_init, where P_t is the
    # product of a since the last reset (0 before the first): P follows P_t = a_t P_{t-1}
    # restarted at P = a_t, a second linear recurrence. h_init may have any sign.
    zero = _log_zero(b.dtype)
    a_cut = jnp.where(r, zero, a)
    h = linear_scan(a_cut, b, rec.h0, True, solver)
    p = linear_scan(a_cut, jnp.where(r, a, zero), jnp.zeros_like(rec.h0), True, solver)
    return h + p * h_reset[None].astype(h.dtype)


def solve_pairs(rec: LinearRecurrence, mask: Array | None, reset: Array | None,
                h_reset: Any) -> tuple[Array, Array]:
    """`solve` for a complex recurrence in (real, imaginary) pairs (``rec.pairs``).

    One `jax.lax.scan` in real arithmetic, ``h_t = a_t h_{t-1} + b_t`` with the complex
    product written out; a reset replaces the state before its step and a masked step keeps
    it, inside the loop. JAX differentiates through the loop (no custom rule).

    Returns:
      ``(h_re, h_im)``: [T, B, N] each.
    """
    (a_re, a_im), b = rec.a, rec.b
    per_step = a_re.shape[0] != 1  # else the same a at every step: not an input of the loop

    def body(h, inp):
        a_t, (b_re, b_im), m_t, r_t = inp
        ar, ai = a_t if per_step else (a_re[0], a_im[0])
        h = reset_where(r_t, h_reset, h)
        h_re, h_im = h
        new_re, new_im = ar * h_re - ai * h_im + b_re, ar * h_im + ai * h_re + b_im
        if m_t is not None:
            keep = m_t[:, None]  # [B, 1]
            new_re, new_im = jnp.where(keep, new_re, h_re), jnp.where(keep, new_im, h_im)
        return (new_re, new_im), (new_re, new_im)

    return lax.scan(body, rec.h0, (rec.a if per_step else None, b, mask, reset))[1]


def hold_last_real(y: Array, mask: Array, y0: Array, reset: Array | None = None,
                   y0_reset: Array | None = None) -> Array:
    """Replaces each masked step's output by the last real step's of the same segment, or the
    carried output at the segment's start (`y0`, or `y0_reset` after a reset).

    Args:
      y: [T, B, H] outputs, right at real steps.
      mask: [T, B] booleans.
      y0: [B, H] the output carried before the first real step.
      reset: [T, B] booleans, True where a segment starts, or None.
      y0_reset: [B, H] the output carried at the start of a reset segment.
    """
    if static_size(y.shape[0]) is None:
        # A symbolic T (jax.export, ONNX): carry the last real output through a scan, as
        # jax2onnx cannot lower `lax.cummax` over a symbolic axis.
        def body(held, inp):
            y_t, m_t, r_t = inp
            if r_t is not None:
                assert y0_reset is not None
                held = jnp.where(r_t[:, None], y0_reset.astype(held.dtype), held)
            held = jnp.where(m_t[:, None], y_t, held)
            return held, held

        return lax.scan(body, y0.astype(y.dtype), (y, mask, reset))[1]
    steps = jnp.arange(y.shape[0], dtype=jnp.int32)[:, None]  # [T, 1]
    last = lax.cummax(jnp.where(mask, steps, -1), axis=0)  # [T, B]: last real step <= t
    index = jnp.broadcast_to(jnp.maximum(last, 0)[:, :, None], y.shape)
    held = jnp.take_along_axis(y, index, axis=0)
    start = y0[None].astype(y.dtype)
    valid = last >= 0
    if reset is not None:
        begin = lax.cummax(jnp.where(reset, steps, -1), axis=0)  # [T, B]: last reset <= t
        valid = valid & (last >= begin)
        assert y0_reset is not None
        start = jnp.where((begin >= 0)[:, :, None], y0_reset[None].astype(y.dtype), start)
    return jnp.where(valid[:, :, None], held, start)


def run_cell(cell: Any, params: Any, states: Any, xs: Array, mask: Array | None,
             reset: Array | None, reset_states: Any, dropout: Any,
             solver: str) -> tuple[Array, Any]:
    """One cell over a whole sequence (processing order), in one piece.

    Returns:
      ``(outputs [T, B, H], final_states)``; a masked step's output is the carried output
      (the cell's first state), never zeros.
    """
    # Log-space coefficients cost more to compute; only the associative solver needs them.
    rec = cell.linear_recurrence(params, xs, states, dropout,
                                 log_space=solver == "associative")
    h_reset = None if reset is None else rec.encode(reset_states)
    h = solve(rec, mask, reset, h_reset, solver)
    y = rec.readout(h)
    if mask is not None and not rec.readout_is_state:
        y = hold_last_real(y, mask, states[0], reset,
                           None if reset is None else reset_states[0])
    final = rec.final_states(jax.tree.map(lambda v: v[-1], h), y[-1])
    return y, _cells.restructure(final, states, type(cell).__name__)


#: With the sequential solver (CPU) and ``remat=None``, sequences longer than this run in
#: rematerialised chunks of this many steps (the layer's ``remat=k`` sets another length,
#: ``remat=False`` none). The gradient then keeps only each chunk's initial states, not the
#: [T, B, *] gates, coefficients and states of the whole sequence. Memory is time on CPU: a
#: fresh large buffer costs a page fault per 4 KiB on first touch, and XLA's temporaries of
#: 32 MiB and more are mapped afresh on every call (observed). The measurements behind 512
#: are in benchmarks/RESULTS.md.
CPU_CHUNK = 512


def parallel_rnn(cell: Any, params: Any, states: Any, xs: Array, mask: Array | None,
                 reset: Array | None, reset_states: Any, dropout: Any,
                 opts: LoopOptions) -> tuple[Array, Any]:
    """Runs `cell` over time as a linear recurrence; same contract as `scan_rnn`.

    Args:
      cell: a cell with ``linear_recurrence``, or a `StackedRNNCells` of them.
      params: the cell's params (a list per cell when stacked).
      states: the initial states' pytree (a tuple per cell when stacked).
      xs: [T, B, F] time-major inputs, in processing order.
      mask: [T, B] booleans, True where a step is real, or None.
      reset: [T, B] booleans, True where the states are replaced by `reset_states` before
        the step, or None.
      reset_states: states like `states` (used only with `reset`).
      dropout: what `jaxrnn._cells.make_dropout` returned for `cell`.
      opts: the loop's options: ``opts.solver`` solves the recurrence (the sequential one
        when T is symbolic); ``opts.remat`` (None: chunks of `CPU_CHUNK` steps with the
        sequential solver) cuts the sequence into rematerialised chunks. ``opts.unroll``
        has no loop to apply to.

    Returns:
      ``(outputs, final_states)``: outputs [T, B, H] in processing order when
      `return_sequences`, else [B, H]; final states with the structure of `states`.
    """
    # jax.lax.associative_scan cannot run over an axis of symbolic length: jax.export and
    # ONNX export with a symbolic T take the sequential solver.
    solver = opts.solver if static_size(xs.shape[0]) is not None else "sequential"
    auto = CPU_CHUNK if solver == "sequential" else None

    def run_one(c, p, s, x, mask, reset, rs, d, seq):
        del seq  # the whole sequence of outputs comes at no extra cost

        def piece(carry, inp):
            x_seg, m_seg, r_seg = inp
            ys, carry = run_cell(c, p, carry, x_seg, m_seg, r_seg, rs, d, solver)
            return carry, ys

        inputs = (x, mask, reset)
        k = segment_length(opts, x.shape[0], auto)
        final, ys = segmented(piece, s, inputs, k) if k else piece(s, inputs)
        return ys, final

    with jax.named_scope("parallel_rnn"):
        return run_layerwise(run_one, cell, params, states, xs, mask, reset, reset_states,
                             dropout, opts)
