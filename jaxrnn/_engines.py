"""Which engine runs a layer's time loop, and running it.

Three engines share one signature (see `jaxrnn._loop`): the generic scan
(`jaxrnn._scan.scan_rnn`, any cell, the reference), the fused LSTM/GRU loops with a
hand-written backward pass (`jaxrnn._fused.fused_rnn`) and the parallel-in-time linear
recurrences (`jaxrnn._parallel.parallel_rnn`). `choose` decides, once, for both the layer's
constructor (to reject impossible demands early) and its call.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn import _fused, _parallel, _scan
from jaxrnn._loop import LoopOptions, processing_order_reset

Array = jax.Array

ENGINES = {"scan": _scan.scan_rnn, "fused": _fused.fused_rnn, "parallel": _parallel.parallel_rnn}


def choose(cell: Any, parallel: bool | None, fused: bool | None) -> str:
    """The engine for `cell`: ``"parallel"``, ``"fused"`` or ``"scan"``.

    ``parallel`` / ``fused``: ``None`` takes the engine when the cell allows it, ``True``
    demands it, ``False`` refuses it. The parallel engine comes first (a cell is never
    eligible for both).

    Raises:
      ValueError: an engine is demanded that cannot run `cell`.
    """
    can_parallel, can_fuse = _parallel.supports(cell), _fused.supports(cell)
    if parallel and not can_parallel:
        raise ValueError(
            f"RNN: parallel=True needs a cell with a linear recurrence (MinGRUCell, "
            f"MinLSTMCell, LRUCell, or stacks of them); {type(cell).__name__} has none. Use "
            "parallel=None or False."
        )
    if fused and not can_fuse:
        raise ValueError(
            f"RNN: fused=True needs LSTMCell or GRUCell cells (alone or stacked); got "
            f"{type(cell).__name__}. Use fused=None or False."
        )
    if parallel is not False and can_parallel:
        return "parallel"
    if fused is not False and can_fuse:
        return "fused"
    return "scan"


def run(engine: str, cell: Any, params: Any, states: Any, xs: Array, mask: Array | None,
        reset: Array | None, reset_states: Any, dropout: Any,
        opts: LoopOptions) -> tuple[Array, Any]:
    """Runs `engine` over the sequence.

    Args:
      engine: from `choose`.
      cell, params, states, dropout: the cell's (a stack: one entry per cell).
      xs: [T, B, F] time-major inputs, in input order.
      mask: [T, B] booleans, True where a step is real, or None.
      reset: [T, B] booleans, True where a step starts a new segment (input order), or None.
      reset_states: the states a segment starts from, like `states` (with `reset` only).
      opts: the loop's options.

    Returns:
      ``(outputs, final_states)``: outputs [T, B, H] in processing order (reversed for
      ``go_backwards``, as in Keras) when ``opts.return_sequences``, else the last processed
      step's output [B, H].
    """
    if opts.go_backwards:  # flipped once: every engine runs forwards, in processing order
        xs = jnp.flip(xs, axis=0)
        mask = None if mask is None else jnp.flip(mask, axis=0)
        reset = None if reset is None else processing_order_reset(reset, True)
    return ENGINES[engine](cell, params, states, xs, mask, reset, reset_states, dropout, opts)
