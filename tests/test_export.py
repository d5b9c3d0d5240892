"""`jax.export` with a symbolic batch and time axis: every layer on its default engine, with
masks, resets and initial states as inputs; the serialized artifact, deserialized, equals the
layer at several (B, T)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

import jaxrnn as jr

F = 3
LAYERS = {
    "lstm": lambda: jr.LSTM(4, return_sequences=True, return_state=True),
    "gru_backwards": lambda: jr.GRU(4, go_backwards=True),
    "simple": lambda: jr.SimpleRNN(4, return_sequences=True),
    "mingru": lambda: jr.RNN(jr.MinGRUCell(4), return_sequences=True, return_state=True),
    "lru_bidirectional": lambda: jr.Bidirectional(jr.RNN(jr.LRUCell(F), return_sequences=True)),
    "stack": lambda: jr.Sequential([jr.Bidirectional(jr.LSTM(4, return_sequences=True)),
                                    jr.GRU(3)]),
    "learned": lambda: jr.LSTM(4, return_sequences=True, learn_initial_state=True),
}


def _inputs(b, t, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, t, F)).astype(np.float32)
    mask = np.ones((b, t), bool)
    mask[0, t - 1] = False
    reset = rng.random((b, t)) < 0.3
    return x, mask, reset


@pytest.mark.parametrize("name", list(LAYERS))
def test_export_symbolic_batch_and_time(name):
    layer = LAYERS[name]()
    params = layer.init(jax.random.key(0), (None, None, F))
    with_state = isinstance(layer, jr.RNN) and name == "lstm"

    def fn(params, x, mask, reset, *state):
        kw = {"initial_state": list(state)} if state else {}
        return layer(params, x, mask=mask, reset=reset, **kw)

    b, t = export.symbolic_shape("b, t")
    specs = [jax.ShapeDtypeStruct((b, t, F), jnp.float32), jax.ShapeDtypeStruct((b, t), bool),
             jax.ShapeDtypeStruct((b, t), bool)]
    if with_state:
        specs += [jax.ShapeDtypeStruct((b, 4), jnp.float32)] * 2
    exported = export.export(jax.jit(fn))(params, *specs)
    restored = export.deserialize(exported.serialize())
    for i, (bb, tt) in enumerate([(3, 9), (1, 1)]):
        args = _inputs(bb, tt, i)
        if with_state:
            args += (np.full((bb, 4), 0.5, np.float32), np.full((bb, 4), -0.5, np.float32))
        got, want = restored.call(params, *args), fn(params, *args)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


GRAD_LAYERS = {
    "gru": lambda: jr.GRU(4, return_sequences=True),
    # a symbolic T selects the LRU's real (re, im) form, which JAX differentiates
    "lru_backwards": lambda: jr.RNN(jr.LRUCell(F), return_sequences=True, go_backwards=True),
    # associative_scan needs a static length: the sequential solver takes over
    "mingru_associative": lambda: jr.RNN(jr.MinGRUCell(4), return_sequences=True,
                                         solver="associative"),
}


@pytest.mark.parametrize("name", list(GRAD_LAYERS))
def test_export_training_step_symbolic_time(name):
    """The gradient exports too (the fused path's hand-written backward among them)."""
    layer = GRAD_LAYERS[name]()
    params = layer.init(jax.random.key(0), (None, None, F))

    def loss(params, x, mask, reset):
        return jnp.mean(layer(params, x, mask=mask, reset=reset) ** 2)

    t, = export.symbolic_shape("t")
    grad = jax.jit(jax.grad(loss))
    exported = export.export(grad)(params, jax.ShapeDtypeStruct((2, t, F), jnp.float32),
                                   jax.ShapeDtypeStruct((2, t), bool),
                                   jax.ShapeDtypeStruct((2, t), bool))
    x, mask, reset = _inputs(2, 7, 0)
    for g, w in zip(jax.tree.leaves(exported.call(params, x, mask, reset)),
                    jax.tree.leaves(grad(params, x, mask, reset)), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
