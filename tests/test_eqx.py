"""`jaxrnn.eqx.Layer`: a jaxrnn layer as an Equinox module trains exactly like the layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

eqx = pytest.importorskip(
    "equinox", reason="Equinox is not installed (the equinox extra): pip install -e '.[test]'")
optax = pytest.importorskip(
    "optax", reason="optax is not installed (the test extra): pip install -e '.[test]'")

import jaxrnn as jr  # noqa: E402
import jaxrnn.eqx  # noqa: E402, F401
from tests._reference import numpy_params  # noqa: E402

B, T, F = 2, 5, 3
MASK = np.array([[True] * 5, [True] * 3 + [False] * 2])
RESET = np.zeros((B, T), bool)
RESET[0, 2] = True
# Equinox holds any pytree as a field; test_nnx.py trains a deep bidirectional stack, which
# exercises the adapters' shared call path, so one layer (with a learned initial state)
# keeps this test's compilation small.
LAYER = jr.GRU(2, return_sequences=True, learn_initial_state=True)


def _data():
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.normal(size=(B, T, F)), jnp.float32),
            jnp.asarray(rng.normal(size=(B, T, 2)), jnp.float32))


def test_training_through_equinox_equals_training_the_layer():
    x, y = _data()
    params = numpy_params(LAYER, x.shape)
    model = jr.eqx.Layer(LAYER, params=params)
    tx = optax.adam(1e-2)

    @eqx.filter_jit
    def eqx_step(model, opt_state, x, y):
        @eqx.filter_value_and_grad
        def loss_fn(model):
            return jnp.mean((model(x, mask=MASK, reset=RESET) - y) ** 2)

        loss, grads = loss_fn(model)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, loss

    @jax.jit
    def plain_step(params, opt_state, x, y):
        def loss_fn(params):
            return jnp.mean((LAYER(params, x, mask=MASK, reset=RESET) - y) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    eqx_state = tx.init(eqx.filter(model, eqx.is_array))
    plain_state = tx.init(params)
    eqx_losses, plain_losses = [], []
    for _ in range(3):
        model, eqx_state, loss = eqx_step(model, eqx_state, x, y)
        eqx_losses.append(loss)
        params, plain_state, loss = plain_step(params, plain_state, x, y)
        plain_losses.append(loss)
    np.testing.assert_allclose(eqx_losses, plain_losses, rtol=1e-6)
    assert plain_losses[-1] < plain_losses[0]
    assert model.layer is LAYER  # a static field: never trained, never traced
    assert jax.tree.structure(model.params) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_init_uses_the_key():
    # Traced only (eqx.filter_eval_shape): the structure and shapes, nothing to compile.
    model = eqx.filter_eval_shape(jr.eqx.Layer, LAYER, (None, None, F), key=jax.random.key(0))
    want = jax.eval_shape(lambda k: LAYER.init(k, (None, None, F)), jax.random.key(0))
    assert jax.tree.map(jnp.shape, model.params) == jax.tree.map(jnp.shape, want)


def test_dropout_follows_equinox_conventions():
    layer = jr.SimpleRNN(3, dropout=0.5, return_sequences=True)
    x, _ = _data()
    model = jr.eqx.Layer(layer, params=numpy_params(layer, x.shape))
    key = jax.random.key(7)

    @eqx.filter_jit
    def run(model, x, key):
        return (model(x, key=key), model(x, training=False),
                layer(model.params, x, training=True, rng=key), layer(model.params, x))

    with_key, off, want_with_key, want_off = run(model, x, key)
    np.testing.assert_array_equal(with_key, want_with_key)
    np.testing.assert_array_equal(off, want_off)
    assert not np.array_equal(with_key, off)

    # Training mode needs key=; eqx.nn.inference_mode turns dropout off, so the call
    # needs none. (Traced only: nothing to compile.)
    with pytest.raises(ValueError, match=r"key=jax.random.key\(...\).*inference_mode"):
        jax.eval_shape(lambda x: model(x), x)
    inference = eqx.nn.inference_mode(model)
    assert inference.inference
    assert jax.eval_shape(lambda x: inference(x), x).shape == (B, T, 3)


def test_errors_name_the_fix():
    with pytest.raises(TypeError, match=r"Wrap a cell in jaxrnn.RNN\(cell\)"):
        jr.eqx.Layer(jr.GRUCell(3), (None, None, 3), key=jax.random.key(0))
    with pytest.raises(ValueError, match="pass input_shape and key"):
        jr.eqx.Layer(jr.GRU(3), (None, None, 3))
    params = numpy_params(jr.GRU(2), (None, None, 3))
    with pytest.raises(ValueError, match="F=3"):
        jr.eqx.Layer(jr.GRU(2), (None, None, 4), params=params)
    stack = jr.eqx.Layer(jr.Sequential([jr.GRU(2)]), params=[params])
    with pytest.raises(ValueError, match="Sequential takes neither initial_state"):
        stack(jnp.ones((1, 2, 3)), state=(jnp.zeros((1, 2)),))
