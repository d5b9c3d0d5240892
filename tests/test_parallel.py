"""Parallel-in-time cells (jaxrnn._parallel_cells) and their engine (jaxrnn._parallel).

The reference is the same cell stepped by `jaxrnn.RNN(..., parallel=False)` (Keras 3's
scan semantics) and a plain Python loop over the cell; the paper equations are checked
against direct NumPy transcriptions. The comparisons of the two modes with their gradients
are compiled (op by op they took 1.5-3x as long, even at these tiny shapes); a few
forward-only checks and the property test run with jit disabled, where compiling each
combination would cost more than running it.
"""

import dataclasses
import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxrnn as jr
from jaxrnn import LRUCell, LRUState, MinGRUCell, MinLSTMCell, _parallel
from jaxrnn._parallel_cells import g, log_g, normalized_gates
from tests._reference import python_loop
from tests._sampling import sampled

B, T, F, H = 5, 6, 4, 3
RTOL, ATOL = 2e-5, 2e-5

CELLS = {
    "mingru": lambda: MinGRUCell(H),
    "mingru_lin": lambda: MinGRUCell(H, log_space=False),
    "minlstm": lambda: MinLSTMCell(H),
    "minlstm_lin": lambda: MinLSTMCell(H, log_space=False, use_bias=False),
    "lru": lambda: LRUCell(F, state_dim=5, r_min=0.5, r_max=0.99),
}


def _mask():
    """One row per mask kind: none masked, right pad, left pad, holes, all masked."""
    return jnp.array([
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0, 0],
        [0, 0, 0, 1, 1, 1],
        [1, 0, 1, 1, 0, 1],
        [0, 0, 0, 0, 0, 0],
    ], dtype=bool)


def _data(cell, key=0, batch=B):
    k = jax.random.split(jax.random.key(key), 4)
    x = jax.random.normal(k[0], (batch, T, F))
    like = jax.tree.leaves(cell.get_initial_state(batch))
    init = [jax.random.normal(kk, s.shape) for kk, s in zip(jax.random.split(k[1], len(like)),
                                                            like)]
    return x, init


def _close(a, b, rtol=RTOL, atol=ATOL):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(la, lb):
        assert u.shape == v.shape and u.dtype == v.dtype, (u.shape, v.shape, u.dtype, v.dtype)
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol)


def _both(layer, params, x, initial_state=None, **call):
    """Runs `layer` in parallel and sequential mode: ``(outputs, gradients)`` for each, the
    gradients of a scalar loss of everything it returns w.r.t. params, inputs and the initial
    state."""
    results = []
    for parallel in (True, False):
        lay = dataclasses.replace(layer, parallel=parallel)

        def loss(p, x, init, lay=lay):
            out = lay(p, x, initial_state=init, **call)
            leaves = jax.tree.leaves(out)
            return sum(jnp.sum(jnp.tanh(o) * (i + 1)) for i, o in enumerate(leaves)), out

        (_, out), grads = jax.value_and_grad(loss, (0, 1, 2), has_aux=True)(params, x,
                                                                             initial_state)
        results.append((out, grads))
    return results


def _both_compiled(layer, params, x, initial_state, mask=None, rng=None, **static):
    """`_both` as one compiled program (op by op, the comparisons took 1.5-3x as long).
    `mask` and `rng` go in as arguments, not as constants XLA could fold; `static` keyword
    arguments (``training=True``) as given."""
    return jax.jit(lambda p, x, s, m, r: _both(layer, p, x, initial_state=s, mask=m, rng=r,
                                               **static))(params, x, initial_state, mask, rng)


@pytest.fixture(params=["sequential", "associative"])
def solver(request):
    """Each of the engine's solvers, the layer's ``solver=`` (CPU's default: sequential)."""
    return request.param


def _check_equal(cell, *, masked=True, **layer_kw):
    layer = jr.RNN(cell, return_sequences=layer_kw.pop("return_sequences", True),
                   return_state=True, **layer_kw)
    x, init = _data(cell)
    if layer.time_major:
        x = jnp.swapaxes(x, 0, 1)
    params = layer.init(jax.random.key(1), x.shape)
    (out_p, grads_p), (out_s, grads_s) = _both_compiled(layer, params, x, init,
                                                        mask=_mask() if masked else None)
    _close(out_p, out_s)
    _close(grads_p, grads_s, rtol=1e-4, atol=1e-4)
    for leaf in jax.tree.leaves(grads_p):
        assert np.all(np.isfinite(np.asarray(leaf)))
    return out_p


# Each case has a nonzero initial state and every mask kind at once (see _mask).
FLAGS = {
    "mask": dict(),
    "mask-backwards-zero_output": dict(go_backwards=True, zero_output_for_mask=True),
    "nomask-backwards": dict(masked=False, go_backwards=True),
}


# These compile both modes with their gradients and cost seconds each: the default run takes
# every cell once and every flag set at least once; `pytest -m slow` the rest.
_EQUAL_ROWS = [(n, f) for n in CELLS for f in FLAGS]
_EQUAL_SAMPLE = [(n, list(FLAGS)[i % len(FLAGS)]) for i, n in enumerate(CELLS)]


@pytest.mark.parametrize("name, flags", sampled(_EQUAL_ROWS, [f"{n}-{f}" for n, f in _EQUAL_ROWS],
                                                 _EQUAL_SAMPLE))
def test_parallel_equals_sequential(name, flags):
    _check_equal(CELLS[name](), **FLAGS[flags])


_CHUNK_ROWS = [(n, c, r) for c, r in [(3, True), (4, False)] for n in ["mingru", "minlstm", "lru"]]


@pytest.mark.parametrize("name, chunk, return_sequences",  # T=6
                         sampled(_CHUNK_ROWS, [f"{c}-{r}-{n}" for n, c, r in _CHUNK_ROWS],
                                 [("mingru", 3, True), ("lru", 4, False)]))
def test_chunked_sequences_equal_sequential(name, chunk, return_sequences):
    """Long sequences run in rematerialised chunks (``remat=k``; on CPU by default 512):
    chunk boundaries and a shorter tail change nothing, gradients included."""
    _check_equal(CELLS[name](), go_backwards=True, return_sequences=return_sequences,
                 solver="sequential", remat=chunk)


def test_default_chunking_on_cpu_matches_one_piece():
    """The CPU default (sequential solver, chunks of CPU_CHUNK steps past that length)
    equals one piece (``remat=False``), with a shorter tail chunk."""
    cell = MinGRUCell(H)
    t = _parallel.CPU_CHUNK + 37
    x = jax.random.normal(jax.random.key(30), (2, t, F))
    layer = jr.RNN(cell, return_sequences=True, solver="sequential")
    params = layer.init(jax.random.key(31), x.shape)

    def run(lay):
        return jax.jit(jax.value_and_grad(lambda p: jnp.sum(jnp.sin(lay(p, x)))))(params)

    _close(run(layer), run(dataclasses.replace(layer, remat=False)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["mingru", "minlstm_lin", "lru"])
def test_parallel_equals_sequential_associative(name):
    _check_equal(CELLS[name](), go_backwards=True, solver="associative")


@pytest.mark.parametrize("name, time_major", [("mingru", True), ("lru", False)])
def test_last_output_and_time_major(name, time_major):
    out = _check_equal(CELLS[name](), return_sequences=False, time_major=time_major,
                       go_backwards=time_major)
    assert out[0].shape == (B, CELLS[name]().units)


def test_jit_matches_eager_and_python_loop():
    """Under jit (the default), against tests/_reference.python_loop, with a mask."""
    for name in ("mingru", "lru"):
        cell = CELLS[name]()
        x, init = _data(cell)
        layer = jr.RNN(cell, return_sequences=True, return_state=True)
        params = layer.init(jax.random.key(2), x.shape)
        init = jax.tree.unflatten(jax.tree.structure(cell.get_initial_state(B)), init)
        y, *final = jax.jit(lambda p, x, s, layer=layer: layer(p, x, initial_state=list(s),
                                                               mask=_mask()))(params, x, init)
        seq, _, states = python_loop(cell, params, x, _mask(), initial_state=init)
        _close(y, seq)
        _close(tuple(final), tuple(states))


def test_nonzero_initial_state_log_space_any_sign():
    """PERF-NOTES: parallel minGRU implementations have shipped with parallel != sequential
    for a nonzero h0. Log space must keep h0 out of the logs: negative h0 included."""
    for cell in (MinGRUCell(H), MinLSTMCell(H)):
        x, _ = _data(cell)
        layer = jr.RNN(cell, return_sequences=True)
        params = layer.init(jax.random.key(3), x.shape)
        h0 = -3.0 * jnp.ones((B, H))
        for solver in _parallel.SOLVERS:
            y_p = dataclasses.replace(layer, solver=solver)(params, x, initial_state=[h0])
            y_s = dataclasses.replace(layer, parallel=False)(params, x, initial_state=[h0])
            _close(y_p, y_s)
            assert float(y_p[0, 0, 0]) < 0  # the negative state is carried, not lost


# ----------------------------------------------------------------------------- layer features


def test_stacks_of_parallel_cells(solver):
    cells = [MinGRUCell(F), MinLSTMCell(F), LRUCell(F, state_dim=2)]
    layer = jr.RNN(cells, return_sequences=True, return_state=True, go_backwards=True,
                   solver=solver)
    assert _parallel.supports(layer.cell)
    x, _ = _data(MinGRUCell(F))
    params = layer.init(jax.random.key(4), x.shape)
    init = jax.tree.map(lambda s: jax.random.normal(jax.random.key(5), s.shape),
                        layer.cell.get_initial_state(B))
    (out_p, g_p), (out_s, g_s) = _both_compiled(layer, params, x, list(init), mask=_mask())
    assert len(out_p) == 1 + len(cells)
    _close(out_p, out_s)
    _close(g_p, g_s, rtol=1e-4, atol=1e-4)


def test_mixed_stack_runs_sequentially_and_parallel_true_raises():
    mixed = [MinGRUCell(H), jr.LSTMCell(H)]
    assert not _parallel.supports(jr.StackedRNNCells(mixed))
    layer = jr.RNN(mixed, return_sequences=True)
    x, _ = _data(MinGRUCell(H))
    params = layer.init(jax.random.key(6), x.shape)
    y = layer(params, x, mask=_mask())
    _close(y, jr.RNN(mixed, return_sequences=True, parallel=False)(params, x, mask=_mask()))
    with pytest.raises(ValueError, match="parallel=True needs a cell with a linear recurrence"):
        jr.RNN(mixed, parallel=True)
    with pytest.raises(ValueError, match="parallel=True"):
        jr.RNN(jr.LSTMCell(4), parallel=True)


def test_stateful_threads_state():
    for name in ("mingru", "lru"):
        cell = CELLS[name]()
        x, _ = _data(cell, batch=B)
        outs = []
        for parallel in (True, False):
            layer = jr.RNN(cell, return_sequences=True, stateful=True, parallel=parallel)
            params = layer.init(jax.random.key(7), x.shape)
            state = layer.reset_state(B)
            with jax.disable_jit():
                y1, state = layer(params, x[:, :3], state=state, mask=_mask()[:, :3])
                y2, state = layer(params, x[:, 3:], state=state, mask=_mask()[:, 3:])
            outs.append((y1, y2, state))
        _close(outs[0], outs[1])


def test_bidirectional():
    cell = MinGRUCell(H)
    x, _ = _data(cell)
    outs = []
    for parallel in (True, False):
        bi = jr.Bidirectional(jr.RNN(cell, return_sequences=True, return_state=True,
                                     parallel=parallel))
        params = bi.init(jax.random.key(8), x.shape)
        outs.append(jax.jit(jax.value_and_grad(
            lambda p, bi=bi: jnp.sum(jnp.tanh(bi(p, x, mask=_mask())[0]))))(params))
        outs.append(jax.jit(lambda p, bi=bi: bi(p, x, mask=_mask()))(params))
    _close(outs[0], outs[2])
    _close(outs[1], outs[3])
    assert outs[1][0].shape == (B, T, 2 * H)


@pytest.mark.parametrize("name", ["minlstm", "lru"])
def test_dropout_same_masks_in_both_modes(name):
    cell = dataclasses.replace(CELLS[name](), dropout=0.5)
    x, init = _data(cell)
    layer = jr.RNN(cell, return_sequences=True, return_state=True)
    params = layer.init(jax.random.key(9), x.shape)
    rng = jax.random.key(10)
    (out_p, g_p), (out_s, g_s) = _both_compiled(layer, params, x, init, mask=_mask(), rng=rng,
                                                training=True)
    eval_out = layer(params, x, initial_state=init, mask=_mask())
    _close(out_p, out_s)
    _close(g_p, g_s, rtol=1e-4, atol=1e-4)
    assert not np.allclose(np.asarray(out_p[0]), np.asarray(eval_out[0]))
    with pytest.raises(ValueError, match="needs a random key"):
        layer(params, x, training=True)


def test_all_masked_gradients_are_finite():
    """A fully masked batch: log-space scans must not produce NaN gradients (0 * inf)."""
    cell = MinGRUCell(H)
    x, init = _data(cell)
    layer = jr.RNN(cell, return_sequences=True, return_state=True, solver="associative")
    params = layer.init(jax.random.key(11), x.shape)
    mask = jnp.zeros((B, T), bool)
    (out_p, g_p), (out_s, g_s) = _both_compiled(layer, params, x, init, mask=mask)
    _close(out_p, out_s)
    _close(g_p, g_s)
    _close(out_p[1], init[0])  # the state is carried through


# ----------------------------------------------------------------------------- the papers' math


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_g(x):
    return np.where(x >= 0, x + 0.5, _np_sigmoid(x))


def test_mingru_one_step_matches_paper():
    """Feng et al. (2024), minGRU: z = sigma(Linear(x)), h~ = g(Linear(x)),
    h = (1 - z) h_prev + z h~ (log-space version) / h~ = Linear(x) (plain version)."""
    x = np.random.default_rng(0).normal(size=(2, F)).astype(np.float32)
    h = np.random.default_rng(1).normal(size=(2, H)).astype(np.float32)
    for log_space in (True, False):
        cell = MinGRUCell(H, log_space=log_space, bias_initializer="random_uniform")
        p = {k: np.asarray(v) for k, v in cell.init(jax.random.key(0), F).items()}
        z = _np_sigmoid(x @ p["kernel"][:, :H] + p["bias"][:H])
        cand = x @ p["kernel"][:, H:] + p["bias"][H:]
        cand = _np_g(cand) if log_space else cand
        want = (1 - z) * h + z * cand
        out, (state,) = cell(p, jnp.asarray(x), (jnp.asarray(h),))
        np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(state), want, rtol=1e-5, atol=1e-6)


def test_minlstm_one_step_matches_paper():
    """Feng et al. (2024), minLSTM: f' = f / (f + i), i' = i / (f + i), h = f' h + i' h~."""
    x = np.random.default_rng(2).normal(size=(2, F)).astype(np.float32)
    h = np.random.default_rng(3).normal(size=(2, H)).astype(np.float32)
    for log_space in (True, False):
        cell = MinLSTMCell(H, log_space=log_space, bias_initializer="random_uniform")
        p = {k: np.asarray(v) for k, v in cell.init(jax.random.key(1), F).items()}
        k = x @ p["kernel"] + p["bias"]
        f, i, cand = _np_sigmoid(k[:, :H]), _np_sigmoid(k[:, H:2 * H]), k[:, 2 * H:]
        cand = _np_g(cand) if log_space else cand
        want = f / (f + i) * h + i / (f + i) * cand
        out, _ = cell(p, jnp.asarray(x), (jnp.asarray(h),))
        np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-6)


def test_normalized_gates_exact_everywhere():
    """minLSTM's f / (f + i) and i / (f + i) against float64 log-space math, from ordinary
    pre-activations to ones where both sigmoids underflow in float32; gradients against the
    float64 derivative of the textbook formula."""
    grid = np.array([-300.0, -120.0, -95.0, -88.0, -40.0, -17.0, -3.0, -0.5, 0.0, 0.7, 4.0,
                     20.0, 90.0, 300.0])
    kf, ki = (a.ravel() for a in np.meshgrid(grid, grid))

    def ref(kf, ki):  # log sigmoid(k) = -logaddexp(0, -k), float64
        lf, li = -np.logaddexp(0, -kf), -np.logaddexp(0, -ki)
        return np.exp(lf - np.logaddexp(lf, li)), np.exp(li - np.logaddexp(lf, li))

    f, i = normalized_gates(jnp.asarray(kf, jnp.float32), jnp.asarray(ki, jnp.float32))
    want_f, want_i = ref(kf, ki)
    np.testing.assert_allclose(np.asarray(f), want_f, rtol=2e-6, atol=1e-37)
    np.testing.assert_allclose(np.asarray(i), want_i, rtol=2e-6, atol=1e-37)
    # d f'/dk_f = f' i' (1 - f), d f'/dk_i = -f' i' (1 - i); i' mirrors f'.
    k = np.random.default_rng(5).normal(size=(2, 50)) * 6
    (jf, ji) = jax.jacfwd(lambda a, b: normalized_gates(a, b)[0], (0, 1))(
        jnp.asarray(k[0], jnp.float32), jnp.asarray(k[1], jnp.float32))
    wf, wi = ref(k[0], k[1])
    np.testing.assert_allclose(np.diag(np.asarray(jf)), wf * wi * _np_sigmoid(-k[0]),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.diag(np.asarray(ji)), -wf * wi * _np_sigmoid(-k[1]),
                               rtol=1e-5, atol=1e-7)
    gi = jax.grad(lambda a, b: jnp.sum(normalized_gates(a, b)[1]), (0, 1))(
        jnp.asarray(k[0], jnp.float32), jnp.asarray(k[1], jnp.float32))
    np.testing.assert_allclose(np.asarray(gi[0]), -wf * wi * _np_sigmoid(-k[0]), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(np.asarray(gi[1]), wf * wi * _np_sigmoid(-k[1]), rtol=1e-5,
                               atol=1e-7)
    # Finite gradients where one gate underflows and the other does not (float16 from |k| ~ 17
    # on), and the limits at +-inf.
    grad = jax.jit(jax.grad(lambda a, b: jnp.sum(normalized_gates(a, b)[0] * 3.0
                                                 + normalized_gates(a, b)[1]), (0, 1)))
    for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
        grads = grad(jnp.asarray(kf, dtype), jnp.asarray(ki, dtype))
        assert all(bool(jnp.all(jnp.isfinite(g_))) for g_ in grads), dtype
    inf = jnp.inf
    f, i = normalized_gates(jnp.array([-inf, inf, 0.0, -inf]), jnp.array([0.0, -inf, inf, -inf]))
    # sigmoid(0) = 1/2 against sigmoid(inf) = 1 gives 1/3 and 2/3.
    np.testing.assert_allclose(np.asarray(f), [0.0, 1.0, 1 / 3, 0.5], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(i), [1.0, 0.0, 2 / 3, 0.5], rtol=1e-6)


def test_lru_one_step_matches_paper():
    """Orvieto et al. (2023): lambda = exp(-exp(nu) + i exp(theta)), h = lambda h +
    gamma B x, y = Re(C h) + D x, with B [N, H] and C [H, N] as in the paper's code."""
    cell = LRUCell(F, state_dim=5)
    p = {k: np.asarray(v, np.float64) for k, v in cell.init(jax.random.key(2), F).items()}
    rng = np.random.default_rng(4)
    x = rng.normal(size=(F,))
    h = rng.normal(size=(5,)) + 1j * rng.normal(size=(5,))
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    b_norm = (p["B_re"].T + 1j * p["B_im"].T) * np.exp(p["gamma_log"])[:, None]  # [N, H]
    c = p["C_re"].T + 1j * p["C_im"].T  # [H, N]
    h_new = lam * h + b_norm @ x
    y = (c @ h_new).real + p["D"] * x
    state = LRUState(jnp.zeros((1, F)), jnp.asarray(h.real[None], jnp.float32),
                     jnp.asarray(h.imag[None], jnp.float32))
    out, new = cell({k: jnp.asarray(v, jnp.float32) for k, v in p.items()},
                    jnp.asarray(x[None], jnp.float32), state)
    np.testing.assert_allclose(np.asarray(out[0]), y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(new.h_re[0]), h_new.real, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(new.h_im[0]), h_new.imag, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(new.y), np.asarray(out))


def test_lru_ring_initialisation():
    cell = LRUCell(4, state_dim=2000, r_min=0.4, r_max=0.9, max_phase=0.5)
    p = cell.init(jax.random.key(3), 4)
    mag = np.exp(-np.exp(np.asarray(p["nu_log"])))
    phase = np.exp(np.asarray(p["theta_log"]))
    assert mag.min() >= 0.4 - 1e-6 and mag.max() <= 0.9 + 1e-6
    assert phase.min() >= 0 and phase.max() <= 0.5
    np.testing.assert_allclose(np.exp(np.asarray(p["gamma_log"])), np.sqrt(1 - mag ** 2),
                               rtol=1e-4)
    # Uniform on the ring by area: |lambda|^2 is uniform on [r_min^2, r_max^2].
    assert abs(np.mean(mag ** 2) - (0.4 ** 2 + 0.9 ** 2) / 2) < 0.02
    assert np.std(np.asarray(p["B_re"])) == pytest.approx(1 / math.sqrt(8), rel=0.1)


def test_g_and_log_g():
    x = jnp.linspace(-30.0, 30.0, 121)
    np.testing.assert_allclose(np.asarray(g(x)), _np_g(np.asarray(x)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(log_g(x)), np.log(_np_g(np.asarray(x))), rtol=1e-5,
                               atol=1e-6)
    assert np.all(np.asarray(g(x)) > 0)
    # The derivative of log g is g'/g everywhere, at 0 too (x holds 0 exactly): the log-space
    # parallel mode and the stepped cell must agree where a pre-activation is exactly 0.
    x = jnp.concatenate([x, jnp.array([-0.0, 1e-7, -1e-7])])
    np.testing.assert_allclose(np.asarray(jax.vmap(jax.grad(log_g))(x)),
                               np.asarray(jax.vmap(jax.grad(g))(x) / g(x)), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("solver", _parallel.SOLVERS)
@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_zero_preactivations_same_gradients_in_both_modes(name, solver):
    """A sample whose inputs are all zero has pre-activations of exactly 0 (zero bias), where
    g changes branch. On a GPU (where the associative solver, in log space, is the default),
    a dropout mask that dropped every input of one sample found the parallel mode's gradient
    wrong there: log g had derivative 0 at 0, not 2."""
    cell = CELLS[name]()
    x, init = _data(cell)
    x = x.at[1].set(0.0)
    layer = jr.RNN(cell, return_sequences=True, return_state=True, solver=solver)
    params = layer.init(jax.random.key(3), x.shape)
    (out_p, g_p), (out_s, g_s) = _both_compiled(layer, params, x, init)
    _close(out_p, out_s)
    _close(g_p, g_s)


@pytest.mark.parametrize("solver", _parallel.SOLVERS)
def test_linear_scan_both_solvers_and_gradients(solver):
    """`linear_scan`'s custom VJP against autodiff of a plain loop, real and complex."""
    k = jax.random.split(jax.random.key(12), 4)
    a = jax.random.uniform(k[0], (7, 2, 3), minval=0.1, maxval=0.95)
    b = jax.random.normal(k[1], (7, 2, 3))
    h0 = jax.random.normal(k[2], (2, 3))

    def loop(a, b, h0):
        hs, h = [], h0
        for t in range(a.shape[0]):
            h = a[t] * h + b[t]
            hs.append(h)
        return jnp.stack(hs)

    def loss(fn):
        return lambda a, b, h0: jnp.sum(jnp.abs(fn(a, b, h0)) ** 2 * jnp.arange(1.0, 8.0)[:, None,
                                                                                          None])

    want = jax.grad(loss(loop), (0, 1, 2))(a, b, h0)
    want_log = jax.grad(loss(lambda la, lb, h: loop(jnp.exp(la), jnp.exp(lb), h)),
                        (0, 1, 2))(jnp.log(a), jnp.log(jnp.abs(b)), h0)
    ca = a * jnp.exp(1j * b)
    cb = jax.lax.complex(b, jnp.cos(b))
    want_c = jax.grad(loss(loop), (0, 1, 2))(ca, cb, h0.astype(jnp.complex64))
    scan = functools.partial(_parallel.linear_scan, log_space=False, solver=solver)
    log_scan = functools.partial(_parallel.linear_scan, log_space=True, solver=solver)
    grad = jax.jit(jax.grad(loss(scan), (0, 1, 2)))  # compiled: op by op took twice as long
    _close(grad(a, b, h0), want)
    _close(jax.jit(jax.grad(loss(log_scan), (0, 1, 2)))(jnp.log(a), jnp.log(jnp.abs(b)), h0),
           want_log, rtol=1e-4)
    _close(grad(ca, cb, h0.astype(jnp.complex64)), want_c)


@pytest.mark.parametrize("solver", _parallel.SOLVERS)
@pytest.mark.parametrize("a_shape", [(1, 1, 3), (1, 2, 3)])
@pytest.mark.parametrize("t", [1, 5])
def test_linear_scan_step_invariant_a(solver, a_shape, t):
    """An `a` shared by every step (the LRU's lambda) is never broadcast over T; it gives
    what the broadcast array gives, and its gradient is the broadcast one summed."""
    k = jax.random.split(jax.random.key(13), 4)
    a = jax.lax.complex(jax.random.uniform(k[0], a_shape, minval=0.2, maxval=0.9),
                        jax.random.uniform(k[1], a_shape, minval=-0.3, maxval=0.3))
    b = jax.lax.complex(*jax.random.normal(k[2], (2, t, 2, 3)))
    h0 = jax.lax.complex(*jax.random.normal(k[3], (2, 2, 3)))

    def loss(a, b, h0):
        h = _parallel.linear_scan(a, b, h0, False, solver)
        return jnp.sum(jnp.abs(h) ** 2 * jnp.arange(1.0, t + 1.0)[:, None, None])

    full = jnp.broadcast_to(a, b.shape)
    want = jax.grad(loss, (0, 1, 2))(full, b, h0)
    got = jax.grad(loss, (0, 1, 2))(a, b, h0)
    _close(_parallel.linear_scan(a, b, h0, False, solver),
           _parallel.linear_scan(full, b, h0, False, solver))
    assert got[0].shape == a_shape
    axes = tuple(i for i, n in enumerate(a_shape) if n == 1 and b.shape[i] != 1)
    _close(got[0], jnp.sum(want[0], axis=axes, keepdims=True))
    _close(got[1:], want[1:])



@pytest.mark.parametrize("a_shape", [(1, 1, 3), (T, B, 3)])
def test_solve_pairs_equals_the_complex_solve(a_shape):
    """The (real, imaginary) form that a symbolic T selects for ONNX export solves the same
    complex recurrence, masks and resets included, with the same gradient."""
    k = jax.random.split(jax.random.key(14), 6)
    a = jax.lax.complex(jax.random.uniform(k[0], a_shape, minval=0.2, maxval=0.9),
                        jax.random.uniform(k[1], a_shape, minval=-0.3, maxval=0.3))
    b, h0, h_reset = (jax.lax.complex(*jax.random.normal(kk, (2, *shape)))
                      for kk, shape in zip(k[2:], [(T, B, 3), (B, 3), (B, 3)]))
    mask = _mask().T  # [T, B]
    reset = jnp.zeros((T, B), bool).at[0, 1].set(True).at[2, 0].set(True).at[4, 3].set(True)

    def split(z):
        return jnp.real(z), jnp.imag(z)

    def solve(a, b, h0, h_reset, pairs):
        if pairs:
            rec = _parallel.LinearRecurrence(split(a), split(b), split(h0), None, None, None,
                                             pairs=True)
            return jax.lax.complex(*_parallel.solve(rec, mask, reset, split(h_reset), "sequential"))
        rec = _parallel.LinearRecurrence(a, b, h0, None, None, None)
        return _parallel.solve(rec, mask, reset, h_reset, "sequential")

    def loss(*args):
        return jnp.sum(jnp.abs(solve(*args)) ** 2 * jnp.arange(1.0, T + 1.0)[:, None, None])

    args = (a, b, h0, h_reset)
    _close(solve(*args, True), solve(*args, False))
    grad = jax.jit(jax.grad(loss, (0, 1, 2, 3)), static_argnums=4)  # op by op: 2x as long
    _close(grad(*args, True), grad(*args, False))


# ----------------------------------------------------------------------------- config, errors


@pytest.mark.parametrize("name", list(CELLS))
def test_config_round_trip(name):
    cell = CELLS[name]()
    config = json.loads(json.dumps(jr.serialize(cell)))
    assert jr.deserialize(config) == cell
    layer = jr.RNN([cell, MinGRUCell(2)], return_sequences=True, parallel=True)
    again = jr.RNN.from_config(json.loads(json.dumps(layer.get_config())))
    assert again == layer


def test_params_layout():
    p = MinGRUCell(H).init(jax.random.key(0), F)
    assert jax.tree.map(jnp.shape, p) == {"kernel": (F, 2 * H), "bias": (2 * H,)}
    p = MinLSTMCell(H, use_bias=False).init(jax.random.key(0), F)
    assert jax.tree.map(jnp.shape, p) == {"kernel": (F, 3 * H)}
    p = LRUCell(F, state_dim=7).init(jax.random.key(0), F)
    assert jax.tree.map(jnp.shape, p) == {
        "nu_log": (7,), "theta_log": (7,), "gamma_log": (7,), "B_re": (F, 7), "B_im": (F, 7),
        "C_re": (7, F), "C_im": (7, F), "D": (F,)}
    assert LRUCell(F, state_dim=7).state_size == (F, 7, 7)


@pytest.mark.parametrize("make, match", [
    (lambda: MinGRUCell(0), "units must be a positive int"),
    (lambda: MinGRUCell(4, dropout=1.0), "dropout must be a float in"),
    (lambda: LRUCell(4, r_min=0.9, r_max=0.5), "0 <= r_min < r_max <= 1"),
    (lambda: LRUCell(4, r_max=1.5), "0 <= r_min < r_max <= 1"),
    (lambda: LRUCell(4, max_phase=0.0), "max_phase must be > 0"),
    (lambda: LRUCell(4, state_dim=-2), "state_dim must be a positive int"),
])
def test_hyperparameter_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_flag_type_errors():
    """A flag that is not a bool is a TypeError, as for every jaxrnn cell and layer."""
    with pytest.raises(TypeError, match="MinLSTMCell: log_space must be True or False"):
        MinLSTMCell(4, log_space="yes")
    with pytest.raises(TypeError, match="MinGRUCell: use_bias must be True or False"):
        MinGRUCell(4, use_bias=1)


def test_param_errors():
    with pytest.raises(ValueError, match="input_dim must equal units"):
        LRUCell(4).init(jax.random.key(0), 3)
    p = MinGRUCell(H).init(jax.random.key(0), F)
    with pytest.raises(ValueError, match="must have shape"):
        jr.RNN(MinGRUCell(H + 1))(p, jnp.ones((2, 3, F)))
    with pytest.raises(ValueError, match="missing"):
        LRUCell(4)({"D": jnp.ones(4)}, jnp.ones((2, 4)), LRUCell(4).get_initial_state(2))


# ----------------------------------------------------------------------------- property test


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_masks_and_lengths(data):
    """Random lengths (right or left padded) or random holes; T is fixed so that the eager
    kernels are reused between examples."""
    kind = data.draw(st.sampled_from(["right", "left", "holes"]), label="kind")
    if kind == "holes":
        bits = data.draw(st.lists(st.booleans(), min_size=2 * T, max_size=2 * T), label="mask")
        mask = np.array(bits).reshape(2, T)
    else:
        lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=2, max_size=2),
                                     label="lengths"))
        mask = np.arange(T)[None, :] < lengths[:, None]
        mask = mask[:, ::-1] if kind == "left" else mask
    go_backwards = data.draw(st.booleans(), label="go_backwards")
    zero_output = data.draw(st.booleans(), label="zero_output_for_mask")
    name = data.draw(st.sampled_from(["mingru", "minlstm", "lru"]), label="cell")
    cell = CELLS[name]()
    x = jax.random.normal(jax.random.key(int(mask.sum())), (2, T, F))
    layer = jr.RNN(cell, return_sequences=True, return_state=True, go_backwards=go_backwards,
                   zero_output_for_mask=zero_output)
    params = layer.init(jax.random.key(0), x.shape)
    init = [0.5 * jnp.ones_like(s) for s in cell.get_initial_state(2)]
    with jax.disable_jit():
        got = layer(params, x, initial_state=init, mask=jnp.asarray(mask))
        want = dataclasses.replace(layer, parallel=False)(params, x, initial_state=init,
                                                          mask=jnp.asarray(mask))
    _close(got, want)
