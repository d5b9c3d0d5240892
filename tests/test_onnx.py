"""ONNX through jax2onnx: layers export with a dynamic batch and time axis (masks and resets as
bool inputs), and onnxruntime reproduces the JAX outputs within 1e-5 at several (B, T).

The matrix: every cell (LSTM, GRU in both variants, SimpleRNN, minGRU, minLSTM, LRU) running
forwards, backwards (``go_backwards``) and both ways (`Bidirectional`), with and without mask
and reset inputs; then stacks, last outputs, returned states and initial states; then
ConvLSTM layers with either conv_impl (feature-map steps, [B, T, *spatial, C]). A sample
runs by default, the rest is marked slow: the first export in a process costs about 14 s of
CPU (jax2onnx imports all its plugins), and each case about 3 s more.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from tests._sampling import sampled

jax2onnx = pytest.importorskip("jax2onnx", reason="ONNX export needs jaxrnn[onnx] (jax2onnx)")
ort = pytest.importorskip("onnxruntime", reason="ONNX tests need jaxrnn[onnx] (onnxruntime)")

F = 3
SHAPES = [(2, 5), (3, 1), (1, 7)]  # (B, T): the exported model is the same for all
CELLS = {
    "lstm": lambda **kw: jr.LSTM(4, **kw),
    "gru": lambda **kw: jr.GRU(4, **kw),
    "gru_v1": lambda **kw: jr.GRU(4, reset_after=False, **kw),
    "simple": lambda **kw: jr.SimpleRNN(4, **kw),
    "mingru": lambda **kw: jr.RNN(jr.MinGRUCell(4), **kw),
    "minlstm": lambda **kw: jr.RNN(jr.MinLSTMCell(4), **kw),
    "lru": lambda **kw: jr.RNN(jr.LRUCell(F, state_dim=5), **kw),  # as many units as inputs
}
DIRECTIONS = ("forward", "backward", "bidirectional")
INPUTS = ("mask+reset", "plain")
ROWS = [(c, d, i) for c in CELLS for d in DIRECTIONS for i in INPUTS]
DEFAULT = [("lstm", "bidirectional", "mask+reset"), ("gru_v1", "backward", "mask+reset"),
           ("simple", "backward", "mask+reset"), ("minlstm", "bidirectional", "mask+reset"),
           ("lru", "backward", "mask+reset")]


def _session(fn, specs):
    model = jax2onnx.to_onnx(fn, specs)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # onnxruntime's notes on unused initializers
    session = ort.InferenceSession(model.SerializeToString(), options)
    return session, [i.name for i in session.get_inputs()]


def _check(fn, kinds, extra=(), step=(F,)):
    """Exports ``fn(x, *inputs)`` with symbolic B and T and compares onnxruntime with JAX.

    `kinds`: the [B, T] bool inputs after x, a string of "m" (mask) and "r" (reset);
    `extra`: widths of [B, width] float inputs after those (initial states); `step`: the
    shape of one step of x (a ConvLSTM's feature maps).
    """
    b, t = jax.export.symbolic_shape("B, T")
    specs = ([jax.ShapeDtypeStruct((b, t, *step), jnp.float32)]
             + [jax.ShapeDtypeStruct((b, t), jnp.bool_) for _ in kinds]
             + [jax.ShapeDtypeStruct((b, w), jnp.float32) for w in extra])
    session, names = _session(fn, specs)
    reference = jax.jit(fn)
    rng = np.random.default_rng(0)
    for bb, tt in SHAPES:
        args = [rng.normal(size=(bb, tt, *step)).astype(np.float32)]
        for kind in kinds:
            if kind == "m":  # some padding, and a sample whose last step is padding
                mask = rng.random((bb, tt)) < 0.7
                mask[0, -1] = False
                args.append(mask)
            else:
                args.append(rng.random((bb, tt)) < 0.3)
        args += [rng.normal(size=(bb, w)).astype(np.float32) for w in extra]
        got = session.run(None, dict(zip(names, args)))
        want = jax.tree.leaves(reference(*args))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape, (bb, tt, g.shape, w.shape)
            np.testing.assert_allclose(g, np.asarray(w), rtol=1e-5, atol=1e-5,
                                       err_msg=f"at (B, T) = {(bb, tt)}")


@pytest.mark.parametrize(("cell", "direction", "inputs"),
                         sampled(ROWS, ["-".join(r) for r in ROWS], sample=DEFAULT))
def test_onnxruntime_matches_jax(cell, direction, inputs):
    kw = {"return_sequences": True}
    if direction == "bidirectional":
        layer = jr.Bidirectional(CELLS[cell](**kw))
    else:
        layer = CELLS[cell](go_backwards=direction == "backward", **kw)
    params = layer.init(jax.random.key(0), (None, None, F))
    if inputs == "plain":
        _check(lambda x: layer(params, x), "")
    else:
        _check(lambda x, mask, reset: layer(params, x, mask=mask, reset=reset), "mr")


LAYERS = {  # what a layer returns, and stacks
    "stack": lambda: jr.Sequential([jr.Bidirectional(jr.GRU(4, return_sequences=True)),
                                    jr.RNN(jr.MinGRUCell(3), go_backwards=True)]),
    "stack_lru": lambda: jr.Sequential([
        jr.RNN(jr.MinLSTMCell(F), return_sequences=True),
        jr.Bidirectional(jr.RNN(jr.LRUCell(F), return_sequences=True), merge_mode="ave")]),
    "gru_states": lambda: jr.GRU(4, go_backwards=True, return_state=True),
    "bidirectional_states": lambda: jr.Bidirectional(jr.LSTM(4, return_state=True),
                                                     merge_mode="sum"),
    "lru_states": lambda: jr.RNN(jr.LRUCell(F), go_backwards=True, return_state=True),
    "zero_output_for_mask": lambda: jr.RNN(jr.MinGRUCell(4), return_sequences=True,
                                           go_backwards=True, zero_output_for_mask=True),
}


@pytest.mark.parametrize("name", [n if n == "stack" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in LAYERS])
def test_layers_and_outputs(name):
    layer = LAYERS[name]()
    params = layer.init(jax.random.key(1), (None, None, F))
    _check(lambda x, mask, reset: layer(params, x, mask=mask, reset=reset), "mr")


@pytest.mark.slow
@pytest.mark.parametrize("go_backwards", [False, True])
def test_initial_state_as_input(go_backwards):
    layer = jr.LSTM(4, return_sequences=True, go_backwards=go_backwards)
    params = layer.init(jax.random.key(2), (None, None, F))
    _check(lambda x, reset, h, c: layer(params, x, reset=reset, initial_state=[h, c]), "r",
           extra=(4, 4))


CONV = {  # ConvLSTM layers, by conv_impl, and the shape of one step of their inputs
    "1d": (lambda impl: jr.ConvLSTM1D(3, 3, padding="same", return_sequences=True,
                                      conv_impl=impl), (6, F)),
    "2d_states": (lambda impl: jr.ConvLSTM2D(3, (2, 3), go_backwards=True, return_state=True,
                                             conv_impl=impl), (5, 4, F)),
    "2d_first_stack": (lambda impl: jr.Sequential([  # concat joins W: F channels go on
        jr.Bidirectional(jr.ConvLSTM2D(3, 2, padding="same", data_format="channels_first",
                                       return_sequences=True, conv_impl=impl)),
        jr.ConvLSTM2D(2, 2, data_format="channels_first", conv_impl=impl)]), (F, 4, 5)),
    "3d_first": (lambda impl: jr.ConvLSTM3D(2, 2, strides=(1, 2, 1), return_sequences=True,
                                            data_format="channels_first", conv_impl=impl),
                 (F, 3, 4, 3)),
}
# jax2onnx 0.17 lowers lax.conv_general_dilated for 1-D and 2-D layouts only ("Unsupported
# conv layouts" for 3-D): a ConvLSTM3D exports with conv_impl="im2col".
CONV_ROWS = [(n, impl) for n in CONV for impl in ("im2col", "conv")
             if (n, impl) != ("3d_first", "conv")]


@pytest.mark.parametrize(("name", "conv_impl"), sampled(
    CONV_ROWS, ["-".join(r) for r in CONV_ROWS],
    sample=[("1d", "conv"), ("2d_states", "im2col")]))
def test_convlstm(name, conv_impl):
    make, step = CONV[name]
    layer = make(conv_impl)
    params = layer.init(jax.random.key(3), (None, None, *step))
    _check(lambda x, mask, reset: layer(params, x, mask=mask, reset=reset), "mr", step=step)
