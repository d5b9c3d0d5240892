"""ONNX through jax2onnx: layers export with a dynamic batch and time axis (masks and resets as
bool inputs), and onnxruntime reproduces the JAX outputs at several (B, T).

Exported today: LSTM, GRU (both variants), SimpleRNN, minGRU, minLSTM and stacks of them
(`Sequential`), running forwards. Not yet: `go_backwards` (jax2onnx loses the symbolic time
axis of a reversed sequence), hence `Bidirectional`, and the LRU (jax2onnx has no complex
numbers); see the Deploying guide.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr

jax2onnx = pytest.importorskip("jax2onnx", reason="ONNX export needs jaxrnn[onnx] (jax2onnx)")
ort = pytest.importorskip("onnxruntime", reason="ONNX tests need jaxrnn[onnx] (onnxruntime)")

F = 3
LAYERS = {
    "lstm": lambda: jr.LSTM(4, return_sequences=True),
    "gru": lambda: jr.GRU(4),
    "gru_v1": lambda: jr.GRU(4, reset_after=False, return_sequences=True),
    "simple": lambda: jr.SimpleRNN(4, return_sequences=True),
    "minlstm": lambda: jr.RNN(jr.MinLSTMCell(4), return_sequences=True),
    "stack": lambda: jr.Sequential([jr.GRU(4, return_sequences=True),
                                    jr.RNN(jr.MinGRUCell(3))]),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_onnxruntime_matches_jax(name):
    layer = LAYERS[name]()
    params = layer.init(jax.random.key(0), (None, None, F))

    def fn(x, mask, reset):
        return layer(params, x, mask=mask, reset=reset)

    b, t = jax.export.symbolic_shape("B, T")
    model = jax2onnx.to_onnx(fn, [jax.ShapeDtypeStruct((b, t, F), jnp.float32),
                                  jax.ShapeDtypeStruct((b, t), jnp.bool_),
                                  jax.ShapeDtypeStruct((b, t), jnp.bool_)])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options)
    names = [i.name for i in session.get_inputs()]
    rng = np.random.default_rng(0)
    for bb, tt in [(2, 5), (3, 11), (1, 1)]:
        x = rng.normal(size=(bb, tt, F)).astype(np.float32)
        mask = np.ones((bb, tt), bool)
        mask[0, -1] = False
        reset = rng.random((bb, tt)) < 0.3
        got = session.run(None, dict(zip(names, (x, mask, reset))))
        want = jax.tree.leaves(fn(x, mask, reset))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, np.asarray(w), rtol=1e-5, atol=1e-5)
