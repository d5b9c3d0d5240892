"""Per-sample resets (``reset=``), learnable initial states and NaN-safe padding, on every
engine (generic scan, fused LSTM/GRU, parallel cells with both solvers).

The reference is a plain Python loop over the cell (`_reset_loop`) that applies the
definition literally: before step t runs, a sample whose segment starts at t gets the
initial state; backwards, a segment runs from its last step to its first. Gradients are
compared with autodiff of that loop.
"""

import dataclasses
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from jaxrnn import LRUCell, MinGRUCell, MinLSTMCell

B, T, F, H = 4, 7, 3, 4


def _reset_loop(cell, params, x, reset, init, reset_init, mask=None, go_backwards=False,
                zero_output_for_mask=False):
    """(outputs [B, T, H] in processing order, final states), stepping `cell` in Python."""
    states = init
    order = range(T - 1, -1, -1) if go_backwards else range(T)
    outs = []
    for t in order:
        if go_backwards:  # a backward segment starts at its last input step
            starts = reset[:, t + 1] if t + 1 < T else np.zeros(B, bool)
        else:
            starts = reset[:, t]
        k = np.asarray(starts)[:, None]
        states = jax.tree.map(lambda r, s, k=k: jnp.where(k, r, s), reset_init, states)
        out, new = cell(params, x[:, t], states)
        new = jax.tree.unflatten(jax.tree.structure(states), jax.tree.leaves(new))
        if mask is not None:
            keep = np.asarray(mask)[:, t][:, None]
            first = states[-1][0] if isinstance(cell, jr.StackedRNNCells) else states[0]
            carried = jnp.zeros_like(out) if zero_output_for_mask else first
            new = jax.tree.map(lambda n, s, keep=keep: jnp.where(keep, n, s), new, states)
            out = jnp.where(keep, out, carried)
        states = new
        outs.append(out)
    return jnp.stack(outs, axis=1), states


def _reset_pattern():
    r = np.zeros((B, T), bool)
    r[0, [0, 3]] = True  # a reset at t=0 (a no-op) and one in the middle
    r[2, [1, 2, 6]] = True  # consecutive resets, and one at the last step
    r[3, 4] = True  # a reset on a masked step (see _mask)
    return r


def _mask():
    m = np.ones((B, T), bool)
    m[2, 0] = False
    m[3, 4:6] = False
    m[1, 5:] = False
    return m


CELLS = {
    "simple": (lambda: jr.SimpleRNNCell(H), {}),
    "lstm_scan": (lambda: jr.LSTMCell(H), {"fused": False}),
    "lstm": (lambda: jr.LSTMCell(H), {}),
    "gru": (lambda: jr.GRUCell(H), {}),
    "gru_v1": (lambda: jr.GRUCell(H, reset_after=False), {}),
    "stack": (lambda: jr.StackedRNNCells([jr.LSTMCell(H), jr.GRUCell(H)]), {}),
    "mingru": (lambda: MinGRUCell(H), {"solver": "sequential"}),
    "minlstm_assoc": (lambda: MinLSTMCell(H), {"solver": "associative"}),
    "mingru_assoc": (lambda: MinGRUCell(H), {"solver": "associative"}),
    "lru": (lambda: LRUCell(H), {"solver": "sequential"}),
    "lru_assoc": (lambda: LRUCell(H), {"solver": "associative"}),
}


def _random_like(tree, key):
    leaves = jax.tree.leaves(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(jax.tree.structure(tree),
                              [0.5 * jax.random.normal(k, a.shape) for k, a in zip(keys, leaves)])


def _close(a, b, rtol=2e-5, atol=2e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def _setup(name):
    make, kw = CELLS[name]
    cell = make()
    f = H if isinstance(cell, LRUCell) else F  # the LRU maps H features to H
    x = jax.random.normal(jax.random.key(0), (B, T, f))
    return cell, kw, x


@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("name", list(CELLS))
def test_reset_matches_python_loop(name, go_backwards):
    """Outputs, final states and gradients (params, inputs, initial state) with resets and a
    mask, against autodiff of the plain loop."""
    cell, kw, x = _setup(name)
    layer = jr.RNN(cell, return_sequences=True, return_state=True, go_backwards=go_backwards,
                   **kw)
    params = layer.init(jax.random.key(1), x.shape)
    init = _random_like(cell.get_initial_state(B), jax.random.key(2))
    reset, mask = _reset_pattern(), _mask()

    def got(p, x, s):
        y, *fin = layer(p, x, initial_state=list(s), mask=mask, reset=reset)
        return y, tuple(fin)

    def want(p, x, s):
        y, fin = _reset_loop(cell, p, x, reset, s, s, mask, go_backwards)
        return y, tuple(fin)

    def loss(fn):  # (loss, (outputs, final states)) and the gradients: one compile
        def f(p, x, s):
            y, fin = fn(p, x, s)
            value = jnp.sum(jnp.sin(y)) + sum(jnp.sum(a * (i + 1.0))
                                              for i, a in enumerate(jax.tree.leaves(fin)))
            return value, (y, fin)
        return jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)

    (v, out), grads = jax.jit(loss(got))(params, x, init)
    (v_ref, out_ref), grads_ref = loss(want)(params, x, init)  # eager: the plain loop
    _close(out, out_ref)
    _close((v, grads), (v_ref, grads_ref), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["lstm", "simple", "mingru", "lru"])
def test_learned_initial_state_trains(name):
    """``learn_initial_state=True``: the learned state starts every sequence and segment,
    broadcast over the batch, and gets the gradient autodiff of the loop gives it."""
    cell, kw, x = _setup(name)
    layer = jr.RNN(cell, return_sequences=True, learn_initial_state=True, **kw)
    params = layer.init(jax.random.key(1), x.shape)
    assert set(params) == {"cell", "initial_state"}
    for a in jax.tree.leaves(params["initial_state"]):
        assert a.shape[0] == 1 and not np.any(np.asarray(a))
    params["initial_state"] = _random_like(params["initial_state"], jax.random.key(3))
    reset = _reset_pattern()

    def got(p):
        return jnp.sum(jnp.sin(layer(p, x, reset=reset)))

    def want(p):
        s = jax.tree.map(lambda a: jnp.broadcast_to(a, (B,) + a.shape[1:]), p["initial_state"])
        return jnp.sum(jnp.sin(_reset_loop(cell, p["cell"], x, reset, s, s)[0]))

    # Both compiled (the reference loop op by op took most of this test's time).
    value_and_grads = jax.jit(jax.value_and_grad(got))(params)
    _close(value_and_grads, jax.jit(jax.value_and_grad(want))(params), rtol=1e-4, atol=1e-4)
    g = value_and_grads[1]["initial_state"]
    assert sum(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(g)) > 0
    # An explicit initial_state overrides the learned one, for starts and resets alike.
    zeros = list(cell.get_initial_state(B))
    y = layer(params, x, initial_state=zeros, reset=reset)
    plain = dataclasses.replace(layer, learn_initial_state=False)
    _close(y, plain(params["cell"], x, initial_state=zeros, reset=reset))


def test_learned_initial_state_config_save_load_bidirectional_sequential():
    layer = jr.GRU(H, return_sequences=True, learn_initial_state=True)
    assert jr.RNN.from_config(layer.get_config()) == layer
    assert "learn_initial_state" not in jr.GRU(H).get_config()
    model = jr.Sequential([jr.Bidirectional(layer), jr.LSTM(H, learn_initial_state=True)])
    x = jax.random.normal(jax.random.key(0), (B, T, F))
    params = model.init(jax.random.key(1), x.shape)
    assert set(params[0]["forward"]) == {"cell", "initial_state"}
    params = jax.tree.map(lambda a: a + 0.1, params)
    y = model(params, x, reset=_reset_pattern())
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.safetensors")
        jr.save(path, model, params)
        model2, params2 = jr.load(path)
    assert model2 == model
    _close(model2(params2, x, reset=_reset_pattern()), y, rtol=0, atol=0)


def test_bidirectional_resets_never_mix_segments():
    """Over packed rows, each segment's outputs equal that segment run alone, in both
    directions (the backward half runs each segment from its last step to its first)."""
    bi = jr.Bidirectional(jr.LSTM(H, return_sequences=True))
    x = jax.random.normal(jax.random.key(0), (1, T, F))
    params = bi.init(jax.random.key(1), x.shape)
    reset = np.zeros((1, T), bool)
    reset[0, 3] = True
    packed = bi(params, x, reset=reset)
    _close(packed[:, :3], bi(params, x[:, :3]))
    _close(packed[:, 3:], bi(params, x[:, 3:]))


@pytest.mark.parametrize("name", ["lstm", "simple", "mingru"])
def test_stateful_chunks_with_resets_equal_one_pass(name):
    """A stateful layer fed two chunks, with resets per chunk, equals one pass over the whole
    sequence; a reset at a chunk's first step starts it from the initial state."""
    cell, kw, x = _setup(name)
    reset = _reset_pattern()
    reset[1, 4] = True  # the first step of the second chunk, for sample 1
    full = jr.RNN(cell, return_sequences=True, **kw)
    params = full.init(jax.random.key(1), x.shape)
    want = full(params, x, reset=reset)
    layer = dataclasses.replace(full, stateful=True)
    state = layer.reset_state(B)
    y1, state = layer(params, x[:, :4], state=state, reset=reset[:, :4])
    y2, state = layer(params, x[:, 4:], state=state, reset=reset[:, 4:])
    _close(jnp.concatenate([y1, y2], axis=1), want)


def test_vmap_and_reset_at_zero_is_a_noop():
    layer = jr.LSTM(H, return_sequences=True)
    x = jax.random.normal(jax.random.key(0), (3, B, T, F))
    params = layer.init(jax.random.key(1), x.shape[1:])
    reset = jnp.asarray(np.stack([_reset_pattern()] * 3))
    got = jax.vmap(lambda x, r: layer(params, x, reset=r))(x, reset)
    for i in range(3):
        _close(got[i], layer(params, x[i], reset=reset[i]))
    at_zero = np.zeros((B, T), bool)
    at_zero[:, 0] = True
    _close(layer(params, x[0], reset=at_zero), layer(params, x[0]), rtol=0, atol=0)


def test_time_major_reset_stays_batch_major():
    layer = jr.GRU(H, return_sequences=True)
    x = jax.random.normal(jax.random.key(0), (B, T, F))
    params = layer.init(jax.random.key(1), x.shape)
    tm = dataclasses.replace(layer, time_major=True)
    reset = _reset_pattern()
    _close(tm(params, jnp.swapaxes(x, 0, 1), reset=reset),
           jnp.swapaxes(layer(params, x, reset=reset), 0, 1))


# ----------------------------------------------------------------------------- padding


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("name", ["simple", "lstm", "lstm_scan", "gru", "gru_v1", "mingru",
                                  "lru_assoc"])
def test_garbage_padding_never_reaches_gradients(name, bad):
    """NaN or inf in masked steps: outputs and gradients finite and equal to clean padding's,
    resets included, under jit."""
    cell, kw, x = _setup(name)
    layer = jr.RNN(cell, return_sequences=True, **kw)
    params = layer.init(jax.random.key(1), x.shape)
    mask, reset = _mask(), _reset_pattern()
    dirty = jnp.where(jnp.asarray(mask)[:, :, None], x, bad)

    @jax.jit
    def f(p, x):
        return jax.value_and_grad(lambda p, x: jnp.sum(layer(p, x, mask=mask, reset=reset) ** 2),
                                  argnums=(0, 1))(p, x)

    got, clean = f(params, dirty), f(params, jnp.where(jnp.asarray(mask)[:, :, None], x, 0.0))
    for leaf in jax.tree.leaves(got):
        assert np.all(np.isfinite(np.asarray(leaf)))
    _close(got, clean, rtol=1e-6, atol=1e-6)


def test_bidirectional_garbage_padding():
    bi = jr.Bidirectional(jr.GRU(H, return_sequences=True))
    x = jax.random.normal(jax.random.key(0), (B, T, F))
    params = bi.init(jax.random.key(1), x.shape)
    mask = _mask()
    dirty = jnp.where(jnp.asarray(mask)[:, :, None], x, np.nan)
    g = jax.jit(jax.grad(lambda p: jnp.sum(bi(p, dirty, mask=mask) ** 2)))(params)
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(g))


# ----------------------------------------------------------------------------- remat everywhere


@pytest.mark.parametrize("name", ["simple", "stack", "mingru"])
def test_remat_on_every_engine_changes_nothing(name):
    """``remat=k`` checkpoints segments on the generic scan too (and with resets)."""
    cell, kw, x = _setup(name)
    layer = jr.RNN(cell, return_sequences=True, remat=False, **kw)
    params = layer.init(jax.random.key(1), x.shape)
    reset = _reset_pattern()

    def run(lay):
        return jax.jit(jax.value_and_grad(
            lambda p: jnp.sum(jnp.sin(lay(p, x, mask=_mask(), reset=reset)))))(params)

    _close(run(dataclasses.replace(layer, remat=3)), run(layer), rtol=1e-5, atol=1e-5)


def test_generic_scan_remat_bounds_memory():
    layer = jr.SimpleRNN(16, remat=False)
    x = jnp.zeros((4, 2048, 8))
    params = layer.init(jax.random.key(0), x.shape)

    def temp_bytes(lay):
        f = jax.jit(jax.grad(lambda p: jnp.sum(lay(p, x))))
        return f.lower(params).compile().memory_analysis().temp_size_in_bytes

    full = temp_bytes(layer)
    assert temp_bytes(dataclasses.replace(layer, remat=True)) < full / 4
    # The threshold is a layer argument: 0 bytes makes remat=None checkpoint.
    auto = dataclasses.replace(layer, remat=None, remat_threshold=0)
    assert temp_bytes(auto) < full / 4
    assert jr.RNN.from_config(auto.get_config()) == auto


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_bad_reset_and_learned_params_errors(mode):
    layer = jr.LSTM(H, return_sequences=True)
    x = jax.random.normal(jax.random.key(0), (B, T, F))
    params = layer.init(jax.random.key(1), x.shape)

    def call(lay, p, **kw):
        if mode == "jit":
            return jax.jit(lambda p, x: lay(p, x, **kw))(p, x)
        return lay(p, x, **kw)

    with pytest.raises(ValueError, match=r"reset must be \[B, T\] = \(4, 7\)"):
        call(layer, params, reset=np.zeros((T, B), bool))
    with pytest.raises(TypeError, match="reset must be a .* bool array.*got dtype int32"):
        call(layer, params, reset=np.zeros((B, T), np.int32))
    learned = dataclasses.replace(layer, learn_initial_state=True)
    with pytest.raises(ValueError, match="learn_initial_state=True needs params"):
        call(learned, params)
    with pytest.raises(ValueError, match="learn_initial_state=False"):
        call(layer, learned.init(jax.random.key(1), x.shape))
    # Nothing is lost: a good call afterwards works.
    assert call(layer, params, reset=_reset_pattern()).shape == (B, T, H)


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="solver must be one of"):
        jr.LSTM(H, solver="fast")
    with pytest.raises(ValueError, match="remat_threshold must be"):
        jr.LSTM(H, remat_threshold=-1)
    with pytest.raises(TypeError, match="learn_initial_state must be True or False"):
        jr.LSTM(H, learn_initial_state=1)


def test_packed_documents_example_runs(capsys):
    """examples/packed_documents.py, tiny: three runs, finite losses, packed rows train on
    more real characters per step than padded ones."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "packed_documents.py"
    spec = importlib.util.spec_from_file_location("_jaxrnn_example_packed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main("--steps 3 --batch-size 4 --length 32 --units 8 --embed 4 "
                       "--max-docs 40".split())
    assert [r["run"] for r in rows] == ["padded", "packed + reset", "packed, no reset"]
    for r in rows:
        assert np.isfinite(r["val_loss"]) and np.isfinite(r["train_loss"])
    assert rows[1]["chars"] >= 0.9 * 3 * 4 * 32  # packed rows: (almost) every step is real
    assert "validation loss" in capsys.readouterr().out


def test_stateful_layers_start_from_the_learned_state():
    layer = jr.GRU(H, return_sequences=True, stateful=True, learn_initial_state=True)
    x = jax.random.normal(jax.random.key(0), (B, T, F))
    params = layer.init(jax.random.key(1), x.shape)
    params["initial_state"] = _random_like(params["initial_state"], jax.random.key(2))
    state = layer.reset_state(B, params=params)
    y, _ = layer(params, x, state=state)
    plain = dataclasses.replace(layer, stateful=False)
    _close(y, plain(params, x))  # a stateless call starts from the learned state too
    bi = jr.Bidirectional(layer)
    bi_params = bi.init(jax.random.key(3), x.shape)
    fs, bs = bi.reset_state(B, params=bi_params)
    assert fs[0].shape == bs[0].shape == (B, H)
    with pytest.raises(ValueError, match="learn_initial_state=False"):
        jr.GRU(H, stateful=True).reset_state(B, params=params)
