"""The LSTM variants: `PeepholeLSTMCell` and `LayerNormLSTMCell` against plain NumPy
transcriptions of the published equations (TensorFlow 2's PeepholeLSTMCell, TensorFlow
Addons' LayerNormLSTMCell), with masks and dropout, their gradients against central finite
differences of the NumPy loop in float64; params, configs, save/load and the errors of all
the variants, `LSTMCell(proj_size=P)` included (its numbers are checked against PyTorch in
test_torch_interop.py and against the generic scan in test_fused.py)."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from tests._reference import numpy_params

B, T, F, H = 3, 5, 2, 4
MASK = np.array([[1, 1, 1, 1, 1],  # full
                 [0, 1, 0, 1, 1],  # left padding and a hole
                 [1, 1, 1, 0, 0]], dtype=bool)  # right padding


# ----------------------------------------------------------------------------- NumPy


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _dropped(a, mask, k):
    """`a` times gate k's dropout mask (masks are None, [B, *] or one per gate [4, B, *])."""
    if mask is None:
        return a
    return a * (mask[k] if mask.ndim == 3 else mask)


def _gate_parts(p, x, h, xm, hm):
    """Per gate k (Keras's order i, f, c, o): ``(x W_k, h U_k)``, each with its dropout."""
    cols = [slice(k * H, (k + 1) * H) for k in range(4)]
    return ([_dropped(x, xm, k) @ p["kernel"][:, s] for k, s in enumerate(cols)],
            [_dropped(h, hm, k) @ p["recurrent_kernel"][:, s] for k, s in enumerate(cols)])


def peephole_step(p, x, h, c, xm, hm):
    """Gers & Schmidhuber's peepholes as TF 2's PeepholeLSTMCell computes them."""
    xs, hs = _gate_parts(p, x, h, xm, hm)
    z = [xs[k] + hs[k] + p["bias"][k * H:(k + 1) * H] for k in range(4)]
    i = _sigmoid(z[0] + p["input_gate_peephole_weights"] * c)
    f = _sigmoid(z[1] + p["forget_gate_peephole_weights"] * c)
    c_new = f * c + i * np.tanh(z[2])
    o = _sigmoid(z[3] + p["output_gate_peephole_weights"] * c_new)
    return o * np.tanh(c_new), c_new


def _ln(a, gamma, beta, eps):
    mean = a.mean(axis=-1, keepdims=True)
    var = ((a - mean) ** 2).mean(axis=-1, keepdims=True)
    return (a - mean) / np.sqrt(var + eps) * gamma + beta


def layer_norm_step(p, x, h, c, xm, hm, eps=1e-3):
    """TensorFlow Addons' LayerNormLSTMCell.call: LN of the kernel part and of the recurrent
    part over all 4H columns, the bias, the gates, then LN of the new cell state."""
    xs, hs = _gate_parts(p, x, h, xm, hm)
    z = (_ln(np.concatenate(xs, -1), p["kernel_norm_gamma"], p["kernel_norm_beta"], eps)
         + _ln(np.concatenate(hs, -1), p["recurrent_norm_gamma"], p["recurrent_norm_beta"], eps)
         + p["bias"])
    i, f, g, o = (z[:, k * H:(k + 1) * H] for k in range(4))
    c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    c_new = _ln(c_new, p["state_norm_gamma"], p["state_norm_beta"], eps)
    return _sigmoid(o) * np.tanh(c_new), c_new


def numpy_loop(step, p, x, h, c, masks):
    """Keras's masking: a masked step keeps the states and repeats the last output."""
    ys = []
    for t in range(T):
        h_new, c_new = step(p, x[:, t], h, c, *masks)
        keep = MASK[:, t, None]
        h, c = np.where(keep, h_new, h), np.where(keep, c_new, c)
        ys.append(h)
    return np.stack(ys, axis=1), h, c


def _loss(y, h, c, xp=np):
    return sum(xp.sum(xp.sin(a)) * (k + 1) for k, a in enumerate((y, h, c)))


# ----------------------------------------------------------------------------- against NumPy


CASES = {
    # recurrent dropout: one mask per gate, for the inputs and for h
    "peephole": (jr.PeepholeLSTMCell(H, dropout=0.3, recurrent_dropout=0.25), peephole_step),
    # input dropout only: one [B, F] mask shared by the gates
    "layer_norm": (jr.LayerNormLSTMCell(H, dropout=0.3), layer_norm_step),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_numpy_transcription_values_and_gradients(name):
    cell, step = CASES[name]
    layer = jr.RNN(cell, return_sequences=True, return_state=True)
    params = numpy_params(layer, (B, T, F), seed=1, scale=0.8)
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(B, T, F)), jnp.float32)
    init = jr.LSTMState(*(jnp.asarray(rng.normal(size=(B, H)), jnp.float32) for _ in range(2)))
    key = jax.random.key(5)

    def loss(p, x, s):
        y, h, c = layer(p, x, initial_state=s, mask=jnp.asarray(MASK), training=True, rng=key)
        return _loss(y, h, c, jnp), (y, h, c)

    (value, out), grads = jax.jit(jax.value_and_grad(loss, (0, 1, 2), has_aux=True))(
        params, x, init)

    # The same dropout masks the layer draws (one draw per sequence, from the same key).
    masks = [None if m is None else np.asarray(m, np.float64)
             for m in cell.dropout_masks(key, True, B, F, jnp.float32)]
    assert masks[0].shape == ((4, B, F) if cell.recurrent_dropout else (B, F))
    primals = jax.tree.map(lambda a: np.asarray(a, np.float64), (params, x, tuple(init)))

    def numpy_loss(p, x, s):
        return _loss(*numpy_loop(step, p, x, *s, masks))

    want = numpy_loop(step, *primals[:2], *primals[2], masks)
    for got, w in zip(out, want):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, numpy_loss(*primals), rtol=1e-5)

    # Each leaf's gradient along a random direction, against a central difference in float64.
    leaves, treedef = jax.tree.flatten(primals)
    grad_leaves = jax.tree.leaves((grads[0], grads[1], tuple(grads[2])))
    eps = 1e-6
    for k, (leaf, g) in enumerate(zip(leaves, grad_leaves)):
        v = rng.normal(size=leaf.shape)

        def at(sign, k=k, v=v):
            moved = [a + sign * eps * v if j == k else a for j, a in enumerate(leaves)]
            return numpy_loss(*jax.tree.unflatten(treedef, moved))

        numeric = (at(1) - at(-1)) / (2 * eps)
        np.testing.assert_allclose(np.sum(np.asarray(g, np.float64) * v), numeric, rtol=2e-4,
                                   atol=2e-4, err_msg=f"leaf {k}")


def test_peephole_weights_matter_and_layer_norm_normalises():
    """The transcriptions are not vacuous: zero peepholes give the plain LSTM, and the
    layer-normalised cell's carried state has zero mean and unit variance per sample."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64),
                     numpy_params(jr.RNN(jr.PeepholeLSTMCell(H)), (B, T, F), seed=3))
    x, h, c = (np.random.default_rng(4).normal(size=(B, n)) for n in (F, H, H))
    plain = jr.LSTMCell(H).step({k: jnp.asarray(p[k]) for k in ("kernel", "recurrent_kernel",
                                                                 "bias")}, x, (h, c))[0]
    zero = dict(p, **{k: 0 * p[k] for k in p if "peephole" in k})
    np.testing.assert_allclose(peephole_step(zero, x, h, c, None, None)[0], plain, rtol=1e-5)
    assert not np.allclose(peephole_step(p, x, h, c, None, None)[0], plain, atol=1e-3)
    ln = jax.tree.map(lambda a: np.asarray(a, np.float64),
                      numpy_params(jr.RNN(jr.LayerNormLSTMCell(H)), (B, T, F), seed=3))
    ln.update(state_norm_gamma=np.ones(H), state_norm_beta=np.zeros(H))
    _, c_new = layer_norm_step(ln, x, h, c, None, None, eps=1e-12)
    np.testing.assert_allclose(c_new.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(c_new.var(-1), 1, rtol=1e-6)


# ----------------------------------------------------------------------------- params, configs


def test_params_init_and_generic_engine():
    # No orthogonal recurrent kernels (a QR to compile; other tests cover them), and both
    # cells' init in one compiled program: eager initializers compile op by op.
    cell = jr.PeepholeLSTMCell(H, recurrent_initializer="glorot_uniform")
    ln = jr.LayerNormLSTMCell(H, recurrent_initializer="glorot_uniform",
                              norm_beta_initializer="random_normal")
    params, ln_params = jax.jit(lambda k: (cell.init(k, F), ln.init(k, F)))(jax.random.key(0))
    shapes = jax.tree.map(jnp.shape, params)
    assert shapes == {"kernel": (F, 4 * H), "recurrent_kernel": (H, 4 * H), "bias": (4 * H,),
                      "input_gate_peephole_weights": (H,),
                      "forget_gate_peephole_weights": (H,),
                      "output_gate_peephole_weights": (H,)}
    # kernel_initializer on a 1-D weight, as Keras: glorot with fan_in = fan_out = H
    for name in ("input", "forget", "output"):
        w = params[f"{name}_gate_peephole_weights"]
        assert 0 < float(jnp.max(jnp.abs(w))) <= np.sqrt(3 / H)
    np.testing.assert_array_equal(params["bias"][H:2 * H], 1)  # unit_forget_bias

    params = ln_params
    assert {k: v.shape for k, v in params.items() if "norm" in k} == {
        "kernel_norm_gamma": (4 * H,), "kernel_norm_beta": (4 * H,),
        "recurrent_norm_gamma": (4 * H,), "recurrent_norm_beta": (4 * H,),
        "state_norm_gamma": (H,), "state_norm_beta": (H,)}
    np.testing.assert_array_equal(params["state_norm_gamma"], 1)
    assert float(jnp.std(params["kernel_norm_beta"])) > 0

    # The generic scan runs them (no fused core in the program).
    for c in (cell, ln):
        shapes = jax.eval_shape(lambda c=c: c.init(jax.random.key(1), F))
        jaxpr = str(jax.make_jaxpr(jr.RNN(c))(shapes, jnp.ones((B, T, F))))
        assert "custom_jvp_call" not in jaxpr and "scan" in jaxpr


LAYERS = [
    jr.RNN(jr.PeepholeLSTMCell(H, recurrent_activation="hard_sigmoid", dropout=0.1),
           return_sequences=True),
    jr.Bidirectional(jr.RNN(jr.LayerNormLSTMCell(H, norm_epsilon=1e-5, unit_forget_bias=False),
                            return_sequences=True)),
    jr.RNN([jr.LSTMCell(H, proj_size=2, projection_initializer="orthogonal"),
            jr.LayerNormLSTMCell(3)], go_backwards=True),
]


@pytest.mark.parametrize("layer", LAYERS, ids=["peephole", "bi_layer_norm", "proj_stack"])
def test_config_and_save_load_round_trip(layer, tmp_path):
    again = type(layer).from_config(json.loads(json.dumps(layer.get_config())))
    assert again == layer and hash(again) == hash(layer)
    params = numpy_params(layer, (B, T, F))
    jr.save(tmp_path / "m.safetensors", layer, params)
    loaded, loaded_params = jr.load(tmp_path / "m.safetensors")
    assert loaded == layer
    jax.tree.map(np.testing.assert_array_equal, loaded_params, params)


def test_projected_lstm_shapes_and_stacking():
    cell = jr.LSTMCell(5, proj_size=2)
    assert cell.state_size == (2, 5) and cell.output_size == 2
    assert cell.param_shapes(3) == {"kernel": (3, 20), "recurrent_kernel": (2, 20),
                                    "bias": (20,), "projection": (5, 2)}
    assert cell.get_config()["proj_size"] == 2
    assert "proj_size" not in jr.LSTMCell(5).get_config()  # Keras's config, unchanged
    stack = jr.StackedRNNCells([cell, jr.GRUCell(3)])
    assert jax.eval_shape(lambda: stack.init(jax.random.key(0), 4))[1]["kernel"].shape == (2, 9)
    layer = jr.LSTM(5, proj_size=2, return_sequences=True, return_state=True)
    assert layer.cell == cell
    assert [s.shape for s in layer.reset_state(B)] == [(B, 2), (B, 5)]


# ----------------------------------------------------------------------------- errors


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"proj_size must be an int with 0 <= proj_size < "
                                         r"units=4.*got proj_size=4.*proj_size=0"):
        jr.LSTMCell(4, proj_size=4)
    with pytest.raises(ValueError, match=r"got proj_size=-1"):
        jr.LSTM(4, proj_size=-1)
    with pytest.raises(ValueError, match=r"got proj_size=2.0"):
        jr.LSTMCell(4, proj_size=2.0)
    with pytest.raises(ValueError, match=r"norm_epsilon must be a float > 0.*got 0"):
        jr.LayerNormLSTMCell(4, norm_epsilon=0)
    with pytest.raises(ValueError, match=r"PeepholeLSTMCell: recurrent_dropout must be"):
        jr.PeepholeLSTMCell(4, recurrent_dropout=1.5)
    with pytest.raises(TypeError, match=r"LayerNormLSTMCell: unit_forget_bias must be True or"):
        jr.LayerNormLSTMCell(4, unit_forget_bias="yes")
    with pytest.raises(ValueError, match=r"unknown initializer 'onez'"):
        jr.LayerNormLSTMCell(4, norm_gamma_initializer="onez")
    with pytest.raises(ValueError, match=r"fused=True needs LSTMCell or GRUCell.*"
                                         r"PeepholeLSTMCell"):
        jr.RNN(jr.PeepholeLSTMCell(4), fused=True)


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_layer_boundary_errors(mode):
    x = jnp.ones((B, T, F))

    def call(layer, params, **kw):
        if mode == "jit":
            return jax.jit(lambda p, x: layer(p, x, **kw))(params, x)
        return layer(params, x, **kw)

    proj = jr.LSTM(H, proj_size=2)
    plain_params = numpy_params(jr.LSTM(H), x.shape)
    with pytest.raises(ValueError, match=r"RNN: LSTMCell: params must have keys .*missing "
                                         r"\['projection'\]"):
        call(proj, plain_params)
    wrong = dict(plain_params, projection=jnp.zeros((H, 2)))
    with pytest.raises(ValueError, match=r"params\['recurrent_kernel'\] must have shape "
                                         r"\(2, 16\) for 2 input features; got \(4, 16\)"):
        call(proj, wrong)
    params = numpy_params(proj, x.shape)
    with pytest.raises(ValueError, match=r"initial_state array 0 must have shape \(3, 2\)"):
        call(proj, params, initial_state=[jnp.zeros((B, H)), jnp.zeros((B, H))])
    peephole = jr.RNN(jr.PeepholeLSTMCell(H))
    with pytest.raises(ValueError, match=r"PeepholeLSTMCell: params must have keys .*missing "
                                         r"\['forget_gate_peephole_weights', "):
        call(peephole, plain_params)
    ln = jr.RNN(jr.LayerNormLSTMCell(H))
    bad = dict(numpy_params(ln, x.shape), state_norm_gamma=jnp.ones((4 * H,)))
    with pytest.raises(ValueError, match=r"params\['state_norm_gamma'\] must have shape \(4,\)"):
        call(ln, bad)


@pytest.mark.slow
def test_bfloat16_compute_keeps_layer_norm_statistics_in_float32():
    layer = jr.RNN(jr.LayerNormLSTMCell(H), return_sequences=True)
    params = numpy_params(layer, (B, T, F))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(B, T, F)), jnp.float32)
    y16 = dataclasses.replace(layer, dtype="bfloat16")(params, x)
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y16, np.float32), layer(params, x), atol=0.05)
