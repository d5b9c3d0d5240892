"""Bad input: a clear ValueError/TypeError at the layer boundary, eagerly and under jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr

B, T, F, H = 2, 5, 3, 4
X = jnp.ones((B, T, F))
LSTM = jr.LSTM(H, return_sequences=True)
PARAMS = LSTM.init(jax.random.key(0), X.shape)
GOOD = LSTM(PARAMS, X)


def _call(layer, mode, *args, **kwargs):
    if mode == "jit":
        return jax.jit(lambda *a: layer(*a, **kwargs))(*args)
    return layer(*args, **kwargs)


def _assert_still_good():
    """A bad call never corrupts a later good one."""
    np.testing.assert_array_equal(LSTM(PARAMS, X), GOOD)
    np.testing.assert_array_equal(jax.jit(LSTM.__call__)(PARAMS, X), GOOD)


MODES = pytest.mark.parametrize("mode", ["eager", "jit"])


@MODES
@pytest.mark.parametrize("shape, words", [
    ((T, F), ["3-D", "(5, 3)", "x[None]"]),
    ((1, B, T, F), ["3-D", "rank 4"]),
])
def test_sequences_of_wrong_rank(mode, shape, words):
    with pytest.raises(ValueError) as e:
        _call(LSTM, mode, PARAMS, jnp.ones(shape))
    for w in words:
        assert w in str(e.value)
    _assert_still_good()


@MODES
def test_feature_size_disagrees_with_params(mode):
    with pytest.raises(ValueError, match=r"F=3 \(the params' input_dim\); got 7 features"):
        _call(LSTM, mode, PARAMS, jnp.ones((B, T, 7)))
    _assert_still_good()


@MODES
@pytest.mark.parametrize("mask_shape", [(B, T + 1), (B,), (B, T, 1), (T, B)])
def test_mask_of_wrong_shape_or_rank(mode, mask_shape):
    with pytest.raises(ValueError, match=r"mask must be \[B, T\] = \(2, 5\)"):
        _call(LSTM, mode, PARAMS, X, mask=jnp.ones(mask_shape, bool))
    _assert_still_good()


@MODES
@pytest.mark.parametrize("state, words", [
    ([jnp.zeros((B, H))], ["must hold 2 arrays", "got 1"]),
    ([jnp.zeros((B, H))] * 3, ["must hold 2 arrays", "got 3"]),
    ([jnp.zeros((B, H)), jnp.zeros((B, H + 1))], ["array 1 must have shape (2, 4)", "(2, 5)"]),
    ([jnp.zeros((B + 1, H))] * 2, ["batch size is 3", "sequences' is 2"]),
])
def test_initial_state_of_wrong_count_shape_or_batch(mode, state, words):
    with pytest.raises(ValueError) as e:
        _call(LSTM, mode, PARAMS, X, initial_state=state)
    for w in words:
        assert w in str(e.value)
    _assert_still_good()


def test_initial_state_of_a_stack_needs_one_entry_per_cell():
    stack = jr.RNN([jr.GRUCell(H), jr.GRUCell(H)])
    params = stack.init(jax.random.key(0), X.shape)
    with pytest.raises(ValueError, match="one entry per cell"):
        stack(params, X, initial_state=[jnp.zeros((B, H))])
    with pytest.raises(TypeError, match="list of arrays"):
        stack(params, X, initial_state="zeros")


@MODES
def test_stateful_call_without_state_or_with_other_batch(mode):
    layer = jr.LSTM(H, stateful=True)
    with pytest.raises(ValueError, match=r"needs state=.*reset_state\(2\)"):
        _call(layer, mode, PARAMS, X)
    state = layer.reset_state(B + 1)
    with pytest.raises(ValueError, match=r"batch size is 3 but the sequences' is 2.*reset_state"):
        _call(layer, mode, PARAMS, X, state=state)
    with pytest.raises(ValueError, match="state= is for stateful=True"):
        _call(LSTM, mode, PARAMS, X, state=state)
    _assert_still_good()


def test_reset_state_with_wrong_states():
    layer = jr.LSTM(H, stateful=True)
    with pytest.raises(ValueError, match="must hold 2 arrays"):
        layer.reset_state(B, states=[jnp.zeros((B, H))])
    with pytest.raises(ValueError, match=r"must have shape \(2, 4\)"):
        layer.reset_state(B, states=[jnp.zeros((B, H)), jnp.zeros((B, 1))])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        layer.reset_state(0)


@pytest.mark.parametrize("kw, words", [
    ({"activation": "tanhh"}, ["unknown activation 'tanhh'", "'tanh'"]),
    ({"recurrent_activation": "sigmoidd"}, ["recurrent_activation", "unknown activation"]),
    ({"kernel_initializer": "glorot"}, ["unknown initializer 'glorot'", "glorot_uniform"]),
    ({"bias_initializer": "nope"}, ["bias_initializer", "unknown initializer"]),
])
def test_unknown_activation_or_initializer_name(kw, words):
    with pytest.raises(ValueError) as e:
        jr.LSTMCell(H, **kw)
    for w in words:
        assert w in str(e.value)


def test_activation_of_wrong_type():
    with pytest.raises(TypeError, match="activation must be an activation name"):
        jr.SimpleRNNCell(H, activation=3)


@pytest.mark.parametrize("units", [0, -3, 2.5, "8", True, None])
@pytest.mark.parametrize("cls", [jr.SimpleRNNCell, jr.LSTMCell, jr.GRUCell])
def test_units_not_a_positive_int(cls, units):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: units must be a positive int"):
        cls(units)


@pytest.mark.parametrize("kw", [{"dropout": 1.0}, {"dropout": -0.1},
                                {"recurrent_dropout": 1.5}, {"dropout": "0.1"}])
def test_dropout_outside_unit_interval(kw):
    name = next(iter(kw))
    with pytest.raises(ValueError, match=rf"{name} must be a float in \[0, 1\)"):
        jr.GRUCell(H, **kw)


def test_unknown_merge_mode():
    with pytest.raises(ValueError, match=r"unknown merge_mode 'max'.*'concat'"):
        jr.Bidirectional(jr.LSTM(H), merge_mode="max")


def test_bidirectional_needs_an_rnn_and_matching_backward_layer():
    with pytest.raises(TypeError, match="must be a jaxrnn.RNN"):
        jr.Bidirectional(jr.LSTMCell(H))
    with pytest.raises(ValueError, match="must agree on return_sequences"):
        jr.Bidirectional(jr.LSTM(H), backward_layer=jr.LSTM(H, go_backwards=True,
                                                              return_sequences=True))
    with pytest.raises(ValueError, match="different go_backwards"):
        jr.Bidirectional(jr.LSTM(H), backward_layer=jr.LSTM(H))
    bi = jr.Bidirectional(jr.LSTM(H))
    with pytest.raises(ValueError, match="even count"):
        bi(bi.init(jax.random.key(0), X.shape), X, initial_state=[jnp.zeros((B, H))] * 3)


@MODES
def test_params_missing_a_key_or_with_a_wrong_shape(mode):
    missing = {k: v for k, v in PARAMS.items() if k != "bias"}
    with pytest.raises(ValueError, match=r"missing \['bias'\].*cell.init"):
        _call(LSTM, mode, missing, X)
    wrong = dict(PARAMS, recurrent_kernel=jnp.zeros((H, 3 * H)))
    with pytest.raises(ValueError, match=r"params\['recurrent_kernel'\] must have shape \(4, 16\)"):
        _call(LSTM, mode, wrong, X)
    with pytest.raises(ValueError, match=r"unexpected \['bias'\] \(use_bias=False\)"):
        _call(jr.LSTM(H, use_bias=False), mode, PARAMS, X)
    _assert_still_good()


def test_params_not_a_dict():
    with pytest.raises(TypeError, match="params must be a dict"):
        LSTM([PARAMS], X)
    stack = jr.RNN([jr.LSTMCell(H), jr.LSTMCell(H)])
    with pytest.raises(ValueError, match="one entry per cell"):
        stack(PARAMS, X)
    with pytest.raises(ValueError, match=r"cells\[1\].*must have shape"):
        stack([PARAMS, PARAMS], X)


@pytest.mark.parametrize("unroll", [-1, 0, 1.5, "2"])
def test_bad_unroll(unroll):
    with pytest.raises(ValueError, match="unroll must be False, True or a positive int"):
        jr.RNN(jr.LSTMCell(H), unroll=unroll)


@pytest.mark.parametrize("remat", [0, -4, "yes", 2.0])
def test_bad_remat(remat):
    with pytest.raises(ValueError, match="remat must be None, True, False or a positive int"):
        jr.LSTM(H, remat=remat)


def test_flags_must_be_bools():
    with pytest.raises(TypeError, match="return_sequences must be True or False"):
        jr.RNN(jr.LSTMCell(H), return_sequences="yes")


def test_cell_without_the_cell_interface():
    with pytest.raises(TypeError, match=r"cell interface.*\['state_size', 'init'\]"):
        jr.RNN(lambda p, x, s: (x, s))
    with pytest.raises(TypeError, match=r"cells\[1\].*lacks the cell interface"):
        jr.StackedRNNCells([jr.LSTMCell(H), object()])


def test_empty_cell_list():
    with pytest.raises(ValueError, match="cells is empty"):
        jr.RNN([])
    with pytest.raises(ValueError, match="cells is empty"):
        jr.StackedRNNCells([])


@MODES
def test_dropout_in_training_without_rng(mode):
    layer = jr.LSTM(H, dropout=0.5, return_sequences=True)
    with pytest.raises(ValueError, match=r"needs a random key; got rng=None.*rng=jax.random.key"):
        _call(layer, mode, PARAMS, X, training=True)
    stacked = jr.RNN([jr.LSTMCell(H), jr.LSTMCell(H, recurrent_dropout=0.1)])
    with pytest.raises(ValueError, match="needs a random key"):
        stacked(stacked.init(jax.random.key(0), X.shape), X, training=True)
    np.testing.assert_array_equal(layer(PARAMS, X), GOOD)  # no dropout outside training
    _assert_still_good()


def test_from_config_of_unknown_class():
    config = jr.RNN(jr.LSTMCell(H)).get_config()
    config["cell"]["class_name"] = "NoSuchCell"
    with pytest.raises(ValueError, match=r"unknown class 'NoSuchCell'.*jaxrnn.register"):
        jr.RNN.from_config(config)
    with pytest.raises(ValueError, match="class_name"):
        jr.deserialize({"config": {}})


@MODES
def test_empty_time_axis(mode):
    with pytest.raises(ValueError, match="empty time axis"):
        _call(LSTM, mode, PARAMS, jnp.ones((B, 0, F)))
    _assert_still_good()


def test_integer_sequences():
    with pytest.raises(TypeError, match="floating point"):
        LSTM(PARAMS, jnp.ones((B, T, F), jnp.int32))


def test_init_with_bad_input_shape():
    with pytest.raises(ValueError, match=r"input_shape must be \(batch, time, features\)"):
        LSTM.init(jax.random.key(0), (B, T))
    with pytest.raises(ValueError, match="input_dim must be a positive int"):
        jr.LSTMCell(H).init(jax.random.key(0), 0)


def test_cell_called_with_bad_inputs_or_states():
    cell = jr.LSTMCell(H)
    with pytest.raises(ValueError, match=r"inputs must be \[B, F\].*use jaxrnn.RNN"):
        cell(PARAMS, X, cell.get_initial_state(B))
    with pytest.raises(ValueError, match="expected 2 state array"):
        cell(PARAMS, X[:, 0], (jnp.zeros((B, H)),))
    with pytest.raises(ValueError, match=r"F=3"):
        cell(PARAMS, jnp.ones((B, 7)), cell.get_initial_state(B))


def test_shorthand_with_unknown_argument():
    # The shorthands list their arguments explicitly, so Python names the stray one.
    with pytest.raises(TypeError, match=r"LSTM\(\) got an unexpected keyword argument "
                                        r"'reset_after'"):
        jr.LSTM(H, reset_after=True)


def test_sequential_checks_its_layers():
    with pytest.raises(ValueError, match="return_sequences=True"):
        jr.Sequential([jr.LSTM(H), jr.LSTM(H)])
    with pytest.raises(ValueError, match="non-empty list"):
        jr.Sequential([])
    with pytest.raises(ValueError, match="stateful"):
        jr.Sequential([jr.LSTM(H, stateful=True)])
    model = jr.Sequential([jr.LSTM(H, return_sequences=True), jr.GRU(2)])
    params = model.init(jax.random.key(0), X.shape)
    with pytest.raises(ValueError, match=r"layers\[0\].*F=3"):
        model(params, jnp.ones((B, T, 5)))


def test_masked_output_needs_output_shaped_first_state():
    class WideOutput:
        state_size = 2
        output_size = 3

        def init(self, key, input_dim, dtype=jnp.float32):
            return {}

        def __call__(self, params, inputs, states, *, training=False, rng=None):
            return jnp.zeros((inputs.shape[0], 3)), states

    layer = jr.RNN(WideOutput())
    with pytest.raises(ValueError, match="zero_output_for_mask=True"):
        layer({}, X, mask=jnp.ones((B, T), bool))
    assert jr.RNN(WideOutput(), zero_output_for_mask=True)(
        {}, X, mask=jnp.ones((B, T), bool)).shape == (B, 3)
