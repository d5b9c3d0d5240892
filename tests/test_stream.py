"""`Stream`: a layer run a step (or a chunk) at a time equals the full-sequence pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from tests._reference import numpy_params

B, T, F = 3, 6, 4

# Sample 0 restarts at step 3; sample 1 ends in padding and restarts at step 2 (a chunk's
# first step with chunks of 2); sample 2 has a masked step in the middle that also starts
# a segment.
MASK = np.ones((B, T), bool)
MASK[1, 4:] = False
MASK[2, 3] = False
RESET = np.zeros((B, T), bool)
RESET[0, 3] = RESET[1, 2] = RESET[2, 3] = True


def _inputs():
    return jnp.asarray(np.random.default_rng(1).normal(size=(B, T, F)), jnp.float32)


LAYERS = {
    "lstm": jr.LSTM(5, return_sequences=True),
    "gru-last-output": jr.GRU(5),  # return_sequences=False
    "mingru": jr.RNN(jr.MinGRUCell(5), return_sequences=True),
}


@pytest.mark.parametrize("name", LAYERS)
def test_step_by_step_equals_full_pass(name):
    layer = LAYERS[name]
    x, params = _inputs(), numpy_params(layer, (B, T, F))
    full = jax.jit(lambda p, x: layer(p, x, mask=MASK, reset=RESET))(params, x)

    stream = jr.Stream(layer)
    step = jax.jit(stream)
    state = stream.reset_state(B)
    outs = []
    for t in range(T):
        y, state = step(params, x[:, t:t + 1], state, MASK[:, t:t + 1], RESET[:, t:t + 1])
        outs.append(y)
    assert step._cache_size() == 1  # one compiled step for the whole stream
    y = jnp.concatenate(outs, axis=1)
    if layer.return_sequences:
        np.testing.assert_allclose(y, full, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(y[:, -1], full, rtol=1e-5, atol=1e-6)


def test_sequential_in_chunks_with_a_learned_initial_state():
    model = jr.Sequential([jr.LSTM(5, return_sequences=True, learn_initial_state=True),
                           jr.RNN(jr.MinGRUCell(3), return_sequences=True)])
    x, params = _inputs(), numpy_params(model, (B, T, F))
    full = jax.jit(lambda p, x: model(p, x, mask=MASK, reset=RESET))(params, x)

    stream = jr.Stream(model)
    step = jax.jit(stream)
    state = stream.reset_state(B, params=params)
    outs = []
    for t in range(0, T, 2):
        y, state = step(params, x[:, t:t + 2], state, MASK[:, t:t + 2], RESET[:, t:t + 2])
        outs.append(y)
    assert step._cache_size() == 1
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, rtol=1e-5, atol=1e-6)
    assert isinstance(state, tuple) and len(state) == 2
    assert isinstance(state[0], jr.LSTMState)


def test_layers_that_cannot_stream_say_why():
    with pytest.raises(ValueError, match="Bidirectional layer, which cannot run step by step"):
        jr.Stream(jr.Bidirectional(jr.GRU(3, return_sequences=True)))
    with pytest.raises(ValueError, match=r"layers\[1\] is a go_backwards=True layer"):
        jr.Stream(jr.Sequential([jr.GRU(3, return_sequences=True),
                                 jr.GRU(3, go_backwards=True)]))
    with pytest.raises(TypeError, match="must be a jaxrnn.RNN"):
        jr.Stream(jr.LSTMCell(3))


def test_misuse_names_the_fix():
    learned = jr.Stream(jr.GRU(3, learn_initial_state=True))
    with pytest.raises(ValueError, match="pass params=params"):
        learned.reset_state(2)
    stream = jr.Stream(jr.Sequential([jr.GRU(3, return_sequences=True), jr.GRU(2)]))
    params = [None, None]  # checked only for their count before the state
    with pytest.raises(ValueError, match=r"stream.reset_state\(batch_size\)"):
        stream(params, jnp.ones((2, 1, F)), stream.reset_state(2)[0])
