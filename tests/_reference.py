"""Plain-Python references for the tests: a loop over time with Keras 3's masking rules."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn._cells import initial_state_of


def python_loop(cell, params, x, mask=None, initial_state=None, go_backwards=False,
                zero_output_for_mask=False, dropout=None, stacked=False):
    """Runs `cell` over x [B, T, F] one step at a time, in a Python loop.

    Returns (outputs [B, T, H] in processing order, last output [B, H], final states).
    """
    b, t, _ = x.shape
    states = initial_state if initial_state is not None else initial_state_of(cell, b, x.dtype)
    order = range(t - 1, -1, -1) if go_backwards else range(t)
    outputs = []
    for i in order:
        if dropout is None:
            out, new = cell(params, x[:, i], states)
        else:
            out, new = cell.step(params, x[:, i], states, dropout)
        new = jax.tree.unflatten(jax.tree.structure(states), jax.tree.leaves(new))
        if mask is None:
            states = new
        else:
            keep = np.asarray(mask)[:, i][:, None]
            prev_states = states
            states = jax.tree.map(lambda n, s, k=keep: jnp.where(k, n, s), new, prev_states)
            if zero_output_for_mask:
                carried = jnp.zeros_like(out)
            else:
                carried = prev_states[-1][0] if stacked else prev_states[0]
            out = jnp.where(keep, out, carried)
        outputs.append(out)
    seq = jnp.stack(outputs, axis=1)
    return seq, outputs[-1], states


def numpy_params(layer, input_shape, seed=0, scale=0.5):
    """Params shaped as ``layer.init(key, input_shape)`` makes them, drawn with NumPy.

    For tests about anything but initialisation: `jax.random` compiles its generator anew
    for every param shape, which costs seconds per layer on a busy CPU.
    """
    shapes = jax.eval_shape(lambda k: layer.init(k, input_shape), jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.uniform(-scale, scale, s.shape), s.dtype),
                        shapes)
