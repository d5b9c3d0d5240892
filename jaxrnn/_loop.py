"""What every time-loop engine shares: the loop's options, resets, checkpointed segments and
the layer-by-layer driver.

An engine (`jaxrnn._scan.scan_rnn`, `jaxrnn._fused.fused_rnn`,
`jaxrnn._parallel.parallel_rnn`) has one signature,

    engine(cell, params, states, xs, mask, reset, reset_states, dropout, opts)
        -> (outputs, final_states)

and runs FORWARDS over ``xs`` [T, B, F] in processing order: `jaxrnn._engines.run` flips
the inputs of a ``go_backwards`` layer once, before any engine sees them, so no engine
handles direction. What an engine must do:

* Keras 3's masking (its scan path): a masked step carries every state over; its output is
  the carried output -- the first state of the (last) cell -- or zeros with
  ``opts.zero_output_for_mask``; the last output is the last processed step's.
* Resets: ``reset[t, b]`` replaces sample b's states by ``reset_states`` before step t runs
  (`reset_where`); a reset changes only the states, masks keep their meaning.
* ``opts.remat``: checkpointed segments of the sequence (`segment_length`, `segmented`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _cells

Array = jax.Array


class LoopOptions(NamedTuple):
    """What the time loop must do, handed to whichever engine runs it (static, hashable)."""

    go_backwards: bool = False  # process the sequence from its end
    unroll: int = 1  # lax.scan's unroll (a positive int)
    zero_output_for_mask: bool = False  # masked steps output zeros
    return_sequences: bool = False  # every step's output, else only the last one
    remat: bool | int | None = None  # see `segment_length`
    remat_threshold: int = 1 << 30  # bytes of saved activations above which remat=None acts
    solver: str = "sequential"  # the parallel cells' solver: "sequential" or "associative"


def static_size(d: Any) -> int | None:
    """`d` as an int, or None for a symbolic dimension (`jax.export`'s shape polymorphism)."""
    try:
        return int(d)
    except Exception:  # an InconclusiveDimensionOperation, whatever module defines it
        return None


def segment_length(opts: LoopOptions, t: Any, auto: int | None) -> int | None:
    """The length of the checkpointed segments to cut `t` steps into, or None for one piece.

    Args:
      opts: ``opts.remat`` is ``False`` (never), ``True`` (segments of about sqrt(T), at
        least 16), an int k (segments of k steps) or ``None``: `auto`, the engine's own
        choice (None: no segments).
      t: T, the number of steps; when it is symbolic, ``remat=None`` runs in one piece.
      auto: the engine's automatic segment length for ``remat=None``.

    Raises:
      ValueError: remat is True or an int while T is symbolic.
    """
    remat = opts.remat
    if remat is False:
        return None
    t_static = static_size(t)
    if t_static is None:
        if remat is None:
            return None  # a safe default: no decision may depend on a symbolic size
        raise ValueError(
            f"RNN: remat={remat!r} needs a static number of steps to cut into segments; the "
            "time axis is symbolic here. Use remat=None or False with a symbolic time axis."
        )
    if remat is True:
        k: int | None = max(16, math.isqrt(t_static))
    elif remat is None:
        k = auto
    else:
        k = remat
    return k if k is not None and k < t_static else None


def auto_segment(opts: LoopOptions, saved_bytes: Any, t: Any) -> int | None:
    """The automatic segment length: about sqrt(T) steps when `saved_bytes` (the activations
    one piece would keep for the backward pass) exceed ``opts.remat_threshold``, else None."""
    saved = static_size(saved_bytes)
    t_static = static_size(t)
    if saved is None or t_static is None or saved <= opts.remat_threshold:
        return None
    return max(16, math.isqrt(t_static))


def segmented(run: Callable[[Any, Any], tuple[Any, Any]], carry: Any, xs: Any,
              k: int) -> tuple[Any, Any]:
    """`run` over consecutive segments of `k` steps, each under `jax.checkpoint`.

    The forward pass keeps only the carry at segment boundaries and the backward pass
    recomputes one segment at a time: O(T/k + k) steps of activations instead of O(T).

    Args:
      run: ``(carry, xs_segment) -> (carry, ys_segment)``; ys [k, ...] (or None).
      carry: the loop's carry at step 0.
      xs: a pytree of [T, ...] arrays (None leaves allowed).
      k: the segment length, < T.

    Returns:
      ``(final carry, ys)`` with ys [T, ...], as ``run(carry, xs)`` returns them.
    """
    t = jax.tree.leaves(xs)[0].shape[0]
    n, rest = divmod(t, k)
    segment = jax.checkpoint(run)
    head = jax.tree.map(lambda a: a[:n * k].reshape(n, k, *a.shape[1:]), xs)
    carry, ys = lax.scan(segment, carry, head)
    ys = jax.tree.map(lambda a: a.reshape(n * k, *a.shape[2:]), ys)
    if rest:
        carry, ys_rest = segment(carry, jax.tree.map(lambda a: a[n * k:], xs))
        ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=0), ys, ys_rest)
    return carry, ys


def batch_where(m: Array, a: Array, b: Array) -> Array:
    """``a`` where ``m`` [B] is True, else ``b``: `m` broadcast over every axis after the
    batch, so states of any rank ([B, H], or a ConvLSTM's [B, *spatial, C]) select whole
    samples."""
    return jnp.where(jnp.expand_dims(m, tuple(range(1, jnp.ndim(a)))), a, b)


def reset_where(r_t: Array | None, reset_states: Any, states: Any) -> Any:
    """`states` with the samples where ``r_t`` [B] is True replaced by `reset_states`."""
    if r_t is None:
        return states
    return jax.tree.map(lambda i, s: batch_where(r_t, i.astype(s.dtype), s), reset_states,
                        states)


def processing_order_reset(reset: Array, go_backwards: bool) -> Array:
    """A [T, B] input-order reset (True: the step starts a segment) in processing order.

    Backwards, a segment ``[s, e]`` runs from e down to s, so the states are replaced before
    step e: where the NEXT input step starts a segment (``reset[e + 1]``).
    """
    if not go_backwards:
        return reset
    # Flipped, then shifted one step later (the first processed step never resets), as
    # slices and `lax.concatenate`: they keep a symbolic T when exported to ONNX, where
    # jax2onnx 0.17 cannot size `lax.pad`, a gather such as ``reset[1:]``, nor
    # `jnp.concatenate` (which it replaces by its own, sized as its first operand).
    flipped = jnp.flip(reset, axis=0)
    first = jnp.zeros_like(lax.slice_in_dim(flipped, 0, 1))  # [1, B]
    return lax.concatenate([first, lax.slice_in_dim(flipped, 0, reset.shape[0] - 1)], 0)


def carried_output(states: Any, stacked: bool) -> Array:
    """The output a masked step repeats: the first state of the (last) cell."""
    return states[-1][0] if stacked else states[0]


def run_layerwise(
    run_one: Callable[..., tuple[Array | None, Any]],
    cell: Any,
    params: Any,
    states: Any,
    xs: Array,
    mask: Array | None,
    reset: Array | None,
    reset_states: Any,
    dropout: Any,
    opts: LoopOptions,
) -> tuple[Array, Any]:
    """Runs a cell, or a stack of cells layer by layer, each over the whole sequence.

    For engines that run one cell over all steps at once (the fused and parallel paths).
    A stack run layer by layer, every cell with the same mask and resets, equals Keras's
    step-by-step stack: at a masked step every cell's states are reverted and the output
    replaced, so what a masked step feeds the cell above is never used; a reset replaces
    every cell's states at the same step.

    Args:
      run_one: ``(cell, params, states, xs [T, B, F], mask [T, B] | None, reset [T, B] |
        None, reset_states, dropout, seq) -> (outputs [T, B, H] or None when not seq,
        final states like `states`)``, running one cell forwards with the masking rule for
        states.
      cell, params, states, reset_states, dropout: one cell's, or a `StackedRNNCells'` (one
        entry per cell).
      xs, mask, reset, opts: as for an engine (processing order).

    Returns:
      What an engine returns.
    """
    stacked = _cells.is_stack(cell)
    if stacked:
        cells = cell.cells
        n = len(cells)
        per_cell = list(zip(params, states, reset_states or (None,) * n, dropout or (None,) * n))
    else:
        cells, per_cell = (cell,), [(params, states, reset_states, dropout)]
    y: Array | None = xs
    finals = []
    for i, (c, (p, s, rs, d)) in enumerate(zip(cells, per_cell)):
        y, final = run_one(c, p, s, y, mask, reset, rs, d,
                           opts.return_sequences or i < len(cells) - 1)
        finals.append(final)
    if opts.return_sequences:
        assert y is not None
        outputs = y
        if opts.zero_output_for_mask and mask is not None:
            outputs = jnp.where(mask[:, :, None], outputs, jnp.zeros((), outputs.dtype))
    else:
        # The last processed step's output: the last cell's first state, which a masked
        # step carries over (Keras), or zeros with zero_output_for_mask.
        outputs = carried_output(finals[-1], stacked=False)
        if opts.zero_output_for_mask and mask is not None:
            outputs = jnp.where(mask[-1][:, None], outputs, jnp.zeros((), outputs.dtype))
    return outputs, (tuple(finals) if stacked else finals[0])
