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
Its solver is `jax.lax.associative_scan` (O(log T) depth) except on CPU, where a `lax.scan`
over the precomputed coefficients is faster (see `SOLVER`); there long sequences run in
chunks that the backward pass recomputes from their initial states (see `CHUNK`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _cells, _scan

Array = jax.Array


class LinearRecurrence(NamedTuple):
    """A cell's linear recurrence over one sequence, ``h_t = a_t * h_{t-1} + b_t``.

    ``readout`` and ``final_states`` close over the cell's params and inputs.
    """

    a: Array  # [T, B, N] coefficients a_t (log a_t when log_space), real or complex;
    # or [1, B or 1, N]: the same for every step (the LRU's lambda; a mask broadcasts it)
    b: Array  # [T, B, N] input terms b_t (log b_t when log_space), same dtype as a
    h0: Array  # [B, N] the state before the first step (any sign, also in log space)
    readout: Callable[[Array], Array]  # h [T, B, N] -> outputs [T, B, H], right at real steps
    final_states: Callable[[Array, Array], Any]  # (h_T [B, N], output_T [B, H]) -> states
    log_space: bool = False  # a, b hold log a_t (<= 0), log b_t (b_t > 0)
    readout_is_state: bool = True  # outputs at masked steps already equal the carried output


def supports(cell: Any) -> bool:
    """Whether `parallel_rnn` can run `cell`: it (or every cell of a stack) declares
    ``linear_recurrence``."""
    if isinstance(cell, _cells.StackedRNNCells):
        return all(supports(c) for c in cell.cells)
    return callable(getattr(cell, "linear_recurrence", None))


# Which solver runs the recurrence once its coefficients are computed: "associative"
# (`jax.lax.associative_scan`, O(log T) depth, for GPU/TPU), "sequential" (`jax.lax.scan`
# over the precomputed coefficients: O(T) depth, well under a microsecond per step), or
# None: "sequential" on CPU, "associative" elsewhere. Measured on a 2-core CPU, [4096, 8, 64]:
# the scan's forward takes ~1.5 ms, associative_scan's ~7 ms alone but 50-200 ms once XLA
# fuses its strided slices with the ops that produce its inputs; the associative solver's
# training step is 2-5x slower than the sequential solver's (benchmarks/bench_parallel.py).
SOLVER: str | None = None
SOLVERS = ("associative", "sequential")


def solver_for(solver: str | None = None) -> str:
    """The solver to use: `solver`, else `SOLVER`, else the backend's default."""
    solver = solver or SOLVER
    if solver is None:
        return "sequential" if jax.default_backend() == "cpu" else "associative"
    if solver not in SOLVERS:
        raise ValueError(f"parallel solver must be one of {SOLVERS} or None; got {solver!r}.")
    return solver


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


def _forward(a: Array, b: Array, h0: Array, log_space: bool, solver: str) -> tuple[Array, Array]:
    """All states ``h`` [T, B, N] and the linear-space coefficients ``a`` they came from."""
    if not log_space:
        return _recur(a, b, h0.astype(b.dtype), solver), a
    if solver == "sequential":  # |a_t| <= 1: the linear-space loop is as stable as the cell
        a = jnp.exp(a)
        return _recur(a, jnp.exp(b), h0, solver), a
    log_a, log_b = lax.associative_scan(_combine_log, (jnp.broadcast_to(a, b.shape), b), axis=0)
    # h_t = A_t h_0 + B_t: h_0 stays out of log space, so any sign is exact.
    return jnp.exp(log_a) * h0[None] + jnp.exp(log_b), jnp.exp(a)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def linear_scan(a: Array, b: Array, h0: Array, log_space: bool = False,
                solver: str = "associative") -> Array:
    """Solves ``h_t = a_t * h_{t-1} + b_t`` for every t.

    The backward pass is the adjoint recurrence, itself a reverse linear recurrence solved
    the same way: ``g_t = dL/dh_t + a_{t+1} g_{t+1}``, ``dL/db_t = g_t``,
    ``dL/da_t = g_t h_{t-1}``, ``dL/dh_0 = a_0 g_0`` (no conjugates: JAX's convention for
    complex cotangents) -- much cheaper than differentiating through the scan.

    Args:
      a: [T, B, N] coefficients (log a_t when `log_space`), real or complex; or [1, B, N]
        or [1, 1, N], the same at every step (its gradient is then summed over those axes).
      b: [T, B, N] inputs (log b_t when `log_space`).
      h0: [B, N] the state before step 0 (any sign, also in log space).
      log_space: `a`, `b` are logs (``a_t`` in (0, 1], ``b_t`` >= 0); the associative
        solver then combines with ``logaddexp``.
      solver: ``"associative"`` or ``"sequential"`` (see `SOLVER`).

    Returns:
      h: [T, B, N] the states after each step.
    """
    return _forward(a, b, h0, log_space, solver)[0]


def _linear_scan_fwd(a, b, h0, log_space, solver):
    h, a_lin = _forward(a, b, h0, log_space, solver)
    return h, (a_lin, b if log_space else None, h, h0)


def _linear_scan_bwd(log_space, solver, res, dh):
    a, log_b, h, h0 = res
    dh = dh.astype(h.dtype)
    if solver == "sequential" and a.shape[0] != 1:
        # g_t = dh_t + a_{t+1} g_{t+1}: carry a_{t+1} g_{t+1} instead of shifting a.
        def body(carry, a_dh):
            g_t = a_dh[1] + carry
            return a_dh[0] * g_t, g_t

        g = lax.scan(body, jnp.zeros_like(h[0]), (a, dh), reverse=True)[1]
    else:  # a_{t+1} at step t (a_T = 0: it starts from zero); an invariant a needs no shift
        a_next = a if a.shape[0] == 1 else jnp.concatenate([a[1:], jnp.zeros_like(a[:1])])
        g = _recur(a_next, dh, jnp.zeros_like(h[0]), solver, reverse=True)
    h_prev = jnp.concatenate([h0.astype(h.dtype)[None], h[:-1]], axis=0)
    da, db = g * h_prev, g
    if a.shape != da.shape:  # an `a` shared by steps (or batch rows) gets their sum
        da = jnp.sum(da, axis=tuple(i for i, (m, n) in enumerate(zip(a.shape, da.shape))
                                    if m != n), keepdims=True)
    dh0 = (a[0] * g[0]).astype(h0.dtype)
    if log_space:  # d/dlog x = x d/dx
        da, db = da * a, db * jnp.exp(log_b)
    return da, db, dh0


linear_scan.defvjp(_linear_scan_fwd, _linear_scan_bwd)


def _log_zero(dtype) -> Array:
    # log(0) as a finite number: -inf would make logaddexp's gradient NaN on masked prefixes
    # (0 * inf); exp() of this is exactly 0 and sums of a few of them stay finite.
    return jnp.asarray(jnp.finfo(dtype).min / 8, dtype)


def solve(rec: LinearRecurrence, mask: Array | None, solver: str | None = None) -> Array:
    """All states ``h_t`` [T, B, N] of `rec`, masked steps carrying the state over.

    Args:
      rec: the recurrence (see `LinearRecurrence`).
      mask: [T, B] booleans, True where a step is real, or None.
      solver: see `SOLVER`.
    """
    a, b = rec.a, rec.b
    if mask is not None:
        keep = mask[:, :, None]  # [T, B, 1]
        one, zero = (jnp.zeros((), a.dtype), _log_zero(b.dtype)) if rec.log_space else \
            (jnp.ones((), a.dtype), jnp.zeros((), b.dtype))
        a, b = jnp.where(keep, a, one), jnp.where(keep, b, zero)
    return linear_scan(a, b, rec.h0, rec.log_space, solver_for(solver))


def hold_last_real(y: Array, mask: Array, y0: Array) -> Array:
    """Replaces each masked step's output by the last real step's (or `y0` before any).

    Args:
      y: [T, B, H] outputs, right at real steps.
      mask: [T, B] booleans.
      y0: [B, H] the output carried before the first real step.
    """
    steps = jnp.arange(y.shape[0], dtype=jnp.int32)[:, None]  # [T, 1]
    last = lax.cummax(jnp.where(mask, steps, -1), axis=0)  # [T, B]: last real step <= t
    index = jnp.broadcast_to(jnp.maximum(last, 0)[:, :, None], y.shape)
    held = jnp.take_along_axis(y, index, axis=0)
    return jnp.where((last >= 0)[:, :, None], held, y0[None].astype(y.dtype))


def run_cell(cell: Any, params: Any, states: Any, xs: Array, mask: Array | None,
             dropout: Any, solver: str | None = None) -> tuple[Array, Any]:
    """One cell over a whole sequence (processing order), in one piece.

    Returns:
      ``(outputs [T, B, H], final_states)``; a masked step's output is the carried output
      (the cell's first state), never zeros.
    """
    solver = solver_for(solver)
    # Log-space coefficients cost more to compute; only the associative solver needs them.
    rec = cell.linear_recurrence(params, xs, states, dropout,
                                 log_space=solver == "associative")
    h = solve(rec, mask, solver)
    y = rec.readout(h)
    if mask is not None and not rec.readout_is_state:
        y = hold_last_real(y, mask, states[0])
    final = rec.final_states(h[-1], y[-1])
    return y, _cells.restructure(final, states, type(cell).__name__)


# With the sequential solver (CPU), sequences longer than this run in chunks of CHUNK steps,
# the state carried from one chunk to the next, and each chunk is rematerialised in the
# backward pass (`jax.checkpoint`): the gradient keeps only each chunk's initial states, not
# the [T, B, *] gates, coefficients and states of the whole sequence. Memory is time on CPU:
# a fresh large buffer costs a page fault per 4 KiB on first touch, and XLA's temporaries of
# 32 MiB and more are mapped afresh on every call (observed; environment settings for glibc's
# malloc do not change it). Measured on a 2-core CPU, minGRU training step,
# B=8, T=4096, F=32, H=64: 31 ms and 82 MB of XLA temporaries in one piece (21,000 page
# faults per call); 11 ms and 28 MB in rematerialised chunks of 256, 10 ms in chunks of 512,
# 11 ms in chunks of 1024 (interleaved runs, one process).
CHUNK: int | None = 512


def _run_chunked(cell: Any, params: Any, states: Any, xs: Array, mask: Array | None,
                 dropout: Any, solver: str, chunk: int | None) -> tuple[Array, Any]:
    """`run_cell` over consecutive chunks of `chunk` steps (all at once when None)."""
    t = xs.shape[0]
    if chunk is None or t <= chunk:
        return run_cell(cell, params, states, xs, mask, dropout, solver)
    n, rest = divmod(t, chunk)

    def split(a):
        return None if a is None else a[:n * chunk].reshape(n, chunk, *a.shape[1:])

    @jax.checkpoint  # the backward pass recomputes a chunk from its initial states
    def body(carry, inp):
        x_chunk, mask_chunk = inp
        ys, carry = run_cell(cell, params, carry, x_chunk, mask_chunk, dropout, solver)
        return carry, ys

    states, ys = lax.scan(body, states, (split(xs), split(mask)))
    ys = ys.reshape(n * chunk, *ys.shape[2:])
    if rest:
        tail = slice(n * chunk, None)
        ys_rest, states = run_cell(cell, params, states, xs[tail],
                                   None if mask is None else mask[tail], dropout, solver)
        ys = jnp.concatenate([ys, ys_rest], axis=0)
    return ys, states


def parallel_rnn(
    cell: Any,
    params: Any,
    states: Any,
    xs: Array,
    mask: Array | None,
    dropout: Any,
    *,
    go_backwards: bool,
    unroll: int,
    zero_output_for_mask: bool,
    return_sequences: bool,
    stacked: bool,
) -> tuple[Array, Any]:
    """Runs `cell` over time with `jax.lax.associative_scan`; same contract as `scan_rnn`.

    Args:
      cell: a cell with ``linear_recurrence``, or a `StackedRNNCells` of them (`stacked`).
      params: the cell's params (a list per cell when stacked).
      states: the initial states' pytree (a tuple per cell when stacked).
      xs: [T, B, F] time-major inputs.
      mask: [T, B] booleans, True where a step is real, or None.
      dropout: what `jaxrnn._cells.make_dropout` returned for `cell`.
      go_backwards: process from the last step to the first.
      unroll: ignored (there is no loop).
      zero_output_for_mask: masked steps output zeros instead of the carried output.
      return_sequences: return every step's output, else only the last processed one.
      stacked: `cell` is a `StackedRNNCells`.

    Returns:
      ``(outputs, final_states)``: outputs [T, B, H] in processing order when
      `return_sequences`, else [B, H]; final states with the structure of `states`.
    """
    del unroll
    solver = solver_for()
    chunk = CHUNK if solver == "sequential" else None

    def run_one(c, p, s, x, mask, d, seq):
        del seq  # the whole sequence of outputs comes at no extra cost
        return _run_chunked(c, p, s, x, mask, d, solver, chunk)

    with jax.named_scope("parallel_rnn"):
        return _scan.run_layerwise(run_one, cell, params, states, xs, mask, dropout,
                                   go_backwards=go_backwards,
                                   zero_output_for_mask=zero_output_for_mask,
                                   return_sequences=return_sequences, stacked=stacked)
