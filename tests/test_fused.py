"""The fused LSTM/GRU path against the generic scan (``fused=False``): values and gradients.

Every comparison runs the same layer twice, once with the default (fused) engine and once
with ``fused=False``, and compares outputs, final states and the gradients of a loss of all
of them wrt params, inputs and initial states. Shapes are tiny; one mask holds every kind
of padding (full row, right padding, left padding, holes, an all-masked row).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from jaxrnn import _engines, _fused
from jaxrnn._loop import LoopOptions
from tests._reference import numpy_params
from tests._sampling import sampled

B, T, F, H = 5, 7, 4, 6

CELLS = {
    "lstm": jr.LSTMCell(H),
    "gru": jr.GRUCell(H),
    "gru_before": jr.GRUCell(H, reset_after=False),
    "stack": jr.StackedRNNCells([jr.LSTMCell(H), jr.GRUCell(3, reset_after=False)]),
    # PyTorch's projected LSTM: h [B, P], c [B, H]; stacked, each cell feeds P features up.
    "proj": jr.LSTMCell(H, proj_size=2),
    "proj_stack": jr.StackedRNNCells([jr.LSTMCell(H, proj_size=4), jr.LSTMCell(3, proj_size=1)]),
}


def _mask():
    m = np.ones((B, T), bool)
    m[1, 5:] = False  # right padding
    m[2, :3] = False  # left padding
    m[3, [1, 2, 5]] = False  # holes
    m[4] = False  # nothing real
    return jnp.asarray(m)


MASKS = {"none": None, "mixed": _mask()}


def _x(seed=0, shape=(B, T, F)):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _random_state(cell, seed=1, b=B):
    zeros = cell.get_initial_state(b)
    leaves, treedef = jax.tree.flatten(zeros)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, z.shape) for k, z in
                                        zip(keys, leaves)])


def _loss(layer, params, x, init, mask, rng):
    out = layer(params, x, initial_state=init, mask=mask, training=rng is not None, rng=rng)
    leaves = jax.tree.leaves(out)
    # Weight each leaf differently so that a swapped output would show.
    return sum(jnp.sum(jnp.sin(a) * (k + 1)) for k, a in enumerate(leaves)), out


def _value_and_grads(layer, params, x, init, mask, rng=None):
    f = jax.jit(jax.value_and_grad(lambda p, x, s: _loss(layer, p, x, s, mask, rng),
                                   argnums=(0, 1, 2), has_aux=True))
    return f(params, x, init)


def _assert_trees_close(got, want, rtol=2e-5, atol=2e-5):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32),
                                   rtol=rtol, atol=atol)


def _compare(cell, mask=None, rng=None, x=None, init=None, rtol=2e-5, atol=2e-5, **kw):
    kw.setdefault("return_state", True)
    fused = jr.RNN(cell, **kw)
    generic = dataclasses.replace(fused, fused=False)
    x = _x() if x is None else x
    shape = x.shape if not kw.get("time_major") else (x.shape[1], x.shape[0], x.shape[2])
    params = fused.init(jax.random.key(2), shape)
    init = list(_random_state(cell, b=shape[0])) if init is None else init
    (v1, out1), g1 = _value_and_grads(fused, params, x, init, mask, rng)
    (v0, out0), g0 = _value_and_grads(generic, params, x, init, mask, rng)
    _assert_trees_close(out1, out0, rtol, atol)
    _assert_trees_close(g1, g0, rtol, atol)
    np.testing.assert_allclose(v1, v0, rtol=rtol, atol=atol)
    return out1


# ----------------------------------------------------------------------------- the path


def test_supports():
    assert _fused.supports(jr.LSTMCell(4))
    assert _fused.supports(jr.GRUCell(4, reset_after=False))
    assert _fused.supports(jr.LSTMCell(4, proj_size=2))
    assert _fused.supports(jr.StackedRNNCells([jr.LSTMCell(4), jr.GRUCell(3)]))
    assert not _fused.supports(jr.SimpleRNNCell(4))
    assert not _fused.supports(jr.StackedRNNCells([jr.LSTMCell(4), jr.SimpleRNNCell(3)]))

    @dataclasses.dataclass(frozen=True)
    class MyLSTM(jr.LSTMCell):  # a subclass may change `step`: not fused
        pass

    assert not _fused.supports(MyLSTM(4))


@pytest.mark.parametrize("layer", [jr.LSTM(H), jr.GRU(H), jr.RNN([jr.LSTMCell(H), jr.GRUCell(H)])])
def test_default_layers_take_the_fused_path(layer):
    params = layer.init(jax.random.key(0), (B, T, F))
    jaxpr = str(jax.make_jaxpr(layer)(params, _x()))
    assert "custom_jvp_call" in jaxpr
    generic = str(jax.make_jaxpr(dataclasses.replace(layer, fused=False))(params, _x()))
    assert "custom_jvp_call" not in generic


# ----------------------------------------------------------------------------- equivalence


FLAG_SETS = [  # mask, go_backwards, zero_output_for_mask, return_sequences
    ("mixed", False, False, True), ("mixed", True, True, True), ("mixed", False, True, False),
    ("mixed", True, False, False), ("none", True, False, True),
]
EQUIVALENCE = [(name, *flags) for name in sorted(CELLS) for flags in FLAG_SETS]
# By default 12 of the 20: every cell with FLAG_SETS[2] and FLAG_SETS[4], which differ in
# every flag, and with one of the other three (each of them runs), so every cell meets every
# flag value and every pair of flag values is covered; the rest run under the slow marker.
_EQUIVALENCE_SAMPLE = [(name, *FLAG_SETS[i]) for name, extra in
                       (("gru", 0), ("gru_before", 3), ("lstm", 1), ("stack", 1))
                       for i in (extra, 2, 4)]
# The projected LSTM's default case is `test_projected_lstm_with_everything`; its rows here
# run under the slow marker.


@pytest.mark.parametrize(
    "name,mask,go_backwards,zero_output_for_mask,return_sequences",
    sampled(EQUIVALENCE, ["-".join(map(str, (*r[1:], r[0]))) for r in EQUIVALENCE],
            _EQUIVALENCE_SAMPLE))
def test_matches_generic_scan(name, mask, go_backwards, zero_output_for_mask,
                              return_sequences):
    _compare(CELLS[name], MASKS[mask], go_backwards=go_backwards,
             zero_output_for_mask=zero_output_for_mask, return_sequences=return_sequences)


def test_zero_initial_state_no_return_state():
    _compare(CELLS["gru"], None, return_sequences=False, return_state=False, init=None)


def test_no_initial_state_and_no_return_state():
    layer = jr.GRU(H, return_sequences=True)
    params = layer.init(jax.random.key(0), (B, T, F))
    got = layer(params, _x(), mask=MASKS["mixed"])
    want = dataclasses.replace(layer, fused=False)(params, _x(), mask=MASKS["mixed"])
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


DROPOUT_CELLS = {
    # recurrent_dropout > 0: one mask per gate (Keras's implementation=1), inputs and states
    "lstm": jr.LSTMCell(H, dropout=0.3, recurrent_dropout=0.4),
    "gru": jr.GRUCell(H, dropout=0.3, recurrent_dropout=0.4),
    "gru_before": jr.GRUCell(H, dropout=0.3, recurrent_dropout=0.4, reset_after=False),
    # dropout only: one input mask shared by the gates; a stack draws one per cell
    "stack_shared": jr.StackedRNNCells([jr.LSTMCell(H, dropout=0.5),
                                        jr.GRUCell(3, dropout=0.5, reset_after=False)]),
    # recurrent dropout masks the projected h: [4, B, P] masks
    "proj": jr.LSTMCell(H, dropout=0.3, recurrent_dropout=0.4, proj_size=3),
}


@pytest.mark.parametrize("name", [n if n != "proj" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(DROPOUT_CELLS)])
def test_dropout_and_recurrent_dropout(name):
    _compare(DROPOUT_CELLS[name], MASKS["mixed"], rng=jax.random.key(7), return_sequences=True,
             go_backwards=True)


def test_unroll():
    _compare(CELLS["lstm"], MASKS["mixed"], unroll=3, return_sequences=True)
    _compare(CELLS["gru"], MASKS["mixed"][:, :4], x=_x(shape=(B, 4, F)), unroll=True)


def test_time_major():
    x = jnp.swapaxes(_x(), 0, 1)
    _compare(CELLS["lstm"], MASKS["mixed"], x=x, time_major=True, return_sequences=True)


def test_stateful_threads_the_state():
    for cell in (CELLS["lstm"], CELLS["stack"]):
        layer = jr.RNN(cell, stateful=True, return_sequences=True)
        generic = dataclasses.replace(layer, fused=False)
        params = layer.init(jax.random.key(0), (B, T, F))
        s1 = s0 = layer.reset_state(B)
        for seed in range(2):
            (y1, s1), (y0, s0) = layer(params, _x(seed), state=s1), generic(params, _x(seed),
                                                                             state=s0)
            np.testing.assert_allclose(y1, y0, rtol=2e-5, atol=2e-6)
            _assert_trees_close(s1, s0)


@pytest.mark.parametrize("cell", [
    jr.LSTMCell(H, activation="relu", recurrent_activation="hard_sigmoid"),
    jr.GRUCell(H, activation="softmax", recurrent_activation=jax.nn.softplus),
    jr.GRUCell(H, activation="elu", recurrent_activation="softmax", reset_after=False),
], ids=["lstm_relu_hard_sigmoid", "gru_softmax_callable", "gru_before_elu_softmax"])
def test_any_activation(cell):
    _compare(cell, MASKS["mixed"], return_sequences=True)


def test_projected_lstm_with_everything():
    """proj_size > 0 on the fused path equals the generic scan with many features at once:
    a learned initial state, per-sample resets, every kind of mask padding, input dropout
    and go_backwards; outputs, final states and the gradients of params (the projection and
    the learned state included) and inputs. (Recurrent dropout, checkpointed segments,
    second order and the flag matrix: the slow "proj" cases above and below.)"""
    cell = jr.LSTMCell(H, proj_size=2, dropout=0.2)
    layer = jr.RNN(cell, return_sequences=True, return_state=True, go_backwards=True,
                   learn_initial_state=True)
    generic = dataclasses.replace(layer, fused=False)
    x, mask = _x(), MASKS["mixed"]
    reset = jnp.zeros((B, T), bool).at[0, 3].set(True).at[3, 4].set(True).at[1, 1].set(True)
    params = numpy_params(layer, (B, T, F))
    params["initial_state"] = jax.tree.map(lambda s: s + 0.3, params["initial_state"])
    assert params["cell"]["projection"].shape == (H, 2)
    assert params["initial_state"].h.shape == (1, 2)

    def run(layer, p, x):
        out = layer(p, x, mask=mask, reset=reset, training=True, rng=jax.random.key(3))
        return sum(jnp.sum(jnp.sin(a) * (k + 1)) for k, a in enumerate(out)), out

    got = jax.jit(jax.value_and_grad(lambda *a: run(layer, *a), (0, 1), has_aux=True))
    want = jax.jit(jax.value_and_grad(lambda *a: run(generic, *a), (0, 1), has_aux=True))
    (v1, out1), g1 = got(params, x)
    (v0, out0), g0 = want(params, x)
    assert [a.shape for a in out1] == [(B, T, 2), (B, 2), (B, H)]
    _assert_trees_close(out1, out0)
    _assert_trees_close(g1, g0)
    np.testing.assert_allclose(v1, v0, rtol=2e-5)


# ----------------------------------------------------------------------------- second order


@pytest.mark.parametrize("name", ["lstm", "gru", "gru_before",
                                  pytest.param("proj", marks=pytest.mark.slow)])
def test_jvp_of_grad(name):
    cell = CELLS[name]
    x, mask, init = _x(), MASKS["mixed"], list(_random_state(cell))

    def grad_fn(layer):
        def f(p):
            return _loss(layer, p, x, init, mask, None)[0]
        return jax.grad(f)

    layer = jr.RNN(cell, return_sequences=True, return_state=True)
    params = layer.init(jax.random.key(2), (B, T, F))
    tangent = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=p.dtype)).reshape(p.shape),
                           params)
    got = jax.jit(lambda p, t: jax.jvp(grad_fn(layer), (p,), (t,)))(params, tangent)
    generic = dataclasses.replace(layer, fused=False)
    want = jax.jit(lambda p, t: jax.jvp(grad_fn(generic), (p,), (t,)))(params, tangent)
    _assert_trees_close(got, want, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- precision


@pytest.mark.parametrize("name", ["lstm", "gru_before"])
def test_bf16_compute_f32_params(name):
    layer = jr.RNN(CELLS[name], return_sequences=True, dtype="bfloat16")
    params = layer.init(jax.random.key(0), (B, T, F))
    x = _x()

    def loss(layer, p):
        return jnp.sum(layer(p, x, mask=MASKS["mixed"]).astype(jnp.float32) ** 2)

    y = layer(params, x)
    assert y.dtype == jnp.bfloat16
    g = jax.jit(jax.grad(lambda p: loss(layer, p)))(params)
    g32 = jax.jit(jax.grad(lambda p: loss(dataclasses.replace(layer, dtype=None,
                                                              fused=False), p)))(params)
    for a, b, p in zip(jax.tree.leaves(g), jax.tree.leaves(g32), jax.tree.leaves(params)):
        assert a.dtype == p.dtype == jnp.float32
        np.testing.assert_allclose(a, b, rtol=0.1, atol=0.1 * float(jnp.max(jnp.abs(b))))


# ----------------------------------------------------------------------------- memory


@pytest.mark.parametrize("name", ["lstm", "stack",
                                  pytest.param("proj_stack", marks=pytest.mark.slow)])
def test_remat_segments_match(name):
    """Checkpointed segments (with a shorter last one) give the same values and grads."""
    cell = CELLS[name]
    x = jnp.swapaxes(_x(), 0, 1)
    mask = MASKS["mixed"].T
    params = cell.init(jax.random.key(2), F)
    init = _random_state(cell)

    def loss(remat, p, x, s):
        opts = LoopOptions(go_backwards=True, zero_output_for_mask=True, return_sequences=True,
                           remat=remat)
        out, fin = _engines.run("fused", cell, p, s, x, mask, None, None, None, opts)
        return jnp.sum(jnp.sin(out)) + sum(jnp.sum(a) for a in jax.tree.leaves(fin))

    want = jax.jit(jax.value_and_grad(lambda *a: loss(False, *a), argnums=(0, 1, 2)))
    got = jax.jit(jax.value_and_grad(lambda *a: loss(3, *a), argnums=(0, 1, 2)))
    _assert_trees_close(got(params, x, init), want(params, x, init))


def test_remat_bounds_memory():
    """Long sequences: the compiled training step's temporaries shrink with segments."""
    cell = jr.LSTMCell(16)
    t, b = 4096, 4
    x = jnp.zeros((t, b, 8))
    params = cell.init(jax.random.key(0), 8)
    init = cell.get_initial_state(b)

    def temp_bytes(remat):
        f = jax.jit(jax.grad(lambda p: jnp.sum(_engines.run(
            "fused", cell, p, init, x, None, None, None, None, LoopOptions(remat=remat))[0])))
        return f.lower(params).compile().memory_analysis().temp_size_in_bytes

    full, segmented = temp_bytes(False), temp_bytes(True)
    assert segmented < full / 4, (segmented, full)


@pytest.mark.parametrize("proj_size", [0, 16])
def test_lstm_inference_needs_no_more_memory_than_the_generic_scan(proj_size):
    """Without a gradient the fused LSTM runs the generic scan's program: no residual
    buffers and no gate-permuted copy of the weights (XLA's memory analysis, deterministic).
    (The fused GRU folds part of its recurrent bias into the input bias: one [3H] vector.)"""
    x = jnp.zeros((1, 50, 16))

    def total_bytes(fused):
        lay = jr.RNN(jr.LSTMCell(64, proj_size=proj_size), return_sequences=True, fused=fused)
        params = lay.init(jax.random.key(0), x.shape)
        m = jax.jit(lay).lower(params, x).compile().memory_analysis()
        return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes

    assert total_bytes(True) <= total_bytes(False)


@pytest.mark.parametrize("make", [
    lambda h: jr.LSTMCell(h), lambda h: jr.GRUCell(h),
    lambda h: jr.GRUCell(h, reset_after=False)], ids=["lstm", "gru", "gru-reset-before"])
def test_training_step_temporaries_close_to_the_generic_scans(make):
    """The fused training step adds the input bias inside its forward loop: added to the
    [T, B, G*H] projection before the loop it was a second buffer of that size (XLA's
    memory analysis, deterministic: 1.29-1.38x the generic scan's temporaries here,
    1.02-1.13x with the bias in the loop)."""
    x = jnp.zeros((8, 64, 16))

    def temp_bytes(fused):
        lay = jr.RNN(make(64), return_sequences=True, fused=fused)
        params = lay.init(jax.random.key(0), x.shape)
        step = jax.jit(jax.grad(lambda p: jnp.sum(lay(p, x) ** 2)))
        return step.lower(params).compile().memory_analysis().temp_size_in_bytes

    fused, generic = temp_bytes(True), temp_bytes(False)
    assert fused <= 1.2 * generic, (fused, generic)


def test_layer_remat_flag_keeps_results():
    """``RNN(remat=k)`` reaches the fused path and changes nothing but memory."""
    x = _x()
    mask = MASKS["mixed"]
    plain = jr.LSTM(H, return_sequences=True, remat=False)
    params = plain.init(jax.random.key(3), x.shape)
    segmented = jr.LSTM(H, return_sequences=True, remat=2)

    def grads(layer):
        return jax.jit(jax.value_and_grad(lambda p: jnp.sum(layer(p, x, mask=mask) ** 2)))(params)

    _assert_trees_close(grads(segmented), grads(plain))
    assert jr.RNN.from_config(segmented.get_config()) == segmented
