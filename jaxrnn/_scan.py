"""The time loop: one `jax.lax.scan` with Keras 3's masking semantics.

Keras 3's scan path (its ``unroll=False``) is the reference, for every ``unroll``:

* a masked step carries every state over unchanged;
* its output is the carried-over output -- the first state of the (last) cell,
  i.e. the initial ``h`` before any real step -- or zeros with
  ``zero_output_for_mask=True``;
* the last output is the output of the last *processed* step, so it is zeros for
  a sample whose last processed step is masked when ``zero_output_for_mask=True``;
* ``go_backwards`` processes the sequence from its end and returns the outputs in
  processing order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def carried_output(states: Any, stacked: bool) -> Array:
    """The output a masked step repeats: the first state of the (last) cell."""
    return states[-1][0] if stacked else states[0]


def scan_rnn(
    step: Callable[[Array, Any], tuple[Array, Any]],
    init_states: Any,
    xs: Array,
    mask: Array | None,
    *,
    go_backwards: bool,
    unroll: int,
    zero_output_for_mask: bool,
    return_sequences: bool,
    stacked: bool,
) -> tuple[Array, Any]:
    """Runs `step` over time.

    Args:
      step: ``(x_t [B, F], states) -> (output [B, H], new_states)``.
      init_states: the states' pytree at t = 0.
      xs: [T, B, F] time-major inputs.
      mask: [T, B] booleans, True where a step is real, or None.
      go_backwards: process from the last step to the first.
      unroll: scan's ``unroll`` (a positive int).
      zero_output_for_mask: masked steps output zeros instead of the carried output.
      return_sequences: stack every step's output; else keep only the last one.
      stacked: the states are one entry per cell of a stack.

    Returns:
      ``(outputs, final_states)``: outputs [T, B, H] in processing order when
      `return_sequences`, else the last processed step's output [B, H].
    """

    def masked_step(states, x_t, m_t):
        out, new_states = step(x_t, states)
        if m_t is None:
            return out, new_states
        keep = m_t[:, None]  # [B, 1]
        new_states = jax.tree.map(lambda n, s: jnp.where(keep, n, s), new_states, states)
        if zero_output_for_mask:
            prev = jnp.zeros_like(out)
        else:
            prev = carried_output(states, stacked)
            if prev.shape != out.shape:
                raise ValueError(
                    "RNN: a masked step repeats the cell's first state as its output, but the "
                    f"output has shape {out.shape} and the first state {prev.shape}. Use "
                    "zero_output_for_mask=True, or a cell whose output is its first state."
                )
        return jnp.where(keep, out, prev.astype(out.dtype)), new_states

    if return_sequences:

        def body(states, inp):
            out, new_states = masked_step(states, *inp)
            return new_states, out

        final, outs = lax.scan(body, init_states, (xs, mask), reverse=go_backwards,
                               unroll=unroll)
        if go_backwards:
            outs = jnp.flip(outs, axis=0)  # processing order, as in Keras
        return outs, final

    # Only the last output is wanted: carry it rather than stacking T of them.
    def body_last(carry, inp):
        states, _ = carry
        out, new_states = masked_step(states, *inp)
        return (new_states, out), None

    out_shape = jax.eval_shape(lambda s, x: step(x, s)[0], init_states, xs[0])
    init = (init_states, jnp.zeros(out_shape.shape, out_shape.dtype))
    (final, last), _ = lax.scan(body_last, init, (xs, mask), reverse=go_backwards,
                                unroll=unroll)
    return last, final


def run_layerwise(
    run_one: Callable[..., tuple[Array | None, Any]],
    cell: Any,
    params: Any,
    states: Any,
    xs: Array,
    mask: Array | None,
    dropout: Any,
    *,
    go_backwards: bool,
    zero_output_for_mask: bool,
    return_sequences: bool,
    stacked: bool,
) -> tuple[Array, Any]:
    """Runs a cell, or a stack of cells layer by layer, each over the whole sequence.

    For engines that run one cell over all steps at once (the fused and parallel paths).
    A stack run layer by layer, every cell with the same mask, equals Keras's step-by-step
    stack: at a masked step every cell's states are reverted and the output replaced, so
    what a masked step feeds the cell above is never used.

    Args:
      run_one: ``(cell, params, states, xs [T, B, F], mask [T, B] | None, dropout, seq) ->
        (outputs [T, B, H] or None when not seq, final states like `states`)``, running one
        cell forwards with `scan_rnn`'s masking rule for states.
      cell, params, states, dropout: one cell's, or a `StackedRNNCells`' (one entry per cell).
      xs, mask, go_backwards, zero_output_for_mask, return_sequences, stacked: as for
        `scan_rnn`.

    Returns:
      What `scan_rnn` returns.
    """
    if go_backwards:  # flipped once; everything after runs forwards, in processing order
        xs = jnp.flip(xs, axis=0)
        mask = None if mask is None else jnp.flip(mask, axis=0)
    if stacked:
        cells = cell.cells
        per_cell = list(zip(params, states, dropout or (None,) * len(cells)))
    else:
        cells, per_cell = (cell,), [(params, states, dropout)]
    y: Array | None = xs
    finals = []
    for i, (c, (p, s, d)) in enumerate(zip(cells, per_cell)):
        y, final = run_one(c, p, s, y, mask, d, return_sequences or i < len(cells) - 1)
        finals.append(final)
    if return_sequences:
        assert y is not None
        outputs = y
        if zero_output_for_mask and mask is not None:
            outputs = jnp.where(mask[:, :, None], outputs, jnp.zeros((), outputs.dtype))
    else:
        # The last processed step's output: the last cell's first state, which a masked
        # step carries over (Keras), or zeros with zero_output_for_mask.
        outputs = carried_output(finals[-1], stacked=False)
        if zero_output_for_mask and mask is not None:
            outputs = jnp.where(mask[-1][:, None], outputs, jnp.zeros((), outputs.dtype))
    return outputs, (tuple(finals) if stacked else finals[0])
