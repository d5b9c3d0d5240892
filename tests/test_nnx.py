"""`jaxrnn.nnx.Layer`: a jaxrnn layer as a Flax NNX module trains exactly like the layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

nnx = pytest.importorskip(
    "flax.nnx", reason="Flax is not installed (the nnx extra): pip install -e '.[test]'")
optax = pytest.importorskip(
    "optax", reason="optax is not installed (the test extra): pip install -e '.[test]'")

import jaxrnn as jr  # noqa: E402
import jaxrnn.nnx  # noqa: E402, F401
from tests._reference import numpy_params  # noqa: E402

B, T, F = 2, 5, 3
MASK = np.array([[True] * 5, [True] * 3 + [False] * 2])
RESET = np.zeros((B, T), bool)
RESET[0, 2] = True
# A deep bidirectional stack: every kind of params pytree (a list, dicts, the learned
# initial state's NamedTuple) and two engines (fused, parallel) at once.
STACK = jr.Sequential([
    jr.Bidirectional(jr.LSTM(3, return_sequences=True, learn_initial_state=True)),
    jr.RNN(jr.MinGRUCell(2), return_sequences=True)])


def _data():
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.normal(size=(B, T, F)), jnp.float32),
            jnp.asarray(rng.normal(size=(B, T, 2)), jnp.float32))


def test_training_through_nnx_equals_training_the_layer():
    x, y = _data()
    params = numpy_params(STACK, x.shape)
    model = jr.nnx.Layer(STACK, params=params)
    tx = optax.adam(1e-2)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def nnx_step(model, optimizer, x, y):
        def loss_fn(model):
            return jnp.mean((model(x, mask=MASK, reset=RESET) - y) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    @jax.jit
    def plain_step(params, opt_state, x, y):
        def loss_fn(params):
            return jnp.mean((STACK(params, x, mask=MASK, reset=RESET) - y) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = tx.init(params)
    nnx_losses, plain_losses = [], []
    for _ in range(3):
        nnx_losses.append(nnx_step(model, optimizer, x, y))
        params, opt_state, loss = plain_step(params, opt_state, x, y)
        plain_losses.append(loss)
    np.testing.assert_allclose(nnx_losses, plain_losses, rtol=1e-6)
    assert plain_losses[-1] < plain_losses[0]
    trained = model.get_params()
    assert jax.tree.structure(trained) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(trained), jax.tree.leaves(params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # The params are nnx.Params under jaxrnn's (Keras's) names.
    paths = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert {"params/0/forward/cell/kernel", "params/0/backward/initial_state/h",
            "params/1/kernel"} <= paths


def test_init_draws_from_the_params_stream():
    # Traced only (nnx.eval_shape): the structure and shapes, nothing to compile.
    model = nnx.eval_shape(lambda: jr.nnx.Layer(STACK, (None, None, F), rngs=nnx.Rngs(0)))
    want = jax.eval_shape(lambda k: STACK.init(k, (None, None, F)), jax.random.key(0))
    assert jax.tree.map(jnp.shape, model.get_params()) == jax.tree.map(jnp.shape, want)
    assert model.rngs is None  # no dropout: no stream kept


def test_dropout_follows_nnx_conventions():
    layer = jr.SimpleRNN(3, dropout=0.5, return_sequences=True)
    x, _ = _data()
    params = numpy_params(layer, x.shape)
    model = jr.nnx.Layer(layer, params=params, rngs=nnx.Rngs(dropout=1))
    key = jax.random.key(7)

    @nnx.jit
    def run(model, x, key):
        return (model(x, rngs=key),  # a key for this call
                model(x), model(x),  # the module's own dropout stream, advancing
                model(x, training=False),
                layer(params, x, training=True, rng=key), layer(params, x))

    with_key, first, second, off, want_with_key, want_off = run(model, x, key)
    np.testing.assert_array_equal(with_key, want_with_key)
    np.testing.assert_array_equal(off, want_off)
    assert not np.array_equal(first, second) and not np.array_equal(first, off)

    # Without a stream, training mode needs one; eval() (nnx.Dropout's switch) turns
    # dropout off, so the call draws no key. (Traced only: nothing to compile.)
    bare = jr.nnx.Layer(layer, params=params)
    with pytest.raises(ValueError, match=r"rngs=nnx.Rngs\(...\).*model.eval\(\)"):
        jax.eval_shape(lambda x: bare(x), x)
    bare.eval()
    assert bare.deterministic
    assert jax.eval_shape(lambda x: bare(x), x).shape == (B, T, 3)
    bare.train()
    assert not bare.deterministic
    assert nnx.view(bare, deterministic=True).deterministic


def test_errors_name_the_fix():
    with pytest.raises(TypeError, match=r"Wrap a cell in jaxrnn.RNN\(cell\)"):
        jr.nnx.Layer(jr.LSTMCell(3), (None, None, 3), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="pass input_shape and rngs"):
        jr.nnx.Layer(jr.LSTM(3), (None, None, 3))
    with pytest.raises(TypeError, match=r"rngs must be an nnx.Rngs"):
        jr.nnx.Layer(jr.LSTM(3), (None, None, 3), rngs=jax.random.key(0))
    params = numpy_params(jr.GRU(2), (None, None, 3))
    with pytest.raises(ValueError, match="F=3"):
        jr.nnx.Layer(jr.GRU(2), (None, None, 4), params=params)
    stack = jr.nnx.Layer(jr.Sequential([jr.GRU(2)]), params=[params])
    with pytest.raises(ValueError, match="Sequential takes neither initial_state"):
        stack(jnp.ones((1, 2, 3)), initial_state=[jnp.zeros((1, 2))])
