"""save/load: one safetensors file gives back an equal layer and bit-identical params."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from jaxrnn._io import load, save

pytest.importorskip("safetensors")
from safetensors import safe_open  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

SHAPE = (2, 4, 3)

LAYERS = {
    "rnn": lambda: jr.LSTM(4, return_sequences=True, go_backwards=True, dropout=0.1),
    "stacked": lambda: jr.RNN([jr.GRUCell(3, reset_after=False), jr.SimpleRNNCell(2)],
                              return_state=True),
    "bidirectional": lambda: jr.Bidirectional(
        jr.GRU(3, return_sequences=True), merge_mode="ave",
        backward_layer=jr.GRU(3, return_sequences=True, go_backwards=True, use_bias=False)),
    "sequential": lambda: jr.Sequential([
        jr.Bidirectional(jr.LSTM(3, return_sequences=True)),
        jr.RNN([jr.LSTMCell(2), jr.LSTMCell(2)])]),
}


def _init(layer, dtype=jnp.float32):
    """Random params with the layer's structure (cheaper than running the initializers)."""
    shapes = jax.eval_shape(lambda k: layer.init(k, SHAPE, dtype), jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shapes)


def _assert_identical(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert isinstance(g, jax.Array)
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(np.asarray(g).view(np.uint8), np.asarray(w).view(np.uint8))


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_round_trip_is_exact(tmp_path, name, dtype):
    layer = LAYERS[name]()
    params = _init(layer, dtype)
    path = tmp_path / "model.safetensors"
    save(path, layer, params)
    layer2, params2 = load(path)
    assert layer2 == layer
    _assert_identical(params2, params)


def test_bare_cell_and_readable_keys(tmp_path):
    cell = jr.StackedRNNCells([jr.LSTMCell(2), jr.GRUCell(3)])
    params = jax.tree.map(lambda s: jnp.full(s.shape, 0.5, s.dtype),
                          jax.eval_shape(lambda k: cell.init(k, 5), jax.random.PRNGKey(1)))
    save(str(tmp_path / "cell.safetensors"), cell, params)
    cell2, params2 = load(str(tmp_path / "cell.safetensors"))
    assert cell2 == cell
    _assert_identical(params2, params)

    bi = LAYERS["bidirectional"]()
    save(tmp_path / "bi.safetensors", bi, _init(bi))
    with safe_open(tmp_path / "bi.safetensors", "np") as f:
        keys, meta = set(f.keys()), f.metadata()
    assert keys == {"forward/kernel", "forward/recurrent_kernel", "forward/bias",
                    "backward/kernel", "backward/recurrent_kernel"}
    assert meta["format"] == "jaxrnn" and meta["format_version"] == "1"
    assert json.loads(meta["layer"]) == jr.serialize(bi)


def test_containers_and_odd_keys_come_back_identically(tmp_path):
    """Lists stay lists, tuples tuples, and dict keys with '/' do not collide."""

    @dataclasses.dataclass(frozen=True)
    class Holder:  # any object with a config: save only needs jaxrnn.serialize to accept it
        n: int = 1

        def get_config(self):
            return {"n": self.n}

    params = {"a/b": jnp.arange(3.0), "a": {"b": jnp.zeros((2,), jnp.int32)},
              "t": (jnp.ones((1,)), [jnp.full((2, 2), 2.0, jnp.float16)]), "empty": []}
    save(tmp_path / "h.safetensors", Holder(), params)
    holder, params2 = load(tmp_path / "h.safetensors", custom_objects={"Holder": Holder})
    assert holder == Holder()
    assert isinstance(params2["t"], tuple) and isinstance(params2["t"][1], list)
    _assert_identical(params2, params)


def test_float64_without_x64_stays_exact(tmp_path):
    params = {"kernel": np.linspace(0, 1, 6).reshape(2, 3), "recurrent_kernel": np.eye(3),
              "bias": np.full(3, 0.1)}  # float64 numpy arrays, the whole cell's params
    save(tmp_path / "f64.safetensors", jr.SimpleRNNCell(3), params)
    _, params2 = load(tmp_path / "f64.safetensors")
    assert params2["kernel"].dtype == np.float64
    np.testing.assert_array_equal(params2["kernel"], params["kernel"])


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at"):
        load(tmp_path / "nope.safetensors")


def test_corrupted_file(tmp_path):
    layer = LAYERS["rnn"]()
    path = tmp_path / "model.safetensors"
    save(path, layer, _init(layer))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match="not a readable safetensors file.*truncated or corrupted"):
        load(path)
    path.write_bytes(b"definitely not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load(path)


def test_foreign_file(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros((2, 2), np.float32)}, path)
    with pytest.raises(ValueError, match="without jaxrnn metadata.*not written by jaxrnn.save"):
        load(path)
    save_file({"w": np.zeros((2,), np.float32)}, path,
              metadata={"format": "jaxrnn", "format_version": "99"})
    with pytest.raises(ValueError, match="format_version '99'.*Upgrade jaxrnn"):
        load(path)


def test_unknown_class_needs_custom_objects(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class MyCell:
        units: int

        def get_config(self):
            return {"units": self.units}

    save(tmp_path / "c.safetensors", MyCell(2), {"w": jnp.ones((2,))})
    with pytest.raises(ValueError, match="unknown class 'MyCell'.*custom_objects"):
        load(tmp_path / "c.safetensors")
    cell, _ = load(tmp_path / "c.safetensors", custom_objects={"MyCell": MyCell})
    assert cell == MyCell(2)


def test_bad_params_are_clear_errors(tmp_path):
    with pytest.raises(TypeError, match="leaves must be arrays; got str at kernel"):
        save(tmp_path / "x.safetensors", jr.GRUCell(2), {"kernel": "oops"})
    with pytest.raises(TypeError, match="keys must be strings"):
        save(tmp_path / "x.safetensors", jr.GRUCell(2), {1: jnp.ones(2)})
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_params_that_do_not_fit_the_layer_are_refused_at_save(tmp_path):
    """A GRU's params saved with an LSTM layer, or extra keys, fail at save time with the
    layer's own message, and no file is written."""
    lstm, gru = jr.LSTM(3), jr.GRU(3)
    gru_params = gru.init(jax.random.key(0), (None, None, 2))
    with pytest.raises(ValueError, match=r"jaxrnn.save: the params do not fit RNN: RNN: "
                                         r"LSTMCell\(units=3\): params\['kernel'\] must have "
                                         r"shape \(2, 12\).*Nothing was written"):
        save(tmp_path / "x.safetensors", lstm, gru_params)
    extra = dict(lstm.init(jax.random.key(0), (None, None, 2)), extra=jnp.ones(2))
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        save(tmp_path / "x.safetensors", lstm, extra)
    bi = jr.Bidirectional(jr.LSTM(3))
    with pytest.raises(ValueError, match=r"params must be \{'forward': ..., 'backward': ...\}"):
        save(tmp_path / "x.safetensors", bi, gru_params)
    model = jr.Sequential([jr.LSTM(3, return_sequences=True), jr.GRU(2)])
    params = model.init(jax.random.key(0), (None, None, 2))
    with pytest.raises(ValueError, match=r"Sequential: layers\[1\]: RNN: sequences must be "
                                         r"\[B, T, F\] with F=2 .*got 3 features"):
        save(tmp_path / "x.safetensors", model,
             [params[0], jr.GRU(2).init(jax.random.key(1), (None, None, 2))])
    with pytest.raises(ValueError, match="learn_initial_state=True needs params"):
        save(tmp_path / "x.safetensors", jr.LSTM(3, learn_initial_state=True),
             extra | {})
    assert not list(tmp_path.iterdir())
    save(tmp_path / "ok.safetensors", model, params)  # nothing lost: a good save works
