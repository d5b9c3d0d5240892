"""ConvLSTM1D/2D/3D: equal to Keras 3 (JAX backend) through from_keras, to a plain transcription
of Keras's cell (one convolution per gate) run in a Python loop, and, for masks and resets,
to the same layer run on the truncated or cut sequences (Keras's own masked ConvLSTM fails).

Shapes are tiny and the default tests compile few programs; the full flag matrix against
Keras is marked slow."""

import dataclasses
import itertools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxrnn as jr
from jaxrnn import _adapt, _engines

B, T, C, FILTERS = 2, 4, 2, 3
ATOL = 1e-5


def _normal(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _params(cell, channels=C, seed=1, scale=0.5):
    """Random params in the cell's layout (drawn with NumPy: no jax.random compile per shape)."""
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(rng.uniform(-scale, scale, s), jnp.float32)
            for k, s in cell.param_shapes(channels).items()}


def _close(got, want, atol=ATOL):
    got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(got_leaves) == len(want_leaves)
    for g, w in zip(got_leaves, want_leaves):
        assert np.shape(g) == np.shape(w)
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=atol, rtol=atol)


# ----------------------------------------------------------------------------- reference

_SPECS = {1: ("NWC", "WIO"), 2: ("NHWC", "HWIO"), 3: ("NDHWC", "DHWIO")}


def _ref_conv(x, w, strides, padding, dilation, channels_first):
    """A convolution through channels_last string specs (not jaxrnn's dimension numbers)."""
    if channels_first:
        x = jnp.moveaxis(x, 1, -1)
    lhs, rhs = _SPECS[w.ndim - 2]
    dn = lax.conv_dimension_numbers(x.shape, w.shape, (lhs, rhs, lhs))
    y = lax.conv_general_dilated(x, w, strides, padding.upper(), rhs_dilation=dilation,
                                 dimension_numbers=dn)
    return jnp.moveaxis(y, -1, 1) if channels_first else y


def _ref_step(cell, params, x, h, c, x_mask=None, h_mask=None):
    """Keras's ConvLSTMCell.call transcribed: per-gate kernels, dropout masks, convolutions."""
    cf = cell.data_format == "channels_first"
    act = {"tanh": jnp.tanh, "relu": jax.nn.relu}[cell.activation]
    rec = {"sigmoid": jax.nn.sigmoid, "hard_sigmoid": jax.nn.hard_sigmoid}[
        cell.recurrent_activation]
    kernels = jnp.split(params["kernel"], 4, axis=-1)
    rec_kernels = jnp.split(params["recurrent_kernel"], 4, axis=-1)
    ones = (1,) * cell.rank
    z = []
    for k in range(4):
        xk = x if x_mask is None else x * x_mask[k]
        hk = h if h_mask is None else h * h_mask[k]
        zx = _ref_conv(xk, kernels[k], cell.strides, cell.padding, cell.dilation_rate, cf)
        if "bias" in params:
            b = params["bias"][k * cell.filters:(k + 1) * cell.filters]
            zx = zx + (b.reshape((1, -1) + ones) if cf else b.reshape((1,) + ones + (-1,)))
        z.append(zx + _ref_conv(hk, rec_kernels[k], ones, "same", ones, cf))
    i, f, o = rec(z[0]), rec(z[1]), rec(z[3])
    c = f * c + i * act(z[2])
    return o * act(c), c


def _ref_loop(cell, params, x, h, c, masks=(None, None), go_backwards=False):
    """A Python loop over time; returns (outputs [B, T, ...] in processing order, h, c)."""
    order = range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])
    outs = []
    for t in order:
        h, c = _ref_step(cell, params, x[:, t], h, c, *masks)
        outs.append(h)
    return jnp.stack(outs, axis=1), h, c


# ----------------------------------------------------------------------------- numerics


def test_cell_step_and_layer_equal_the_per_gate_transcription():
    # Both convolutions: XLA's and the im2col matmul (the default on CPU).
    cells = [jr.ConvLSTMCell(1, FILTERS, 3, strides=2, padding="same", conv_impl="conv"),
             jr.ConvLSTMCell(2, FILTERS, (2, 3), dilation_rate=(2, 1),
                             data_format="channels_first", activation="relu",
                             recurrent_activation="hard_sigmoid", conv_impl="im2col"),
             jr.ConvLSTMCell(3, 2, (2, 1, 2), use_bias=False, conv_impl="conv")]
    step_shapes = [(7, C), (C, 6, 5), (3, 4, 3, C)]
    layers = [jr.RNN(cell, return_sequences=True, return_state=True, go_backwards=i == 1)
              for i, cell in enumerate(cells)]
    xs = [_normal((B, 2, *s), i) for i, s in enumerate(step_shapes)]
    ps = [_params(cell) for cell in cells]
    inits = [tuple(_normal((B, *cell.output_shape(s)), 10 + j) for j in range(2))
             for cell, s in zip(cells, step_shapes)]
    gots = jax.jit(lambda ps, xs, inits: [
        layer(p, x, initial_state=list(s)) for layer, p, x, s in zip(layers, ps, xs, inits)
    ])(ps, xs, inits)
    wants = jax.jit(lambda ps, xs, inits: [
        _ref_loop(cell, p, x, *s, go_backwards=layer.go_backwards)
        for cell, layer, p, x, s in zip(cells, layers, ps, xs, inits)
    ])(ps, xs, inits)
    _close(gots, wants)
    # The cell alone, one step (its own checks on the way).
    out, state = cells[1](ps[1], xs[1][:, 0], inits[1])
    _close((out, state.c), _ref_step(cells[1], ps[1], xs[1][:, 0], *inits[1]))


def test_dropout_is_keras_per_gate_masks_fixed_over_time():
    cell = jr.ConvLSTMCell(2, FILTERS, 2, padding="same", data_format="channels_first",
                           dropout=0.3, recurrent_dropout=0.4, conv_impl="im2col")
    layer = jr.RNN(cell, return_sequences=True)
    xla = jr.RNN(dataclasses.replace(cell, conv_impl="conv"), return_sequences=True)
    x, p, rng = _normal((B, T, C, 4, 3)), _params(cell), jax.random.key(7)
    got, got_xla, inference = jax.jit(lambda p, x: (
        layer(p, x, training=True, rng=rng), xla(p, x, training=True, rng=rng),
        layer(p, x)))(p, x)
    x_mask, h_mask = cell.dropout_masks(rng, True, B, C, jnp.float32, step_shape=(C, 4, 3))
    assert x_mask.shape == (4, B, C, 4, 3) and h_mask.shape == (4, B, FILTERS, 4, 3)
    for m, rate in ((x_mask, 0.3), (h_mask, 0.4)):  # Keras's dropout of ones: 0 or 1/(1-rate)
        m = np.asarray(m)
        assert np.all(np.isclose(m, 0) | np.isclose(m, 1 / (1 - rate)))
    assert not np.array_equal(x_mask[0], x_mask[1])  # one mask per gate
    zeros = jnp.zeros((B, FILTERS, 4, 3))
    want, _, _ = jax.jit(_ref_loop, static_argnums=0)(cell, p, x, zeros, zeros,
                                                      (x_mask, h_mask))
    _close(got, want)
    _close(got_xla, want)
    assert not np.allclose(got, inference, atol=1e-3)  # dropout changed something
    with pytest.raises(ValueError, match="needs a random key"):
        layer(p, x, training=True)


def test_gradient_equals_the_python_loop():
    cell = jr.ConvLSTMCell(2, FILTERS, (3, 2), padding="same", strides=(2, 1))
    layers = [jr.RNN(dataclasses.replace(cell, conv_impl=impl), return_sequences=True)
              for impl in jr._conv.CONV_IMPLS]
    x, p = _normal((B, 2, 5, 4, C)), _params(cell)
    weights = _normal((B, 2, 3, 4, FILTERS), 5)

    tangents = (jax.tree.map(lambda a: _normal(a.shape, 6), p), _normal(x.shape, 7))

    def grads(p, x):  # per conv_impl: reverse mode, and forward mode along `tangents`
        out = []
        for layer in layers:
            def loss(p, x, layer=layer):
                return jnp.sum(layer(p, x) * weights)
            out.append((jax.grad(loss, argnums=(0, 1))(p, x),
                        jax.jvp(loss, (p, x), tangents)[1]))
        return out

    def loss_ref(p, x):
        zeros = jnp.zeros((B, 3, 4, FILTERS))
        return jnp.sum(_ref_loop(cell, p, x, zeros, zeros)[0] * weights)

    gots = jax.jit(grads)(p, x)
    want = jax.jit(jax.grad(loss_ref, argnums=(0, 1)))(p, x)
    directional = sum(jnp.vdot(g, t) for g, t in zip(jax.tree.leaves(want),
                                                     jax.tree.leaves(tangents)))
    for got, jvp in gots:
        _close(got, want, atol=1e-4)
        np.testing.assert_allclose(jvp, directional, rtol=1e-4)


def test_default_conv_impl_is_im2col_on_cpu_only():
    assert jr._conv.default_conv_impl("cpu") == "im2col"
    assert jr._conv.default_conv_impl("gpu") == jr._conv.default_conv_impl("tpu") == "conv"


@pytest.mark.slow
def test_im2col_equals_xla_convolution_everywhere():
    from jaxrnn._conv import _im2col_conv, _xla_conv

    rng = np.random.default_rng(0)
    for rank, padding, (stride, dilation), cf, groups in itertools.product(
            (1, 2, 3), ("valid", "same"), ((1, 1), (2, 1), (1, 2), (3, 1)), (False, True),
            (1, 4)):
        spatial, c = (7, 6, 5)[:rank], 2 * groups
        x = jnp.asarray(rng.normal(size=(2, c, *spatial) if cf else (2, *spatial, c)),
                        jnp.float32)
        w = jnp.asarray(rng.normal(size=(3, 2, 2)[:rank] + (2, 8)), jnp.float32)
        args = ((stride,) * rank, padding, (dilation,) * rank, cf, groups)
        _close(_im2col_conv(x, w, *args), _xla_conv(x, w, *args))


# ----------------------------------------------------------------------------- masks and resets


def test_masks_equal_running_the_kept_steps():
    """A masked step carries the states over, so the final states equal a run over the kept
    steps alone; forwards and backwards, prefix masks and a mask with a hole."""
    cell = jr.ConvLSTMCell(2, FILTERS, 2, padding="same")
    fwd = jr.RNN(cell, return_sequences=True, return_state=True)
    bwd = dataclasses.replace(fwd, go_backwards=True)
    x, p = _normal((B, T, 3, 3, C)), _params(cell)
    mask = jnp.array([[True, True, False, False], [True, False, True, True]])
    kept = [x[b:b + 1][:, np.asarray(mask[b])] for b in range(B)]
    time_major = dataclasses.replace(fwd, time_major=True)
    run = jax.jit(lambda p, x, kept: (fwd(p, x, mask=mask), bwd(p, x, mask=mask),
                                      [(fwd(p, k), bwd(p, k)) for k in kept],
                                      time_major(p, jnp.swapaxes(x, 0, 1), mask=mask)))
    (y_f, h_f, c_f), (y_b, h_b, c_b), alone, (y_tm, h_tm, _) = run(p, x, kept)
    _close((jnp.swapaxes(y_tm, 0, 1), h_tm), (y_f, h_f))
    for b, ((ya_f, ha_f, ca_f), (ya_b, ha_b, ca_b)) in enumerate(alone):
        _close((h_f[b:b + 1], c_f[b:b + 1]), (ha_f, ca_f))
        _close((h_b[b:b + 1], c_b[b:b + 1]), (ha_b, ca_b))
        # Each kept step's output is that of the run over the kept steps; a masked step
        # repeats the previous output (zeros before the first real step), as in Keras.
        idx = np.flatnonzero(np.asarray(mask[b]))
        _close(y_f[b:b + 1, idx], ya_f)
        _close(y_b[b:b + 1, ::-1][:, idx][:, ::-1], ya_b)
    np.testing.assert_array_equal(y_f[0, 2], y_f[0, 1])
    np.testing.assert_array_equal(y_f[1, 1], y_f[1, 0])
    np.testing.assert_array_equal(y_b[0, :2], np.zeros_like(y_b[0, :2]))  # steps 3, 2 masked


def test_nan_padding_reaches_neither_outputs_nor_gradients():
    layer = jr.ConvLSTM1D(FILTERS, 2, padding="same")
    p = _params(layer.cell)
    x = _normal((B, T, 5, C)).at[0, 2:].set(jnp.nan)
    mask = jnp.array([[True, True, False, False], [True] * T])
    y, g = jax.jit(jax.value_and_grad(lambda p: jnp.sum(layer(p, x, mask=mask))))(p)
    assert np.isfinite(y) and all(np.isfinite(a).all() for a in jax.tree.leaves(g))


def test_reset_equals_running_the_segments_separately():
    cell = jr.ConvLSTMCell(1, FILTERS, 3, padding="same")
    fwd = jr.RNN(cell, return_sequences=True, return_state=True)
    bwd = dataclasses.replace(fwd, go_backwards=True)
    x, p = _normal((B, T, 5, C)), _params(cell)
    reset = jnp.zeros((B, T), bool).at[0, 2].set(True).at[1, 1].set(True)
    run = jax.jit(lambda p, x: (fwd(p, x, reset=reset), bwd(p, x, reset=reset),
                                fwd(p, x[0:1, :2]), fwd(p, x[0:1, 2:]),
                                bwd(p, x[1:2, :1]), bwd(p, x[1:2, 1:])))
    (y_f, h_f, c_f), (y_b, h_b, c_b), head0, tail0, head1, tail1 = run(p, x)
    _close(y_f[0:1], jnp.concatenate([head0[0], tail0[0]], axis=1))
    _close((h_f[0:1], c_f[0:1]), tail0[1:])
    # Backwards, the segments run from their ends; the last processed is the first segment.
    _close(y_b[1:2], jnp.concatenate([tail1[0], head1[0]], axis=1))
    _close((h_b[1:2], c_b[1:2]), head1[1:])


# ----------------------------------------------------------------------------- layers


def test_learned_initial_state_stateful_and_stream():
    layer = jr.ConvLSTM2D(FILTERS, 2, strides=2, padding="same", return_sequences=True,
                          learn_initial_state=True)
    x = _normal((B, T, 5, 4, C))
    params = layer.init(jax.random.key(0), (None, None, 5, 4, C))
    assert jax.tree.map(jnp.shape, params["initial_state"]) == jr.LSTMState(
        (1, 3, 2, FILTERS), (1, 3, 2, FILTERS))
    params["initial_state"] = jr.LSTMState(_normal((1, 3, 2, FILTERS), 3),
                                           _normal((1, 3, 2, FILTERS), 4))
    plain = dataclasses.replace(layer, learn_initial_state=False)
    init = [jnp.broadcast_to(s, (B, 3, 2, FILTERS)) for s in params["initial_state"]]
    stateful = dataclasses.replace(layer, stateful=True)
    stream = jr.Stream(dataclasses.replace(layer, return_sequences=False))

    def run(params, x):
        state = stateful.reset_state(B, params=params, step_shape=x.shape[2:])
        y1, state = stateful(params, x[:, :3], state=state)
        y2, _ = stateful(params, x[:, 3:], state=state)
        s = stream.reset_state(B, params=params, step_shape=x.shape[2:])
        y_stream, _ = stream(params, x[:, :2], s)
        return (layer(params, x), plain(params["cell"], x, initial_state=init),
                jnp.concatenate([y1, y2], axis=1), y_stream)

    learned, given, chunked, streamed = jax.jit(run)(params, x)
    _close(learned, given)
    _close(chunked, given)
    _close(streamed, given[:, :2])
    zeros = dataclasses.replace(plain, stateful=True).reset_state(B, step_shape=(5, 4, C))
    assert zeros.h.shape == (B, 3, 2, FILTERS) and not np.any(zeros.h)


def test_sequential_and_bidirectional_chain_feature_maps():
    model = jr.Sequential([
        jr.Bidirectional(jr.ConvLSTM2D(FILTERS, 3, padding="same", return_sequences=True)),
        jr.ConvLSTM2D(2, 2, return_sequences=True, data_format="channels_last"),
    ])
    params = model.init(jax.random.key(0), (B, T, 5, 4, C))
    assert params[1]["kernel"].shape == (2, 2, 2 * FILTERS, 8)  # fed 2 * FILTERS channels
    x = _normal((B, T, 5, 4, C))
    def run(p, x):
        first = model.layers[0](p[0], x)
        return model(p, x), first, model.layers[1](p[1], first)

    y, first, second = jax.jit(run)(params, x)
    assert y.shape == (B, T, 4, 3, 2) and first.shape == (B, T, 5, 4, 2 * FILTERS)
    _close(y, second)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_sequential_checks_the_channels_a_bidirectional_feeds(merge_mode, fmt):
    # "concat" joins the last axis, as Keras's: the channels for channels_last, but W for
    # channels_first, whose channels stay FILTERS. init, the call and check_params agree.
    cf = fmt == "channels_first"
    bi = jr.Bidirectional(jr.ConvLSTM2D(FILTERS, 3, padding="same", data_format=fmt,
                                        return_sequences=True), merge_mode=merge_mode)
    shape = (B, T, C, 5, 4) if cf else (B, T, 5, 4, C)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    if merge_mode is None:  # a pair of outputs: only the last layer
        with pytest.raises(ValueError, match=r"layers\[0\] feeds the next layer.*merge_mode"):
            jr.Sequential([bi, jr.ConvLSTM2D(2, 2, data_format=fmt)])
        model = jr.Sequential([bi])
        params = model.init(jax.random.key(0), shape)
        assert model.check_params(params) == C and bi.output_size == FILTERS
        y, y_rev = jax.eval_shape(model, params, x)
        assert y.shape == y_rev.shape == (B, T, *bi.forward._output_step_shape(shape[2:]))
        return
    model = jr.Sequential([bi, jr.ConvLSTM2D(2, 2, return_sequences=True, data_format=fmt)])
    params = model.init(jax.random.key(0), shape)
    merged = jax.eval_shape(bi, params[0], x)  # the shape init planned for layers[1]:
    assert merged.shape == (B, T, *bi._output_step_shape(shape[2:]))
    channels = merged.shape[2 if cf else -1]
    assert channels == (2 * FILTERS if merge_mode == "concat" and not cf else FILTERS)
    assert params[1]["kernel"].shape[-2] == channels
    assert model.check_params(params) == C and model.check_params(params, C) == C
    assert bi.output_size == channels
    y = jax.eval_shape(model, params, x)
    assert y.shape == jax.eval_shape(model.layers[1], params[1], merged).shape
    # Params for the other width are refused by check_params, as by the call.
    wrong = 3 * FILTERS - channels
    bad = [params[0], model.layers[1].init(jax.random.key(1), (B, T, wrong, 5, 4) if cf
                                           else (B, T, 5, 4, wrong))]
    msg = rf"Sequential: layers\[1\]: RNN: sequences must have {wrong} channels .*got {channels}"
    with pytest.raises(ValueError, match=msg):
        model.check_params(bad)
    with pytest.raises(ValueError, match=r"Sequential: layers\[1\]: .*channels"):
        jax.eval_shape(model, bad, x)


def test_config_save_load_and_engine(tmp_path):
    pytest.importorskip("safetensors")
    layer = jr.ConvLSTM3D(2, (1, 2, 2), strides=(1, 2, 1), data_format="channels_first",
                          recurrent_activation="hard_sigmoid", unit_forget_bias=False,
                          use_bias=False, dropout=0.1, return_state=True, go_backwards=True)
    assert layer.cell == jr.ConvLSTMCell(3, 2, [1, 2, 2], (1, 2, 1), "VALID",
                                         "Channels_First", 1, recurrent_activation="hard_sigmoid",
                                         unit_forget_bias=False, use_bias=False, dropout=0.1)
    assert hash(layer.cell) == hash(jr.RNN.from_config(layer.get_config()).cell)
    assert jr.RNN.from_config(json.loads(json.dumps(layer.get_config()))) == layer
    params = _params(layer.cell, channels=3)
    jr.save(tmp_path / "conv.safetensors", layer, params)
    loaded, loaded_params = jr.load(tmp_path / "conv.safetensors")
    assert loaded == layer
    for k in params:
        np.testing.assert_array_equal(loaded_params[k], params[k])
    assert _engines.choose(layer.cell, None, None) == "scan"


def test_init_layouts_and_unit_forget_bias():
    cell = jr.ConvLSTMCell(2, 4, (3, 2))
    params = cell.init(jax.random.key(0), 3)
    assert jax.tree.map(jnp.shape, params) == {
        "kernel": (3, 2, 3, 16), "recurrent_kernel": (3, 2, 4, 16), "bias": (16,)}
    np.testing.assert_array_equal(params["bias"], np.repeat([0.0, 1.0, 0.0, 0.0], 4))
    # glorot_uniform with Keras's fans for a conv kernel: receptive field times channels.
    fan_in, fan_out = 3 * 2 * 3, 3 * 2 * 16
    assert float(jnp.abs(params["kernel"]).max()) <= np.sqrt(6 / (fan_in + fan_out))
    rk = np.asarray(params["recurrent_kernel"]).reshape(-1, 16)  # orthogonal, as in Keras
    np.testing.assert_allclose(rk.T @ rk, np.eye(16), atol=1e-5)
    no_forget = dataclasses.replace(cell, unit_forget_bias=False).init(jax.random.key(0), 3)
    assert not np.any(no_forget["bias"])
    assert "bias" not in dataclasses.replace(cell, use_bias=False).param_shapes(3)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kwargs, match", [
    ({"rank": 4}, "rank must be 1, 2 or 3"),
    ({"filters": 0}, "filters must be a positive int"),
    ({"filters": True}, "filters must be a positive int"),
    ({"kernel_size": (3,)}, r"kernel_size must be a positive int or a tuple of 2"),
    ({"kernel_size": 0}, "kernel_size must be"),
    ({"strides": (1, 0)}, "strides must be"),
    ({"strides": 2, "dilation_rate": 2}, "strides > 1 is not compatible with dilation_rate"),
    ({"padding": "causal"}, "padding must be 'valid' or 'same'"),
    ({"data_format": "NHWC"}, "data_format must be 'channels_last'.*or 'channels_first'"),
    ({"dropout": 1.0}, r"dropout must be a float in \[0, 1\)"),
    ({"activation": "nope"}, "unknown activation"),
])
def test_bad_arguments_are_clear_errors(kwargs, match):
    args = {"rank": 2, "filters": 3, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        jr.ConvLSTMCell(**args)


def test_bad_calls_are_clear_errors_eagerly_and_under_jit():
    layer = jr.ConvLSTM2D(FILTERS, 4, return_state=True)
    params = _params(layer.cell)
    call = jax.jit(layer)
    small = jnp.ones((B, T, 3, 5, C))
    for run in (layer, call):
        with pytest.raises(ValueError, match=r"padding='valid' the kernel spans \(4, 4\), "
                                             r"larger than the inputs' spatial size \(3, 5\)"
                                             r".*Use padding='same'"):
            run(params, small)
        with pytest.raises(ValueError, match=r"sequences must be a 5-D array \[B, T, H, W, C\]"):
            run(params, jnp.ones((B, T, 6, C)))
        with pytest.raises(ValueError, match="sequences must have 2 channels.*got 3"):
            run(params, jnp.ones((B, T, 6, 6, 3)))
        with pytest.raises(ValueError, match=r"initial_state array 0 must have shape "
                                             r"\(2, 3, 3, 3\)"):
            run(params, jnp.ones((B, T, 6, 6, C)), [jnp.zeros((B, 6, 6, 3))] * 2)
    # A good call after the bad ones: nothing was cached or corrupted.
    x = _normal((B, T, 6, 6, C))
    _close(call(params, x), layer(params, x))
    with pytest.raises(ValueError, match=r"input_shape must be \(batch, time, C, H, W\)"):
        jr.ConvLSTM2D(3, 2, data_format="channels_first").init(jax.random.key(0), (B, T, 5, 5))
    with pytest.raises(ValueError, match="kernel spans .* larger than"):
        jr.ConvLSTM1D(3, 5).init(jax.random.key(0), (B, T, 4, C))


def test_unsupported_uses_are_clear_errors():
    cell = jr.ConvLSTMCell(2, 3, 3)
    with pytest.raises(ValueError, match="get_initial_state needs step_shape="):
        cell.get_initial_state(B)
    with pytest.raises(ValueError, match="cannot be stacked.*jaxrnn.Sequential"):
        jr.StackedRNNCells([cell])
    with pytest.raises(ValueError, match="fused=True needs LSTMCell or GRUCell"):
        jr.ConvLSTM2D(3, 3, fused=True)
    with pytest.raises(ValueError, match="parallel=True needs a cell with a linear"):
        jr.ConvLSTM2D(3, 3, parallel=True)
    stateful = jr.ConvLSTM2D(3, 3, stateful=True)
    with pytest.raises(ValueError, match="reset_state: .*needs step_shape="):
        stateful.reset_state(B)
    with pytest.raises(ValueError, match=r"reset_state\(2, step_shape=\(6, 6, 2\)\)"):
        stateful(_params(cell), jnp.ones((B, T, 6, 6, C)))
    with pytest.raises(ValueError, match=r"inputs must be \[B, H, W, C\]"):
        cell(_params(cell), jnp.ones((B, 6, C)), cell.get_initial_state(B, step_shape=(6, 6, C)))
    # The framework adapters check given params against the channels of either layout.
    first = jr.ConvLSTM2D(3, 3, data_format="channels_first")
    given = _params(first.cell)
    assert _adapt.make_params(first, (B, T, C, 6, 6), given, None, "Layer", "key") is given
    with pytest.raises(ValueError, match="sequences must have 2 channels.*got 6"):
        _adapt.make_params(first, (B, T, 6, 5, 5), given, None, "Layer", "key")


# ----------------------------------------------------------------------------- from_keras

keras_missing = os.environ.get("KERAS_BACKEND", "jax") != "jax"
try:
    import keras
except ImportError:  # pragma: no cover - depends on the environment
    keras = None
needs_keras = pytest.mark.skipif(keras is None or keras_missing,
                                 reason="needs Keras 3 with KERAS_BACKEND=jax")


def _lenient():
    """Keras's own JAX code broadcasts across ranks; conftest forbids it for jaxrnn's sake."""
    return jax.numpy_rank_promotion("allow")


def _keras_layer(make, shape, seed=1):
    k = make()
    with _lenient():
        k.build(shape)
    rng = np.random.default_rng(seed)
    k.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32)
                   for w in k.get_weights()])
    return k


def _keras_call(k, x, **kw):
    with _lenient():
        out = k(x, **kw)
    return jax.tree.map(lambda a: np.asarray(keras.ops.convert_to_numpy(a)), out)


def _check_against_keras(cases):
    """cases: [(make_keras_layer, input_shape, keras call kwargs)]; jaxrnn's results for all
    of them in one compiled call."""
    ks = [_keras_layer(make, shape, seed=i) for i, (make, shape, _) in enumerate(cases)]
    converted = [jr.from_keras(k) for k in ks]
    xs = [np.random.default_rng(10 + i).normal(size=shape).astype(np.float32)
          for i, (_, shape, _) in enumerate(cases)]
    kws = [kw for _, _, kw in cases]
    gots = jax.jit(lambda ps, xs: [layer(p, x, **kw) for (layer, _), p, x, kw in
                                   zip(converted, ps, xs, kws)])([p for _, p in converted], xs)
    for k, x, kw, got in zip(ks, xs, kws, gots):
        _close(got, _keras_call(k, x, **kw))
    return converted


@needs_keras
def test_from_keras_equals_keras():
    rng = np.random.default_rng(3)
    init = [rng.normal(size=(B, FILTERS, 6, 5)).astype(np.float32) for _ in range(2)]
    converted = _check_against_keras([
        (lambda: keras.layers.ConvLSTM1D(FILTERS, 3, strides=2, padding="same",
                                         go_backwards=True, return_sequences=True,
                                         return_state=True), (B, T, 7, C), {}),
        (lambda: keras.layers.ConvLSTM2D(FILTERS, (2, 3), dilation_rate=2,
                                         data_format="channels_first", use_bias=False,
                                         return_state=True, activation="relu",
                                         recurrent_activation="hard_sigmoid"),
         (B, T, C, 8, 9), {"initial_state": init}),
        (lambda: keras.layers.ConvLSTM3D(2, (2, 1, 2), strides=(1, 2, 1),
                                         return_sequences=True, unit_forget_bias=False),
         (B, 3, 3, 4, 3, C), {}),
    ])
    layer, params = converted[1]
    assert layer == jr.RNN(jr.ConvLSTMCell(2, FILTERS, (2, 3), dilation_rate=2,
                                           data_format="channels_first", use_bias=False,
                                           activation="relu",
                                           recurrent_activation="hard_sigmoid"),
                           return_state=True)
    assert set(params) == {"kernel", "recurrent_kernel"}
    assert converted[2][0].cell.unit_forget_bias is False


def _matrix():
    """Every rank x padding x strides/dilation x data format; the other flags vary by row."""
    rows = []
    for i, (rank, padding, (stride, dilation), fmt) in enumerate(itertools.product(
            (1, 2, 3), ("valid", "same"), ((1, 1), (2, 1), (1, 2)),
            ("channels_last", "channels_first"))):
        rows.append(pytest.param(rank, padding, stride, dilation, fmt, i,
                                 id=f"{rank}d-{padding}-s{stride}-d{dilation}-{fmt[9:]}",
                                 marks=pytest.mark.slow))
    return rows


@needs_keras
@pytest.mark.parametrize("rank, padding, stride, dilation, fmt, i", _matrix())
def test_from_keras_matrix(rank, padding, stride, dilation, fmt, i):
    cls = {1: keras.layers.ConvLSTM1D, 2: keras.layers.ConvLSTM2D, 3: keras.layers.ConvLSTM3D}
    spatial = {1: (7,), 2: (6, 5), 3: (5, 4, 5)}[rank]
    shape = (B, 3, C, *spatial) if fmt == "channels_first" else (B, 3, *spatial, C)
    kwargs = dict(filters=2, kernel_size=(3, 2, 2)[:rank], strides=stride, padding=padding,
                  dilation_rate=dilation, data_format=fmt, go_backwards=i % 2 == 1,
                  return_sequences=i % 3 != 0, return_state=i % 4 < 2,
                  use_bias=i % 5 != 0, unit_forget_bias=i % 3 == 1)
    _check_against_keras([(lambda: cls[rank](**kwargs), shape, {})])


@needs_keras
@pytest.mark.slow
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul", None])
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_from_keras_bidirectional(merge_mode, fmt):
    shape = (B, 3, C, 4, 5) if fmt == "channels_first" else (B, 3, 4, 5, C)
    converted = _check_against_keras([(lambda: keras.layers.Bidirectional(
        keras.layers.ConvLSTM2D(2, 2, data_format=fmt, return_sequences=True,
                                return_state=True), merge_mode=merge_mode), shape, {})])
    assert isinstance(converted[0][0], jr.Bidirectional)


@needs_keras
def test_to_keras_and_back():
    layer = jr.ConvLSTM2D(FILTERS, (2, 3), dilation_rate=(1, 2), data_format="channels_first",
                          go_backwards=True, return_state=True, recurrent_activation="relu",
                          conv_impl="conv")
    params = _params(layer.cell)
    x = np.asarray(_normal((B, 3, C, 4, 6), 3))
    k = jr.to_keras(layer, params, step_shape=x.shape[2:])
    assert type(k).__name__ == "ConvLSTM2D" and k.data_format == "channels_first"
    _close(jax.jit(layer)(params, x), _keras_call(k, x))
    back, back_params = jr.from_keras(k)
    assert back == dataclasses.replace(layer, cell=dataclasses.replace(layer.cell,
                                                                       conv_impl=None))
    for name in params:
        np.testing.assert_array_equal(back_params[name], params[name])
    with pytest.raises(ValueError, match=r"pass step_shape=.*\[C, H, W\]"):
        jr.to_keras(layer, params)
    with pytest.raises(ValueError, match=r"step_shape=\(5, 4, 6\): .*must have 2 channels"):
        jr.to_keras(layer, params, step_shape=(5, 4, 6))


@needs_keras
@pytest.mark.slow
def test_to_keras_sequential_and_bidirectional():
    model = jr.Sequential([
        jr.Bidirectional(jr.ConvLSTM1D(2, 3, padding="same", return_sequences=True),
                         merge_mode="ave"),
        jr.ConvLSTM1D(3, 2, strides=2, use_bias=False),
    ])
    params = jax.tree.map(lambda a: a + 0.3, model.init(jax.random.key(0), (B, T, 7, C)))
    x = np.asarray(_normal((B, T, 7, C), 4))
    k = jr.to_keras(model, params, step_shape=x.shape[2:])
    _close(jax.jit(model)(params, x), _keras_call(k, x))
