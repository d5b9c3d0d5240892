"""Streaming: a trained layer run one step (or one chunk) at a time, the state carried by
the caller.

A stateful layer already does this for one `RNN`; `Stream` adds what a model needs around
it: a `Sequential` stack (whose layers each carry a state), every step's output whatever the
layer's `return_sequences`, a start from the learned initial state, and a clear error for
the layers that cannot stream (a backward direction needs the end of the sequence first).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn._layers import RNN, Bidirectional, Sequential

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Stream:
    """Runs a trained `RNN` or `Sequential` a chunk at a time, with the state in your hands.

    ``y, state = stream(params, x_chunk, state)`` runs the chunk (``[B, 1, F]`` for one
    step) from `state` and returns every step's output and the state after the chunk, so
    that chunk after chunk equals one pass over the whole sequence, masks and resets
    included. The params are the layer's own. `Stream` is static (hashable, no arrays):
    ``jax.jit(stream)`` compiles one step function for every call with chunks of one shape.

    Args:
      layer: an `RNN` (or shorthand) or a `Sequential` of them, processing forwards. A
        `Bidirectional` layer or ``go_backwards=True`` cannot stream: the backward
        direction starts from the sequence's end.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn as jr
      >>> layer = jr.GRU(4)  # return_sequences=False: the full pass gives the last output
      >>> params = layer.init(jax.random.key(0), (2, 6, 3))
      >>> x = jax.random.normal(jax.random.key(1), (2, 6, 3))  # [B, T, F]
      >>> stream = jr.Stream(layer)
      >>> step = jax.jit(stream)  # compiled once, for [B, 1, F] chunks
      >>> state = stream.reset_state(2)
      >>> for t in range(6):
      ...     y, state = step(params, x[:, t : t + 1], state)
      >>> y.shape  # [B, 1, H]: this chunk's outputs
      (2, 1, 4)
      >>> bool(jnp.allclose(y[:, -1], layer(params, x), atol=1e-6))
      True
    """

    layer: RNN | Sequential

    def __post_init__(self):
        layer = self.layer
        inner = layer.layers if isinstance(layer, Sequential) else (layer,)
        for i, lay in enumerate(inner):
            where = f"layers[{i}] is " if isinstance(layer, Sequential) else ""
            if isinstance(lay, Bidirectional):
                raise ValueError(
                    f"Stream: {where}a Bidirectional layer, which cannot run step by step: "
                    "its backward direction starts from the end of the sequence. Stream "
                    "only forward layers (run bidirectional models on whole sequences)."
                )
            if not isinstance(lay, RNN):
                raise TypeError(
                    f"Stream: layer must be a jaxrnn.RNN (or LSTM, GRU, SimpleRNN) or a "
                    f"jaxrnn.Sequential of them; got {type(lay).__name__}."
                )
            if lay.go_backwards:
                raise ValueError(
                    f"Stream: {where}a go_backwards=True layer, which cannot run step by "
                    "step: it starts from the end of the sequence. Stream only layers with "
                    "go_backwards=False."
                )

    @property
    def layers(self) -> tuple[RNN, ...]:
        """The stateful copies that run the chunks (return_sequences on, no return_state)."""
        inner = self.layer.layers if isinstance(self.layer, Sequential) else (self.layer,)
        return tuple(dataclasses.replace(lay, stateful=True, return_sequences=True,
                                         return_state=False) for lay in inner)

    @property
    def _stack(self) -> bool:
        return isinstance(self.layer, Sequential)

    def reset_state(self, batch_size: int, *, params: Any = None, dtype=None,
                    step_shape: Any = None) -> Any:
        """The state a stream starts from, as a full pass starts: the learned initial
        state where a layer has ``learn_initial_state`` (taken from `params`), else zeros.

        Args:
          batch_size: B.
          params: the layer's params; needed when a layer learns its initial state.
          dtype: dtype of the zeros; default the layer's `dtype`, else float32.
          step_shape: for ConvLSTM layers, whose states' shape follows the inputs': the
            shape of one step of the chunks, batch and time excluded (``x.shape[2:]``).

        Returns:
          The layer's state (an `LSTMState` for an LSTM); for a `Sequential`, a tuple with
          one state per layer.
        """
        states = []
        per_layer = params if self._stack else [params]
        step = None if step_shape is None else tuple(step_shape)
        for i, lay in enumerate(self.layers):
            zeros_dtype = dtype or lay.dtype or jnp.float32
            if lay.learn_initial_state:
                if params is None:
                    raise ValueError(
                        "Stream.reset_state: the layer learns its initial state, so pass "
                        "params=params to start from it, as the full pass does."
                    )
                self._check_length(params)
                states.append(lay.reset_state(batch_size, params=per_layer[i],
                                              step_shape=step))
            else:
                states.append(lay.reset_state(batch_size, dtype=zeros_dtype,
                                              step_shape=step))
            if step is not None:  # the next layer's steps are this one's outputs
                step = lay._output_step_shape(step)
        return tuple(states) if self._stack else states[0]

    def _check_length(self, params: Any) -> None:
        if self._stack:
            self.layer._check_length(params)  # type: ignore[union-attr]

    def __call__(self, params: Any, x: Array, state: Any, mask: Array | None = None,
                 reset: Array | None = None) -> tuple[Array, Any]:
        """Runs one chunk.

        Args:
          params: the layer's params.
          x: [B, T, F] float array, the chunk (T=1 for one step; [T, B, F] for time_major).
          state: from `reset_state`, or the state the previous call returned.
          mask: [B, T] booleans, True where a step is real: a masked step keeps the state
            and repeats the carried output, as in the full pass.
          reset: [B, T] booleans, True where a step starts a new segment: the state is
            replaced by the initial state before it (also at the chunk's first step).

        Returns:
          ``(outputs, new_state)``: outputs [B, T, H], every step's output (as the layer
          gives them with ``return_sequences=True``), and the state after the chunk.
        """
        layers = self.layers
        if not self._stack:
            return layers[0](params, x, mask=mask, reset=reset, state=state)
        self._check_length(params)
        if not isinstance(state, tuple) or len(state) != len(layers):
            raise ValueError(
                f"Stream: state must be a tuple with one state per layer ({len(layers)}), as "
                f"reset_state returns; got {type(state).__name__}"
                f"{f' of length {len(state)}' if isinstance(state, (tuple, list)) else ''}. "
                "Start with state = stream.reset_state(batch_size)."
            )
        new_states = []
        for i, (lay, p, s) in enumerate(zip(layers, params, state)):
            try:
                x, s = lay(p, x, mask=mask, reset=reset, state=s)
            except (ValueError, TypeError) as e:
                if type(e) not in (ValueError, TypeError):  # never rebuild a foreign type
                    raise
                raise type(e)(f"Stream: layers[{i}]: {e}") from None
            new_states.append(s)
        return x, tuple(new_states)
