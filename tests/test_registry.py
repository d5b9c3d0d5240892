"""Configs: JSON round trips for every cell and layer, user classes included."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr

X = jax.random.normal(jax.random.key(0), (2, 5, 3))

OBJECTS = [
    jr.SimpleRNNCell(4, activation="relu", use_bias=False, dropout=0.1),
    jr.LSTMCell(4, recurrent_activation="hard_sigmoid", unit_forget_bias=False),
    jr.GRUCell(4, reset_after=False, kernel_initializer="he_normal"),
    jr.StackedRNNCells([jr.LSTMCell(4), jr.GRUCell(2)]),
    jr.RNN(jr.LSTMCell(4), return_sequences=True, go_backwards=True, unroll=3),
    jr.LSTM(4, stateful=True, zero_output_for_mask=True, time_major=True),
    jr.Bidirectional(jr.GRU(4, return_sequences=True), merge_mode="ave"),
    jr.Bidirectional(jr.LSTM(4), backward_layer=jr.LSTM(4, go_backwards=True, activation="relu")),
    jr.Sequential([jr.Bidirectional(jr.LSTM(4, return_sequences=True)), jr.SimpleRNN(2)]),
]


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: type(o).__name__)
def test_round_trip_through_json(obj):
    config = json.loads(json.dumps(jr.serialize(obj)))
    assert config["class_name"] == type(obj).__name__
    rebuilt = jr.deserialize(config)
    assert rebuilt == obj and hash(rebuilt) == hash(obj)
    assert type(obj).from_config(obj.get_config()) == obj


def test_round_trip_gives_identical_outputs():
    layer = jr.RNN([jr.LSTMCell(4), jr.GRUCell(3, reset_after=False)], return_sequences=True)
    params = layer.init(jax.random.key(1), X.shape)
    rebuilt = jr.RNN.from_config(json.loads(json.dumps(layer.get_config())))
    np.testing.assert_array_equal(rebuilt(params, X), layer(params, X))


def test_cell_config_uses_keras_names():
    config = jr.LSTMCell(4).get_config()
    assert config == {
        "units": 4, "activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
        "kernel_initializer": "glorot_uniform", "recurrent_initializer": "orthogonal",
        "bias_initializer": "zeros", "unit_forget_bias": True, "dropout": 0.0,
        "recurrent_dropout": 0.0,
    }


def test_callables_serialize_by_name_or_import_path():
    cell = jr.SimpleRNNCell(4, activation=jax.nn.relu, kernel_initializer=custom_init)
    config = json.loads(json.dumps(cell.get_config()))
    assert config["activation"] == "relu"
    assert config["kernel_initializer"] == f"{__name__}:custom_init"
    rebuilt = jr.SimpleRNNCell.from_config(config)
    params = rebuilt.init(jax.random.key(0), 3)
    np.testing.assert_array_equal(params["kernel"], jnp.full((3, 4), 0.5))
    with pytest.raises(ValueError, match="only named module-level functions"):
        jr.SimpleRNNCell(4, activation=lambda x: x).get_config()


def custom_init(key, shape, dtype=jnp.float32):
    return jnp.full(shape, 0.5, dtype)


@jr.register
class ScaledCell:
    """A registered user cell: h_t = scale * tanh(x_t @ W + h_{t-1})."""

    def __init__(self, units, scale=1.0):
        self.units, self.scale = units, scale
        self.state_size = self.output_size = units

    def init(self, key, input_dim, dtype=jnp.float32):
        return {"w": jax.random.normal(key, (input_dim, self.units), dtype)}

    def __call__(self, params, inputs, states, *, training=False, rng=None):
        h = self.scale * jnp.tanh(inputs @ params["w"] + states[0])
        return h, (h,)

    def get_config(self):
        return {"units": self.units, "scale": self.scale}


def test_registered_user_cell_round_trips_in_a_stack():
    layer = jr.RNN([ScaledCell(4, 0.5), jr.LSTMCell(3)])
    config = json.loads(json.dumps(layer.get_config()))
    assert config["cell"]["config"]["cells"][0]["class_name"] == "ScaledCell"
    rebuilt = jr.RNN.from_config(config)
    params = layer.init(jax.random.key(0), X.shape)
    np.testing.assert_array_equal(rebuilt(params, X), layer(params, X))
