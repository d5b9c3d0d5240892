"""to_keras: jaxrnn layers become built Keras 3 layers (JAX backend) with the same
configuration and weights; both directions of the round trip give back what went in.

Keeping it fast: tiny shapes; one Keras call per layer, on a batch that stacks the unmasked
and the masked case (in Keras's scan path an all-True mask row is exactly the unmasked
computation; tests/test_keras_oracle.py relies on the same), and one jitted jaxrnn function
for both cases. to_keras builds without running Keras's initializers, so conversions are
cheap; Keras's calls are what costs.
"""

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from jaxrnn._keras import _build as _build_quickly
from jaxrnn._keras import from_keras, to_keras

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":  # pragma: no cover - depends on the environment
    pytest.skip("to_keras tests expect KERAS_BACKEND=jax", allow_module_level=True)

B, T, F = 3, 5, 2
ATOL = 1e-5
MASK = np.array([[1, 1, 1, 0, 0], [0, 1, 0, 1, 1], [1, 1, 1, 1, 1]], bool)


def _lenient():
    """Keras's own JAX code broadcasts across ranks; conftest forbids it for jaxrnn's sake."""
    return jax.numpy_rank_promotion("allow")


def _x(seed=0, batch=B):
    return np.random.default_rng(seed).normal(size=(batch, T, F)).astype(np.float32)


def _params(layer, seed=1):
    """``layer.init``'s structure with values far from the initializers' (biases too)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda k: layer.init(k, (B, T, F)), jax.random.key(0))
    return jax.tree.map(lambda s: jnp.asarray(rng.uniform(-0.6, 0.6, s.shape), s.dtype), shapes)


def _states(layer, seed=2):
    """A random initial state for `layer`: a list with one entry per state (a stack: a list
    per cell; a Bidirectional: the forward states, then the backward ones)."""
    rng = np.random.default_rng(seed)

    def as_lists(states):
        if isinstance(states, tuple):
            return [as_lists(s) for s in states]
        return rng.normal(size=states.shape).astype(np.float32)

    rnns = [layer.forward, layer.backward] if isinstance(layer, jr.Bidirectional) else [layer]
    return [s for rnn in rnns for s in as_lists(rnn.reset_state(B))]


def _keras_call(k, x, **kw):
    with _lenient(), warnings.catch_warnings():
        # A keras.Sequential called with a mask warns that its own output carries none.
        warnings.filterwarnings("ignore", "Layer .* was passed an input with a mask")
        out = k(x, **kw)
    return jax.tree.map(lambda a: np.asarray(keras.ops.convert_to_numpy(a)), out)


def _assert_close(got, want, atol=ATOL):
    got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(got_leaves) == len(want_leaves)
    for g, w in zip(got_leaves, want_leaves):
        assert np.shape(g) == np.shape(w)
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32),
                                   atol=atol, rtol=atol)


def _check_outputs(layer, params, k, initial_state=None):
    """Keras's outputs equal jaxrnn's, without and with MASK (and `initial_state`)."""
    x = _x(3)
    kw = {} if initial_state is None else {"initial_state": initial_state}
    # jaxrnn: the unmasked and the masked call in one compiled function.
    got = jax.jit(lambda p, x: [layer(p, x, **kw), layer(p, x, mask=jnp.asarray(MASK), **kw)])(
        params, jnp.asarray(x))
    # Keras: one call on both cases stacked along the batch.
    kw2 = {} if initial_state is None else {
        "initial_state": jax.tree.map(lambda s: np.concatenate([s, s]), initial_state)}
    want = _keras_call(k, np.concatenate([x, x]),
                       mask=np.concatenate([np.ones_like(MASK), MASK]), **kw2)
    _assert_close(got[0], jax.tree.map(lambda a: a[:B], want))
    _assert_close(got[1], jax.tree.map(lambda a: a[B:], want))


def _assert_same_params(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def _strip(config):
    """A Keras config without the automatic names and the build shapes."""
    if isinstance(config, dict):
        return {k: _strip(v) for k, v in config.items() if k not in ("name", "build_config")}
    if isinstance(config, (list, tuple)):
        return [_strip(v) for v in config]
    return config


CASES = {
    # name: (jaxrnn layer, Keras class, with an initial_state)
    "lstm_flags": (jr.LSTM(3, return_sequences=True, return_state=True, go_backwards=True,
                           zero_output_for_mask=True, recurrent_activation="hard_sigmoid",
                           unit_forget_bias=False, dropout=0.2, recurrent_dropout=0.1),
                   "LSTM", True),
    "gru_reset_before": (jr.GRU(3, reset_after=False, activation="softsign",
                                return_sequences=True), "GRU", False),
    "stack": (jr.RNN([jr.LSTMCell(3), jr.GRUCell(2),
                      jr.SimpleRNNCell(2, activation="relu", use_bias=False)],
                     return_state=True), "RNN", True),
    "bi_custom_backward": (jr.Bidirectional(
        jr.GRU(3, return_sequences=True, return_state=True), merge_mode="ave",
        backward_layer=jr.GRU(3, go_backwards=True, return_sequences=True, return_state=True,
                              reset_after=False, use_bias=False)), "Bidirectional", True),
    "sequential": (jr.Sequential([jr.Bidirectional(jr.LSTM(3, return_sequences=True)),
                                  jr.SimpleRNN(2, return_sequences=True)]), "Sequential", False),
    # The rest of the layer kinds and merge modes run under -m slow.
    "simple": (jr.SimpleRNN(3), "SimpleRNN", False),
    "gru_default": (jr.GRU(3, return_state=True, go_backwards=True), "GRU", True),
    "rnn_one_cell": (jr.RNN(jr.LSTMCell(2, use_bias=False)), "LSTM", False),
    "bi_concat": (jr.Bidirectional(jr.LSTM(3, return_sequences=True)), "Bidirectional", False),
    "bi_forward_goes_backwards": (jr.Bidirectional(
        jr.SimpleRNN(2, go_backwards=True, return_sequences=True), merge_mode="mul"),
        "Bidirectional", False),
    "bi_none_states": (jr.Bidirectional(jr.LSTM(2, return_state=True), merge_mode=None),
                       "Bidirectional", True),
    "bi_sum_stack": (jr.Bidirectional(jr.RNN([jr.GRUCell(2), jr.LSTMCell(3)]),
                                      merge_mode="sum"), "Bidirectional", False),
}
DEFAULT = ("lstm_flags", "stack", "bi_custom_backward", "sequential")


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in DEFAULT else pytest.mark.slow)
                                  for n in CASES])
def test_round_trip_from_jaxrnn(name):
    layer, keras_class, with_state = CASES[name]
    params = _params(layer)
    k = to_keras(layer, params)
    assert type(k).__name__ == keras_class and k.built
    _check_outputs(layer, params, k, _states(layer) if with_state else None)
    # from_keras gives back an equal layer and identical arrays.
    if isinstance(layer, jr.Sequential):  # from_keras converts a model's layers one by one
        assert len(k.layers) == len(layer.layers)
        back = [from_keras(kl) for kl in k.layers]
        assert [b for b, _ in back] == list(layer.layers)
        _assert_same_params([p for _, p in back], params)
    else:
        back, back_params = from_keras(k)
        assert back == layer
        _assert_same_params(back_params, params)


KERAS_LAYERS = {
    "lstm_all_flags": lambda: keras.layers.LSTM(
        3, return_sequences=True, return_state=True, go_backwards=True,
        zero_output_for_mask=True, unroll=True, dropout=0.25, recurrent_dropout=0.5,
        recurrent_activation="hard_sigmoid", unit_forget_bias=False, use_bias=False,
        kernel_initializer="he_normal", recurrent_initializer="identity",
        bias_initializer="ones"),
    "stacked": lambda: keras.layers.RNN(
        [keras.layers.LSTMCell(3), keras.layers.GRUCell(2, reset_after=False),
         keras.layers.SimpleRNNCell(2, activation="relu")], return_sequences=True),
    "bi_custom_backward": lambda: keras.layers.Bidirectional(
        keras.layers.SimpleRNN(3, return_sequences=True), merge_mode="ave",
        backward_layer=keras.layers.SimpleRNN(3, return_sequences=True, go_backwards=True,
                                              activation="relu")),
    "bi_stateful": lambda: keras.layers.Bidirectional(keras.layers.GRU(2, stateful=True),
                                                      merge_mode=None),
    "mixed_precision": lambda: keras.layers.GRU(3, dtype="mixed_bfloat16"),
}
KERAS_DEFAULT = ("lstm_all_flags", "stacked", "bi_custom_backward")


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in KERAS_DEFAULT else
                                                 pytest.mark.slow) for n in KERAS_LAYERS])
def test_round_trip_from_keras(name):
    """``to_keras(*from_keras(k))`` has k's config (up to names) and k's weights."""
    k = KERAS_LAYERS[name]()
    with _lenient():
        _build_quickly(keras, k, (B, T, F))  # the weights are set below
    rng = np.random.default_rng(4)
    k.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype) for w in k.get_weights()])
    layer, params = from_keras(k)
    again = to_keras(layer, params, batch_size=B if layer.stateful else None)
    assert type(again) is type(k)
    assert _strip(again.get_config()) == _strip(k.get_config())
    for a, b in zip(again.get_weights(), k.get_weights()):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_stateful_layer_carries_state_across_calls():
    layer = jr.GRU(3, stateful=True, return_sequences=True)
    params = _params(layer)
    with pytest.raises(ValueError, match="stateful.*pass batch_size="):
        to_keras(layer, params)
    k = to_keras(layer, params, batch_size=B)
    assert k.stateful and k.states[0].shape == (B, 3)
    state = layer.reset_state(B)
    for seed in (5, 6):  # two chunks: the state carries over on both sides
        got, state = layer(params, jnp.asarray(_x(seed)), state=state)
        _assert_close(got, _keras_call(k, _x(seed)))


def test_compute_dtype_becomes_a_mixed_policy():
    layer = jr.GRU(3, dtype="bfloat16")
    params = _params(layer)
    k = to_keras(layer, params)
    assert k.dtype_policy.name == "mixed_bfloat16" and k.cell.kernel.dtype == "float32"
    back, back_params = from_keras(k)  # whose outputs test_keras_interop.py compares
    assert back == layer
    _assert_same_params(back_params, params)
    # Params in bfloat16 without a compute dtype: a bfloat16 Keras layer, the same arrays.
    half = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    k16 = to_keras(jr.GRU(3), half)
    assert k16.dtype_policy.name == "bfloat16"
    _assert_same_params(from_keras(k16)[1], half)


def test_engine_options_and_initializers():
    """Options that do not change results are dropped; initializers go by Keras's names."""

    def my_init(key, shape, dtype=jnp.float32):
        return jnp.zeros(shape, dtype)

    layer = jr.LSTM(3, unroll=4, fused=False, remat=2, remat_threshold=10, param_dtype="float32",
                    kernel_initializer="he_normal", recurrent_initializer=my_init,
                    bias_initializer="ones")
    params = _params(layer)
    k = to_keras(layer, params)
    assert k.unroll is False
    config = k.get_config()
    assert config["kernel_initializer"]["class_name"] == "HeNormal"
    assert config["recurrent_initializer"]["class_name"] == "Orthogonal"  # Keras's default
    assert config["bias_initializer"]["class_name"] == "Ones"
    back, _ = from_keras(k)
    assert back == jr.LSTM(3, kernel_initializer="he_normal", bias_initializer="ones")
    # Building skipped Keras's initializers but kept them in the cell.
    assert isinstance(k.cell.recurrent_initializer, keras.initializers.Orthogonal)


def _custom_activation(x):
    return x * 0.5


@pytest.mark.parametrize("layer,error,match", [
    (jr.RNN(jr.MinGRUCell(3)), ValueError, r"layer.cell is a MinGRUCell.*no Keras 3 counterpart"),
    (jr.RNN([jr.LSTMCell(3), jr.LRUCell(3)]), ValueError,
     r"layer.cell.cells\[1\] is a LRUCell.*GRUCell, LSTMCell, SimpleRNNCell"),
    (jr.LSTM(3, learn_initial_state=True), ValueError,
     "layer has learn_initial_state=True.*no weight for a learned one.*params\\['cell'\\]"),
    (jr.GRU(3, time_major=True), ValueError, "layer has time_major=True.*\\[B, T, F\\] sequences only"),
    (jr.SimpleRNN(3, activation=_custom_activation), ValueError,
     "layer.cell.activation.*Keras does not know by name"),
    (jr.Bidirectional(jr.GRU(3), backward_layer=jr.RNN(jr.MinLSTMCell(3), go_backwards=True)),
     ValueError, r"layer.backward_layer.cell is a MinLSTMCell"),
    (jr.Sequential([jr.LSTM(3, return_sequences=True),
                    jr.SimpleRNN(2, activation=_custom_activation)]), ValueError,
     r"layer.layers\[1\].cell.activation"),
    (jr.GRU(3, dtype="float64"), ValueError, "layer computes in float64 over float32 params"),
])
def test_unconvertible_layers_are_clear_errors(layer, error, match):
    with pytest.raises(error, match=f"^to_keras: {match}"):
        to_keras(layer, _params(layer))


def test_bad_arguments_are_clear_errors():
    layer = jr.LSTM(3)
    params = _params(layer)
    with pytest.raises(TypeError, match="expected a jaxrnn RNN.*got LSTMCell.*jaxrnn.RNN\\(cell\\)"):
        to_keras(jr.LSTMCell(3), params)
    with pytest.raises(TypeError, match="expected a jaxrnn RNN, Bidirectional or Sequential"):
        to_keras(keras.layers.LSTM(3), params)
    with pytest.raises(ValueError, match=r"^to_keras: params do not fit the layer: .*must have shape \(2, 16\).*got \(2, 12\)"):
        to_keras(jr.LSTM(4), params)
    with pytest.raises(ValueError, match="params do not fit.*'forward'"):
        to_keras(jr.Bidirectional(layer), params)
    wider = {**params, "kernel": jnp.zeros((F + 1, 12))}  # another input width
    with pytest.raises(ValueError, match="forward params take 2 input features.*backward.* 3"):
        to_keras(jr.Bidirectional(layer), {"forward": params, "backward": wider})
    with pytest.raises(ValueError, match="mix the dtypes.*bfloat16.*float32"):
        to_keras(layer, {**params, "bias": params["bias"].astype(jnp.bfloat16)})
    with pytest.raises(ValueError, match="batch_size must be None or a positive int"):
        to_keras(layer, params, batch_size=0)
