"""The generic engine: any cell, one step at a time, in one `jax.lax.scan`.

It is the reference every fast engine is tested against. Keras 3's scan path (its
``unroll=False``) is its semantics, for every ``unroll``:

* a masked step carries every state over unchanged;
* its output is the carried-over output -- the first state of the (last) cell,
  i.e. the initial ``h`` before any real step -- or zeros with
  ``zero_output_for_mask=True``;
* the last output is the output of the last *processed* step, so it is zeros for
  a sample whose last processed step is masked when ``zero_output_for_mask=True``;
* a reset replaces the states by the reset states before the step runs.

Like every engine it runs forwards in processing order (see `jaxrnn._loop`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _cells
from jaxrnn._loop import (
    LoopOptions,
    auto_segment,
    batch_where,
    carried_output,
    reset_where,
    segment_length,
    segmented,
)

Array = jax.Array


def _saved_bytes(states: Any, xs: Array) -> int:
    """A rough size of what autodiff of the scan keeps per sequence: each step's input and
    about four state-sized intermediates per state (gates, activations)."""
    t, b = xs.shape[:2]
    f = math.prod(xs.shape[2:])  # a step's size: F, or a ConvLSTM's feature map
    state = sum(math.prod(s.shape[1:]) for s in jax.tree.leaves(states))
    return t * b * (f + 4 * state) * xs.dtype.itemsize


def scan_rnn(cell: Any, params: Any, states: Any, xs: Array, mask: Array | None,
             reset: Array | None, reset_states: Any, dropout: Any,
             opts: LoopOptions) -> tuple[Array, Any]:
    """Runs `cell` over time, one step at a time.

    Args:
      cell: any cell (a `StackedRNNCells` steps all its cells at each step).
      params: the cell's params.
      states: the states' pytree at t = 0.
      xs: [T, B, F] time-major inputs, in processing order.
      mask: [T, B] booleans, True where a step is real, or None.
      reset: [T, B] booleans, True where the states are replaced by `reset_states` before
        the step, or None.
      reset_states: states like `states` (used only with `reset`).
      dropout: from `jaxrnn._cells.make_dropout`.
      opts: the loop's options (``go_backwards`` is already applied to the inputs).

    Returns:
      ``(outputs, final_states)``: outputs [T, B, H] in processing order when
      `return_sequences`, else the last processed step's output [B, H].
    """
    stacked = _cells.is_stack(cell)

    def step(x_t, s):
        return _cells.apply_cell(cell, params, x_t, s, dropout)

    def masked_step(states, x_t, m_t, r_t):
        states = reset_where(r_t, reset_states, states)
        out, new_states = step(x_t, states)
        if m_t is None:
            return out, new_states
        new_states = jax.tree.map(lambda n, s: batch_where(m_t, n, s), new_states, states)
        if opts.zero_output_for_mask:
            prev = jnp.zeros_like(out)
        else:
            prev = carried_output(states, stacked)
            if prev.shape != out.shape:
                raise ValueError(
                    "RNN: a masked step repeats the cell's first state as its output, but the "
                    f"output has shape {out.shape} and the first state {prev.shape}. Use "
                    "zero_output_for_mask=True, or a cell whose output is its first state."
                )
        return batch_where(m_t, out, prev.astype(out.dtype)), new_states

    if opts.return_sequences:

        def body(states, inp):
            out, new_states = masked_step(states, *inp)
            return new_states, out

        carry = states
    else:  # only the last output is wanted: carry it rather than stacking T of them

        def body(carry, inp):
            out, new_states = masked_step(carry[0], *inp)
            return (new_states, out), None

        out_shape = jax.eval_shape(step, xs[0], states)[0]
        carry = (states, jnp.zeros(out_shape.shape, out_shape.dtype))

    def run(carry, inp):
        return lax.scan(body, carry, inp, unroll=opts.unroll)

    inputs = (xs, mask, reset)
    k = segment_length(opts, xs.shape[0], auto_segment(opts, _saved_bytes(states, xs),
                                                       xs.shape[0]))
    carry, outs = segmented(run, carry, inputs, k) if k else run(carry, inputs)
    if opts.return_sequences:
        return outs, carry
    final, last = carry
    return last, final
