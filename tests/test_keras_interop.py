"""from_keras: built Keras 3 layers (JAX backend) become jaxrnn layers with the same
configuration and the same outputs, masks and initial states included."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from jaxrnn._keras import from_keras

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":  # pragma: no cover - depends on the environment
    pytest.skip("from_keras tests expect KERAS_BACKEND=jax", allow_module_level=True)

B, T, F = 3, 5, 2
ATOL = 1e-5


def _lenient():
    """Keras's own JAX code broadcasts across ranks; conftest forbids it for jaxrnn's sake."""
    return jax.numpy_rank_promotion("allow")


def _x(seed=0):
    return np.random.default_rng(seed).normal(size=(B, T, F)).astype(np.float32)


MASK = np.array([[1, 1, 1, 0, 0], [0, 1, 0, 1, 1], [1, 1, 1, 1, 1]], bool)


def _randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32)
                       for w in layer.get_weights()])


def _build(layer, seed=1):
    with _lenient():
        layer.build((B, T, F))  # not a call: that would compile Keras's loop once more
    _randomize(layer, seed)
    return layer


def _keras_call(layer, x, **kw):
    with _lenient():
        out = layer(x, **kw)
    return jax.tree.map(lambda a: np.asarray(keras.ops.convert_to_numpy(a)), out)


def _assert_close(got, want):
    got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(got_leaves) == len(want_leaves)
    for g, w in zip(got_leaves, want_leaves):
        assert np.shape(g) == np.shape(w)
        np.testing.assert_allclose(np.asarray(g), w, atol=ATOL, rtol=ATOL)


def _check(keras_layer, masks=(None, MASK)):
    layer, params = from_keras(keras_layer)
    x = _x(2)
    # jaxrnn's results for every mask in one compiled call (one compilation, not one each).
    gots = jax.jit(lambda p, x: [layer(p, x, mask=None if m is None else jnp.asarray(m))
                                 for m in masks])(params, jnp.asarray(x))
    for mask, got in zip(masks, gots):
        kw = {} if mask is None else {"mask": mask}
        want = _keras_call(keras_layer, x, **kw)
        _assert_close(got, want)
    return layer, params


LAYERS = {
    "simple_relu": lambda: keras.layers.SimpleRNN(4, activation="relu", return_sequences=True),
    "simple_nobias": lambda: keras.layers.SimpleRNN(4, use_bias=False, go_backwards=True),
    "lstm_all_flags": lambda: keras.layers.LSTM(
        4, return_sequences=True, return_state=True, go_backwards=True,
        zero_output_for_mask=True, recurrent_activation="hard_sigmoid"),
    "lstm_dropout": lambda: keras.layers.LSTM(4, dropout=0.2, recurrent_dropout=0.1,
                                              unit_forget_bias=False),
    "gru_reset_after": lambda: keras.layers.GRU(4, return_state=True),
    "gru_reset_before": lambda: keras.layers.GRU(4, reset_after=False, return_sequences=True,
                                                 activation="softsign"),
    "rnn_stacked": lambda: keras.layers.RNN(
        [keras.layers.LSTMCell(3), keras.layers.GRUCell(4), keras.layers.SimpleRNNCell(2)],
        return_sequences=True, return_state=True),
    "rnn_cell": lambda: keras.layers.RNN(keras.layers.GRUCell(3, use_bias=False)),
    "bi_concat": lambda: keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True)),
    "bi_sum_states": lambda: keras.layers.Bidirectional(
        keras.layers.GRU(3, return_state=True), merge_mode="sum"),
    "bi_custom_backward": lambda: keras.layers.Bidirectional(
        keras.layers.SimpleRNN(3, return_sequences=True), merge_mode="ave",
        backward_layer=keras.layers.SimpleRNN(3, return_sequences=True, go_backwards=True,
                                              activation="relu")),
    "bi_none": lambda: keras.layers.Bidirectional(keras.layers.GRU(2), merge_mode=None),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_same_outputs(name):
    _check(_build(LAYERS[name]()))


def test_same_config():
    k = _build(keras.layers.LSTM(4, return_sequences=True, return_state=True, go_backwards=True,
                                 zero_output_for_mask=True, unroll=True, dropout=0.25,
                                 recurrent_dropout=0.5, recurrent_activation="hard_sigmoid",
                                 unit_forget_bias=False, use_bias=False))
    layer, params = from_keras(k)
    assert layer == jr.LSTM(4, return_sequences=True, return_state=True, go_backwards=True,
                            zero_output_for_mask=True, unroll=True, dropout=0.25,
                            recurrent_dropout=0.5, recurrent_activation="hard_sigmoid",
                            unit_forget_bias=False, use_bias=False)
    assert set(params) == {"kernel", "recurrent_kernel"}
    # Keras's unroll=True path mishandles masks (see test_keras_oracle.py); without one it
    # agrees, and jaxrnn's result never depends on unroll.
    _check(k, masks=(None,))
    gru, _ = from_keras(_build(keras.layers.GRU(3, reset_after=False)))
    assert gru.cell.reset_after is False
    bi, _ = from_keras(_build(LAYERS["bi_concat"]()))
    assert bi == jr.Bidirectional(jr.LSTM(3, return_sequences=True))  # default backward layer
    custom, _ = from_keras(_build(LAYERS["bi_custom_backward"]()))
    assert custom.backward_layer is not None
    assert custom.backward_layer.cell.activation == "relu"
    assert custom.merge_mode == "ave"


def test_params_are_the_keras_weights():
    k = _build(keras.layers.GRU(3))
    _, params = from_keras(k)
    np.testing.assert_array_equal(params["kernel"], keras.ops.convert_to_numpy(k.cell.kernel))
    np.testing.assert_array_equal(params["bias"], keras.ops.convert_to_numpy(k.cell.bias))
    assert params["bias"].shape == (2, 9)


def test_initial_state_and_stateful():
    k = _build(keras.layers.LSTM(3, return_state=True))
    layer, params = from_keras(k)
    rng = np.random.default_rng(3)
    init = [rng.normal(size=(B, 3)).astype(np.float32) for _ in range(2)]
    want = _keras_call(k, _x(4), initial_state=init, mask=MASK)
    got = layer(params, jnp.asarray(_x(4)), initial_state=[jnp.asarray(s) for s in init],
                mask=jnp.asarray(MASK))
    _assert_close(got, want)

    ks = _build(keras.layers.GRU(3, stateful=True, return_sequences=True))
    ks.reset_states()  # building ran a batch through it
    layer, params = from_keras(ks)
    assert layer.stateful
    state = layer.reset_state(B)
    for seed in (5, 6):  # two calls: the state carries over on both sides
        want = _keras_call(ks, _x(seed))
        got, state = layer(params, jnp.asarray(_x(seed)), state=state)
        _assert_close(got, want)


def test_training_dropout_runs():
    layer, params = from_keras(_build(LAYERS["lstm_dropout"]()))
    y = layer(params, jnp.asarray(_x()), training=True, rng=jax.random.PRNGKey(0))
    assert y.shape == (B, 4) and bool(jnp.all(jnp.isfinite(y)))


def test_mixed_precision_policy_becomes_compute_dtype():
    k = keras.layers.GRU(3, dtype="mixed_bfloat16")
    _build(k)
    layer, params = from_keras(k)
    assert layer.dtype == "bfloat16"
    assert params["kernel"].dtype == jnp.float32
    got = layer(params, jnp.asarray(_x(2)))
    want = _keras_call(k, _x(2))
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float32), want.astype(np.float32), atol=5e-2)


def test_unbuilt_layer_is_a_clear_error():
    with pytest.raises(ValueError, match="not built.*call the layer once.*build it"):
        from_keras(keras.layers.LSTM(3))
    with pytest.raises(ValueError, match="not built"):
        from_keras(keras.layers.Bidirectional(keras.layers.LSTM(3)))


def test_unsupported_layers_are_clear_errors():
    with pytest.raises(TypeError, match="expected a Keras SimpleRNN, LSTM, GRU"):
        from_keras(keras.layers.Dense(3))
    with pytest.raises(TypeError, match="expected a Keras"):
        from_keras(object())

    class MyCell(keras.layers.Layer):
        def __init__(self, units, **kw):
            super().__init__(**kw)
            self.units, self.state_size = units, units

        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], self.units))

        def call(self, x, states):
            h = keras.ops.matmul(x, self.w) + states[0]
            return h, [h]

    k = keras.layers.RNN(MyCell(2))
    _build(k)
    with pytest.raises(TypeError, match="MyCell.*SimpleRNNCell, LSTMCell and GRUCell"):
        from_keras(k)


def test_unknown_activation_is_a_clear_error():
    def my_act(x):
        return x * 0.5

    k = keras.layers.SimpleRNN(2, activation=my_act)
    _build(k)
    with pytest.raises(ValueError, match="activation.*no jaxrnn equivalent"):
        from_keras(k)
