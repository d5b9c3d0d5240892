"""The RNN layer against a plain Python loop, and its composition with jit, grad and vmap."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxrnn as jr
from tests._reference import python_loop

B, T, F, H = 3, 6, 4, 5

CELLS = {
    "simple": jr.SimpleRNNCell(H),
    "lstm": jr.LSTMCell(H),
    "gru": jr.GRUCell(H),
    "gru_reset_before": jr.GRUCell(H, reset_after=False),
    "stack": jr.StackedRNNCells([jr.LSTMCell(H), jr.GRUCell(3), jr.SimpleRNNCell(H)]),
}


def _data(seed=0, b=B, t=T, f=F):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(b, t, f)), jnp.float32)
    mask = rng.random((b, t)) > 0.4
    mask[0] = True  # one full row
    mask[1, -1] = False  # last step masked
    mask[-1, :2] = False  # leading steps masked
    return x, jnp.asarray(mask)


def _random_state(cell, key, b=B):
    zeros = cell.get_initial_state(b)
    leaves, treedef = jax.tree.flatten(zeros)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, z.shape) for k, z in
                                        zip(keys, leaves)])


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_matches_python_loop(name, go_backwards, zero_output_for_mask):
    cell = CELLS[name]
    x, mask = _data()
    params = cell.init(jax.random.key(1), F)
    init = _random_state(cell, jax.random.key(2))
    seq, last, states = python_loop(cell, params, x, mask, init, go_backwards,
                                    zero_output_for_mask, stacked=name == "stack")
    layers = [jr.RNN(cell, return_sequences=rs, return_state=True, go_backwards=go_backwards,
                     zero_output_for_mask=zero_output_for_mask) for rs in (False, True)]
    # Both layers in one compiled call (one compilation, not one per eager call).
    results = jax.jit(lambda p, x, s, m: [layer(p, x, initial_state=list(s), mask=m)
                                          for layer in layers])(params, x, init, mask)
    for rs, (out, *final) in zip((False, True), results):
        np.testing.assert_allclose(out, seq if rs else last, rtol=1e-5, atol=1e-6)
        for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(states)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("unroll", [True, 2, 4, 100])
def test_unroll_never_changes_results(unroll):
    x, mask = _data()
    cell = CELLS["lstm"]
    params = cell.init(jax.random.key(0), F)
    base = jr.RNN(cell, return_sequences=True, return_state=True)
    other = jr.RNN(cell, return_sequences=True, return_state=True, unroll=unroll)
    for a, b in zip(base(params, x, mask=mask), other(params, x, mask=mask)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_go_backwards_equals_reversed_input():
    x, _ = _data()
    cell = CELLS["gru"]
    params = cell.init(jax.random.key(0), F)
    back = jr.RNN(cell, return_sequences=True, go_backwards=True)(params, x)
    fwd = jr.RNN(cell, return_sequences=True)(params, x[:, ::-1])
    np.testing.assert_allclose(back, fwd, rtol=1e-6, atol=1e-6)


def test_time_major_equals_batch_major():
    x, mask = _data()
    cell = CELLS["lstm"]
    params = cell.init(jax.random.key(0), F)
    y = jr.RNN(cell, return_sequences=True)(params, x, mask=mask)
    y_tm = jr.RNN(cell, return_sequences=True, time_major=True)(params, x.swapaxes(0, 1),
                                                                mask=mask)
    np.testing.assert_allclose(y_tm.swapaxes(0, 1), y, rtol=1e-6, atol=1e-6)


def test_all_masked_row_keeps_initial_state():
    x, _ = _data()
    mask = jnp.ones((B, T), bool).at[1].set(False)
    cell = CELLS["lstm"]
    params = cell.init(jax.random.key(0), F)
    init = _random_state(cell, jax.random.key(3))
    out, h, c = jr.RNN(cell, return_sequences=True, return_state=True)(
        params, x, initial_state=list(init), mask=mask)
    np.testing.assert_allclose(h[1], init.h[1])
    np.testing.assert_allclose(c[1], init.c[1])
    np.testing.assert_allclose(out[1], jnp.broadcast_to(init.h[1], (T, H)))


def test_return_structures():
    x, _ = _data()
    lstm = jr.RNN(jr.LSTMCell(H), return_state=True)
    out, h, c = lstm(lstm.init(jax.random.key(0), x.shape), x)
    assert out.shape == h.shape == c.shape == (B, H)
    stack = jr.RNN([jr.LSTMCell(H), jr.GRUCell(2)], return_sequences=True, return_state=True)
    out, s0, s1 = stack(stack.init(jax.random.key(0), x.shape), x)
    assert out.shape == (B, T, 2)
    assert [a.shape for a in s0] == [(B, H), (B, H)] and [a.shape for a in s1] == [(B, 2)]
    gru = jr.GRU(H, return_state=True)
    out, h = gru(gru.init(jax.random.key(0), x.shape), x)
    np.testing.assert_array_equal(out, h)


def test_jit_equals_eager_and_compiles_once():
    x, mask = _data()
    layer = jr.RNN(CELLS["stack"], return_sequences=True, go_backwards=True)
    params = layer.init(jax.random.key(0), x.shape)
    eager = layer(params, x, mask=mask)
    f = jax.jit(layer.__call__)
    np.testing.assert_allclose(f(params, x, mask=mask), eager, rtol=1e-6, atol=1e-6)
    f(params, x + 1.0, mask=~mask)
    assert f._cache_size() == 1


def test_vmap_over_extra_axis_equals_loop():
    x, mask = _data()
    xs = jnp.stack([x, 2 * x, -x])  # [N, B, T, F]
    masks = jnp.stack([mask, ~mask, mask])
    layer = jr.LSTM(H, return_sequences=True)
    params = layer.init(jax.random.key(0), x.shape)
    batched = jax.vmap(lambda xi, mi: layer(params, xi, mask=mi))(xs, masks)
    for i in range(3):
        np.testing.assert_allclose(batched[i], layer(params, xs[i], mask=masks[i]),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["lstm", "gru", "gru_reset_before", "simple"])
def test_gradients_match_finite_differences(name):
    x, mask = _data(b=2, t=4, f=F)
    layer = jr.RNN(CELLS[name], return_sequences=True, go_backwards=True)
    params = layer.init(jax.random.key(0), x.shape)

    # Jitted: check_grads evaluates f and its derivatives many times; eagerly, each call
    # would trace and compile the loop again.
    @jax.jit
    def f(p, xx):
        return jnp.sum(layer(p, xx, mask=mask) ** 2)

    check_grads(f, (params, x), order=2, modes=["rev"], atol=5e-2, rtol=5e-2)


def test_gradient_of_masked_steps_is_zero():
    x, _ = _data()
    mask = jnp.ones((B, T), bool).at[:, -2:].set(False)
    layer = jr.LSTM(H)
    params = layer.init(jax.random.key(0), x.shape)
    gx = jax.grad(lambda xx: layer(params, xx, mask=mask).sum())(x)
    np.testing.assert_array_equal(gx[:, -2:], 0.0)
    assert jnp.all(jnp.abs(gx[:, :-2]).sum(-1) > 0)


def test_stateful_threads_state_like_one_long_sequence():
    x, _ = _data(t=8)
    layer = jr.LSTM(H, stateful=True, return_sequences=True)
    params = layer.init(jax.random.key(0), x.shape)
    state = layer.reset_state(B)
    y1, state = layer(params, x[:, :4], state=state)
    y2, state = layer(params, x[:, 4:], state=state)
    whole = jr.LSTM(H, return_sequences=True, return_state=True)
    y, h, c = whole(params, x)
    np.testing.assert_allclose(jnp.concatenate([y1, y2], 1), y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.h, h, rtol=1e-5, atol=1e-6)
    fresh, _ = layer(params, x[:, :4], state=layer.reset_state(B))
    np.testing.assert_allclose(fresh, y1, rtol=1e-6)
    given = layer.reset_state(B, states=[h, c])
    assert isinstance(given, jr.LSTMState)
    np.testing.assert_array_equal(given.c, c)


def test_stateful_is_jittable():
    x, _ = _data()
    layer = jr.GRU(H, stateful=True, return_state=True)
    params = layer.init(jax.random.key(0), x.shape)
    step = jax.jit(lambda p, xx, s: layer(p, xx, state=s))
    (out, h), state = step(params, x, layer.reset_state(B))
    np.testing.assert_allclose(out, h)
    (out2, _), _ = step(params, x, state)
    assert not np.allclose(out, out2)


class MinimalRNNCell:
    """The user-defined cell of Keras's RNN docs, in jaxrnn's functional form."""

    def __init__(self, units):
        self.units = units
        self.state_size = units
        self.output_size = units

    def init(self, key, input_dim, dtype=jnp.float32):
        k1, k2 = jax.random.split(key)
        return {"kernel": jax.nn.initializers.glorot_uniform()(k1, (input_dim, self.units), dtype),
                "recurrent_kernel": jax.nn.initializers.orthogonal()(k2, (self.units,) * 2, dtype)}

    def __call__(self, params, inputs, states, *, training=False, rng=None):
        (prev,) = states
        h = inputs @ params["kernel"]
        output = h + prev @ params["recurrent_kernel"]
        return output, [output]  # a list: the layer restores the states' structure

    def get_config(self):
        return {"units": self.units}


def test_user_defined_cell_alone_and_stacked():
    x, mask = _data()
    cell = MinimalRNNCell(H)
    layer = jr.RNN(cell, return_sequences=True)
    params = layer.init(jax.random.key(0), x.shape)
    seq, _, _ = python_loop(cell, params, x, mask)
    np.testing.assert_allclose(layer(params, x, mask=mask), seq, rtol=1e-5, atol=1e-6)

    stack = jr.RNN([cell, jr.LSTMCell(3), MinimalRNNCell(2)], return_state=True)
    p = stack.init(jax.random.key(1), x.shape)
    ref_seq, ref_last, ref_states = python_loop(stack.cell, p, x, mask, stacked=True)
    out, *states = jax.jit(lambda pp: stack(pp, x, mask=mask))(p)
    np.testing.assert_allclose(out, ref_last, rtol=1e-5, atol=1e-6)
    assert len(states) == 3

    config = jr.RNN(cell).get_config()
    assert config["cell"] == {"class_name": "MinimalRNNCell", "config": {"units": H}}
    rebuilt = jr.RNN.from_config(json.loads(json.dumps(config)),
                                 custom_objects={"MinimalRNNCell": MinimalRNNCell})
    np.testing.assert_allclose(rebuilt(params, x), jr.RNN(cell)(params, x))


# --- dropout -------------------------------------------------------------------------


@pytest.mark.parametrize("cell", [jr.SimpleRNNCell(H, dropout=0.3, recurrent_dropout=0.2),
                                  jr.LSTMCell(H, dropout=0.3),
                                  jr.LSTMCell(H, dropout=0.3, recurrent_dropout=0.2),
                                  jr.GRUCell(H, recurrent_dropout=0.4),
                                  jr.GRUCell(H, dropout=0.2, recurrent_dropout=0.4,
                                             reset_after=False)])
def test_dropout_masks_are_drawn_once_per_sequence(cell):
    x, mask = _data()
    rng = jax.random.key(7)
    params = cell.init(jax.random.key(0), F)
    layer = jr.RNN(cell, return_sequences=True)
    masks = cell.dropout_masks(rng, True, B, F, jnp.float32)
    seq, _, _ = python_loop(cell, params, x, mask, dropout=masks)
    y = layer(params, x, mask=mask, training=True, rng=rng)
    np.testing.assert_allclose(y, seq, rtol=1e-5, atol=1e-6)
    plain = layer(params, x, mask=mask)
    assert not np.allclose(y, plain)  # dropout did something
    np.testing.assert_allclose(layer(params, x, mask=mask, training=False, rng=rng), plain)
    np.testing.assert_allclose(jax.jit(layer.__call__, static_argnames="training")(
        params, x, mask=mask, training=True, rng=rng), y, rtol=1e-5, atol=1e-6)


def test_dropout_mask_statistics_and_per_gate_layout():
    cell = jr.LSTMCell(64, dropout=0.25, recurrent_dropout=0.5)
    x_mask, h_mask = cell.dropout_masks(jax.random.key(0), True, 256, 32, jnp.float32)
    assert x_mask.shape == (4, 256, 32) and h_mask.shape == (4, 256, 64)  # one per gate
    np.testing.assert_allclose(jnp.mean(x_mask == 0), 0.25, atol=0.01)
    np.testing.assert_allclose(jnp.mean(h_mask == 0), 0.5, atol=0.01)
    np.testing.assert_allclose(jnp.unique(x_mask), [0.0, 1 / 0.75], rtol=1e-6)
    x_only, none = jr.LSTMCell(8, dropout=0.25).dropout_masks(jax.random.key(0), True, 4, 3,
                                                              jnp.float32)
    assert x_only.shape == (4, 3) and none is None  # Keras: one mask shared by the gates


def test_stacked_dropout_uses_a_key_per_cell():
    stack = jr.StackedRNNCells([jr.GRUCell(4, dropout=0.5), jr.GRUCell(4, dropout=0.5)])
    (m0, _), (m1, _) = stack.dropout_masks(jax.random.key(0), True, 16, 4, jnp.float32)
    assert m0.shape == m1.shape == (16, 4) and not np.array_equal(m0, m1)


# --- property-based ------------------------------------------------------------------


RANDOM_CASES = dict(
    b=st.integers(1, 4),
    t=st.integers(1, 7),
    seed=st.integers(0, 2**16),
    go_backwards=st.booleans(),
    zero_output=st.booleans(),
    name=st.sampled_from(sorted(CELLS)),
)


def _check_random_case(b, t, seed, go_backwards, zero_output, name):
    cell = CELLS[name]
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(b, t, F)), jnp.float32)
    mask = jnp.asarray(rng.random((b, t)) < rng.random())
    params = cell.init(jax.random.key(seed), F)
    seq, last, states = python_loop(cell, params, x, mask, go_backwards=go_backwards,
                                    zero_output_for_mask=zero_output, stacked=name == "stack")
    layer = jr.RNN(cell, return_sequences=True, return_state=True, go_backwards=go_backwards,
                   zero_output_for_mask=zero_output)
    last_only = dataclasses.replace(layer, return_sequences=False, return_state=False)
    # Both layers in one compiled call: one compilation per example, not two.
    (out, *final), got_last = jax.jit(
        lambda p, x, m: (layer(p, x, mask=m), last_only(p, x, mask=m)))(params, x, mask)
    np.testing.assert_allclose(out, seq, rtol=1e-5, atol=1e-5)
    for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(states)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_last, last, rtol=1e-5, atol=1e-5)


@settings(max_examples=12, deadline=None)
@given(**RANDOM_CASES)
def test_random_masks_and_shapes_match_python_loop(b, t, seed, go_backwards, zero_output, name):
    _check_random_case(b, t, seed, go_backwards, zero_output, name)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(**RANDOM_CASES)
def test_random_masks_and_shapes_match_python_loop_more_examples(b, t, seed, go_backwards,
                                                                 zero_output, name):
    _check_random_case(b, t, seed, go_backwards, zero_output, name)


# --- Bidirectional and Sequential ----------------------------------------------------


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_against_its_two_directions(merge_mode):
    x, mask = _data()
    bi = jr.Bidirectional(jr.LSTM(H, return_sequences=True, return_state=True), merge_mode)
    params = bi.init(jax.random.key(0), x.shape)
    fwd = jr.LSTM(H, return_sequences=True, return_state=True, zero_output_for_mask=True)
    bwd = jr.LSTM(H, return_sequences=True, return_state=True, zero_output_for_mask=True,
                  go_backwards=True)
    # The three layers in one compiled call (one compilation, not three).
    result, (y, fh, fc), (yr, bh, bc) = jax.jit(lambda p, x, m: (
        bi(p, x, mask=m), fwd(p["forward"], x, mask=m), bwd(p["backward"], x, mask=m)))(
        params, x, mask)
    yr = yr[:, ::-1]
    merged = {"concat": lambda: jnp.concatenate([y, yr], -1), "sum": lambda: y + yr,
              "mul": lambda: y * yr, "ave": lambda: (y + yr) / 2, None: lambda: (y, yr)}
    want = merged[merge_mode]()
    want = (*want, fh, fc, bh, bc) if merge_mode is None else (want, fh, fc, bh, bc)
    assert len(result) == len(want)
    for a, b in zip(result, want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_bidirectional_initial_state_and_stateful():
    x, _ = _data()
    bi = jr.Bidirectional(jr.GRU(H, return_state=True), "sum")
    params = bi.init(jax.random.key(0), x.shape)
    s = [jnp.ones((B, H)), -jnp.ones((B, H))]
    out, fh, bh = bi(params, x, initial_state=s)
    f_out, f_h = jr.GRU(H, return_state=True)(params["forward"], x, initial_state=s[:1])
    np.testing.assert_allclose(fh, f_h, rtol=1e-6)
    sbi = jr.Bidirectional(jr.GRU(H, stateful=True), "concat")
    y, state = sbi(params, x, state=sbi.reset_state(B))
    np.testing.assert_allclose(y, bi.__class__(jr.GRU(H), "concat")(params, x), rtol=1e-6)
    assert len(state) == 2


def test_sequential_deep_bidirectional():
    x, mask = _data()
    model = jr.Sequential([jr.Bidirectional(jr.LSTM(4, return_sequences=True)),
                           jr.Bidirectional(jr.GRU(3, return_sequences=True), "sum"),
                           jr.SimpleRNN(2)])
    params = model.init(jax.random.key(0), x.shape)

    def model_and_layer_by_layer(p, x, m):  # one compilation for both
        h = model.layers[0](p[0], x, mask=m)
        h = model.layers[1](p[1], h, mask=m)
        return model(p, x, mask=m), model.layers[2](p[2], h, mask=m)

    y, want = jax.jit(model_and_layer_by_layer)(params, x, mask)
    assert y.shape == (B, 2)
    np.testing.assert_allclose(y, want, rtol=1e-6)
    grads = jax.jit(jax.grad(lambda p: model(p, x, mask=mask).sum()))(params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)


def test_mixed_precision_inputs_keep_a_consistent_carry():
    x, mask = _data()
    layer = jr.LSTM(H, return_sequences=True)
    params = layer.init(jax.random.key(0), x.shape, dtype=jnp.bfloat16)
    y = layer(params, x.astype(jnp.bfloat16), mask=mask)
    assert y.dtype == jnp.bfloat16
    y32 = layer(jax.tree.map(lambda p: p.astype(jnp.float32), params), x, mask=mask)
    np.testing.assert_allclose(y.astype(jnp.float32), y32, atol=5e-2)


@pytest.mark.parametrize("shorthand, cell_cls", [(jr.SimpleRNN, jr.SimpleRNNCell),
                                                 (jr.LSTM, jr.LSTMCell), (jr.GRU, jr.GRUCell)])
def test_shorthands_show_every_argument(shorthand, cell_cls):
    """help(), IDEs and type checkers see the cell's and the layer's arguments by name,
    keyword-only, with their defaults; a typo is a TypeError."""
    import inspect

    params = inspect.signature(shorthand).parameters
    cell_fields = {f.name: f.default for f in dataclasses.fields(cell_cls)}
    layer_fields = {f.name: f.default for f in dataclasses.fields(jr.RNN) if f.name != "cell"}
    assert set(params) == set(cell_fields) | set(layer_fields)
    for name, p in params.items():
        if name == "units":
            continue
        assert p.kind is inspect.Parameter.KEYWORD_ONLY
        assert p.default == {**cell_fields, **layer_fields}[name], name
        assert name in shorthand.__doc__
    with pytest.raises(TypeError, match="retrun_sequences"):
        shorthand(3, retrun_sequences=True)
    layer = shorthand(3, dropout=0.25, return_sequences=True, remat=4)
    assert layer.cell == cell_cls(3, dropout=0.25)
    assert layer == jr.RNN(cell_cls(3, dropout=0.25), return_sequences=True, remat=4)


def test_integer_token_ids_get_an_embedding_hint():
    layer = jr.LSTM(3)
    params = layer.init(jax.random.key(0), (None, None, 2))
    with pytest.raises(ValueError, match=r"look like token ids.*embedding.*\[B, T, 1\]"):
        layer(params, jnp.zeros((2, 5), jnp.int32))
    with pytest.raises(TypeError, match="Integer ids need an embedding"):
        layer(params, jnp.zeros((2, 5, 2), jnp.int32))
