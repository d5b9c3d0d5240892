"""Keras 3 as the oracle: jaxrnn's layers against keras.layers.RNN, LSTM, GRU, SimpleRNN and
Bidirectional, with the Keras weights copied into jaxrnn params by name.

The oracle is always Keras's scan path (``unroll=False``). Keras 3's ``unroll=True`` path has
known bugs (it ignores ``zero_output_for_mask`` and starts the carried-over output of masked
steps at zeros instead of at the initial state); jaxrnn promises the scan-path result for every
``unroll``, so every jaxrnn ``unroll`` (False, True, 3) is compared against Keras(unroll=False).

Keeping it fast: tiny shapes; each Keras layer is built once per configuration (cached across
the ``unroll`` variants, which are adjacent test items); the four mask cases of a configuration
go through Keras as ONE call on a batch that stacks the four cases (samples are independent, and
an all-True mask is exactly the no-mask computation in Keras's scan path); on the jaxrnn side the
mask cases stay separate calls (mask=None really is None), traced together into one jitted
function per layer with the layer closed over, so each configuration compiles once.

The default run takes a covering sample of each flag matrix (tests/_sampling.py: every value
of every flag meets every value of every other flag in at least one item, e.g. 12 of the 192
items of `test_matrix`); the other items carry the ``slow`` marker and run with ``pytest -m
slow`` (as .ci/run does), so the default and the slow run together cover every combination.
"""

import functools
import itertools
import json
import os
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from tests._sampling import sampled

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":  # pragma: no cover - depends on the environment
    pytest.skip("the Keras oracle tests expect KERAS_BACKEND=jax", allow_module_level=True)

B, T, F, UNITS = 4, 5, 3, 4
ATOL = RTOL = 1e-5
UNROLLS = (False, True, 3)
KINDS = ("simple", "lstm", "gru", "gru_v1")  # gru: reset_after=True; gru_v1: reset_after=False
MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _lenient():
    """Keras's own JAX code relies on rank promotion (e.g. [B, H] * [H]), which conftest turns
    into an error for the library's sake; Keras calls run inside this context, jaxrnn's never."""
    return jax.numpy_rank_promotion("allow")


# --------------------------------------------------------------------------------------------
# Fixed inputs and masks.


def _rng(*parts):
    """A numpy Generator seeded from ``parts`` (stable across processes, unlike hash())."""
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def _x(*parts):
    return _rng("x", *parts).normal(size=(B, T, F)).astype(np.float32)


def _right_padding(lengths):
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


def _left_padding(lengths):
    return np.arange(T)[None, :] >= T - np.asarray(lengths)[:, None]


def _holes():
    m = _rng("holes").random((B, T)) < 0.6
    m[0, 0], m[0, -1] = True, False  # sample 0: its LAST step is masked
    m[1, :] = False  # sample 1: every step masked
    m[2, :2], m[2, 3] = False, True  # sample 2: its FIRST steps are masked
    m[3, 0], m[3, 2] = True, False  # sample 3: a hole in the middle
    return m


# name -> (mask or None, whether the case runs from a nonzero initial_state)
MASK_CASES = {
    "none": (None, False),
    "right": (_right_padding([5, 3, 1, 4]), False),
    "left": (_left_padding([5, 2, 1, 4]), True),
    "holes": (_holes(), True),
}


# --------------------------------------------------------------------------------------------
# Cells, weights and states on both sides.


def _keras_cell(kind, units, **kw):
    if kind == "simple":
        return keras.layers.SimpleRNNCell(units, **kw)
    if kind == "lstm":
        return keras.layers.LSTMCell(units, **kw)
    if kind == "gru":
        return keras.layers.GRUCell(units, reset_after=True, **kw)
    if kind == "gru_v1":
        return keras.layers.GRUCell(units, reset_after=False, **kw)
    raise ValueError(kind)


def _jr_cell(kind, units, **kw):
    if kind == "simple":
        return jr.SimpleRNNCell(units, **kw)
    if kind == "lstm":
        return jr.LSTMCell(units, **kw)
    if kind == "gru":
        return jr.GRUCell(units, reset_after=True, **kw)
    if kind == "gru_v1":
        return jr.GRUCell(units, reset_after=False, **kw)
    raise ValueError(kind)


def _randomize(keras_cells, rng):
    """Random weights for built Keras cells; biases nonzero so the bias mapping is checked."""
    for cell in keras_cells:
        values = []
        for w in cell.weights:
            scale = 0.5 if w.name == "bias" else 0.7
            values.append(rng.uniform(-scale, scale, size=tuple(w.shape)).astype(np.float32))
        cell.set_weights(values)


def _variable(v):
    return jnp.asarray(keras.ops.convert_to_numpy(v.value))


def _cell_params(keras_cell):
    """cell.kernel -> params["kernel"], cell.recurrent_kernel -> "recurrent_kernel", cell.bias -> "bias"."""
    params = {
        "kernel": _variable(keras_cell.kernel),
        "recurrent_kernel": _variable(keras_cell.recurrent_kernel),
    }
    if keras_cell.use_bias:
        params["bias"] = _variable(keras_cell.bias)
        assert not np.all(np.asarray(params["bias"]) == 0)
    return params


def _state_sizes(keras_cell):
    size = keras_cell.state_size
    return list(size) if isinstance(size, (list, tuple)) else [size]


def _initial_state(keras_cells, stacked, rng, batch=B):
    """Nonzero initial states: [s, ...] for one cell; [[s, ...] per cell] for a stack."""
    per_cell = [
        [rng.uniform(-1, 1, size=(batch, n)).astype(np.float32) for n in _state_sizes(c)]
        for c in keras_cells
    ]
    return per_cell if stacked else per_cell[0]


def _param_shapes(tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): tuple(np.shape(leaf)) for path, leaf in leaves}


def _check_init_matches(layer, params):
    """jaxrnn's own init gives Keras's weight names and shapes (same nesting). Abstractly
    evaluated: running the initializers would compile each of them for each new shape."""
    own = jax.eval_shape(lambda k: layer.init(k, (B, T, F)), jax.random.PRNGKey(0))
    assert _param_shapes(own) == _param_shapes(params)


# --------------------------------------------------------------------------------------------
# Running and comparing.


def _to_numpy(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(keras.ops.convert_to_numpy(a)), tree)


def _keras_cases(keras_layer, x, cases, init=None):
    """Keras's result for each mask case, from one call on the cases stacked along the batch.

    A case without a mask gets an all-True mask (the same computation as mask=None in the scan
    path); a case that does not use ``init`` gets zeros (Keras's default initial state)."""
    xs = np.concatenate([x] * len(cases))
    masks = np.concatenate(
        [np.ones((B, T), bool) if MASK_CASES[c][0] is None else MASK_CASES[c][0] for c in cases]
    )
    kwargs = {"mask": masks}
    if init is not None:
        kwargs["initial_state"] = jax.tree_util.tree_map(
            lambda s: np.concatenate([s if MASK_CASES[c][1] else np.zeros_like(s) for c in cases]),
            init,
        )
    with _lenient():
        out = _to_numpy(keras_layer(xs, **kwargs))
    return {
        c: jax.tree_util.tree_map(lambda a, i=i: a[i * B : (i + 1) * B], out)
        for i, c in enumerate(cases)
    }


def _rnn_call(layer):
    """The (params, x, mask, initial_state) call that _run_cases expects, for an RNN layer."""
    return lambda p, x, m, s: layer(p, x, initial_state=s, mask=m)


def _compare(got, want, what="output"):
    """Positional comparison; lists and tuples are both sequences (Keras returns lists of states
    where jaxrnn returns tuples)."""
    if isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)), (
            f"{what}: Keras gives a sequence of {len(want)}, jaxrnn gives {type(got).__name__}"
        )
        assert len(got) == len(want), f"{what}: Keras gives {len(want)} entries, jaxrnn {len(got)}"
        for i, (g, w) in enumerate(zip(got, want)):
            _compare(g, w, f"{what}[{i}]")
        return
    g, w = np.asarray(got), np.asarray(want)
    assert g.shape == w.shape, f"{what}: jaxrnn shape {g.shape}, Keras shape {w.shape}"
    np.testing.assert_allclose(g, w, atol=ATOL, rtol=RTOL, err_msg=what)


def _run_cases(call, params, x, init, expected, cases, what="", flatten=False):
    """Runs ``call(params, x, mask, initial_state)`` once per mask case and compares each with
    Keras, collecting every mismatch before failing.

    The cases are separate calls (each with its own mask, or None, and its own initial_state, or
    None) traced into ONE jitted function, so a configuration costs one compilation."""
    masks = {c: None if MASK_CASES[c][0] is None else jnp.asarray(MASK_CASES[c][0]) for c in cases}
    init = None if init is None else jax.tree_util.tree_map(jnp.asarray, init)

    def all_cases(params, x, masks, init):
        return {c: call(params, x, masks[c], init if MASK_CASES[c][1] else None) for c in cases}

    results = jax.jit(all_cases)(params, jnp.asarray(x), masks, init)
    errors = []
    for c in cases:
        got, want = results[c], expected[c]
        if flatten:
            got, want = jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)
        try:
            _compare(got, want, f"{what}mask={c}: result")
        except AssertionError as e:
            uses_init = MASK_CASES[c][1] and init is not None
            errors.append(
                f"--- mask case {c!r} (initial_state {'nonzero' if uses_init else 'None'}):\n{e}"
            )
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


# --------------------------------------------------------------------------------------------
# The full matrix: cell kind x return_sequences x return_state x go_backwards x
# zero_output_for_mask x unroll (192 test items), each over the four mask cases: 4 * 2**4 * 3 * 4
# = 768 combinations. The default run takes the 12-item pairwise sample; the rest are slow.


class _Ref:
    """A built Keras RNN (scan path) with random weights, its params and results per mask case."""

    def __init__(self, spec, stacked, flags, cases):
        tag = (spec, stacked, tuple(sorted(flags.items())))
        rng = _rng("weights", *tag)
        self.x = _x()
        cells = [_keras_cell(kind, units) for kind, units in spec]
        layer = keras.layers.RNN(cells if stacked else cells[0], unroll=False, **flags)
        with _lenient():
            layer.build((None, T, F))
            _randomize(cells, rng)
        self.keras_layer = layer
        params = [_cell_params(c) for c in cells]
        self.params = params if stacked else params[0]
        self.init = _initial_state(cells, stacked, rng)
        self.expected = _keras_cases(layer, self.x, cases, self.init) if cases else {}


@functools.cache
def _matrix_ref(kind, rs, rstate, gb, zof):
    flags = dict(
        return_sequences=rs, return_state=rstate, go_backwards=gb, zero_output_for_mask=zof
    )
    return _Ref(((kind, UNITS),), False, flags, tuple(MASK_CASES))


MATRIX = list(
    itertools.product(KINDS, (False, True), (False, True), (False, True), (False, True), UNROLLS)
)


def _matrix_id(p):
    kind, rs, rstate, gb, zof, unroll = p
    return f"{kind}-rs{int(rs)}-state{int(rstate)}-back{int(gb)}-zof{int(zof)}-unroll{unroll}"


@pytest.mark.parametrize(
    "kind,rs,rstate,gb,zof,unroll", sampled(MATRIX, [_matrix_id(p) for p in MATRIX])
)
def test_matrix(kind, rs, rstate, gb, zof, unroll):
    ref = _matrix_ref(kind, rs, rstate, gb, zof)
    layer = jr.RNN(
        _jr_cell(kind, UNITS),
        return_sequences=rs,
        return_state=rstate,
        go_backwards=gb,
        zero_output_for_mask=zof,
        unroll=unroll,
    )
    if unroll is False:
        _check_init_matches(layer, ref.params)
    _run_cases(_rnn_call(layer), ref.params, ref.x, ref.init, ref.expected, tuple(MASK_CASES))


def test_matrix_oracle_sanity():
    """The Keras behaviours the matrix relies on, pinned so a Keras change shows up here."""
    # zero_output_for_mask=True without return_sequences: zeros for a sample whose last
    # processed step is masked (sample 0 of the holes mask), here with a nonzero initial state.
    ref = _matrix_ref("lstm", False, False, False, True)
    np.testing.assert_array_equal(ref.expected["holes"][0], 0.0)
    np.testing.assert_array_equal(ref.expected["holes"][1], 0.0)  # every step masked
    # Without zero_output_for_mask, an all-masked sample returns the initial h.
    ref = _matrix_ref("gru", True, True, False, False)
    out, h = ref.expected["holes"]
    np.testing.assert_allclose(out[1], np.broadcast_to(ref.init[0][1], (T, UNITS)))
    np.testing.assert_allclose(h[1], ref.init[0][1])
    # Left padding: the leading masked outputs are the initial h, not zeros.
    out = ref.expected["left"][0]
    np.testing.assert_allclose(out[2, :4], np.broadcast_to(ref.init[0][2], (4, UNITS)))


# --------------------------------------------------------------------------------------------
# Stacked cells of different kinds and sizes.

STACKS = {
    "lstm4-gru3-simple5": (("lstm", 4), ("gru", 3), ("simple", 5)),
    "gruv1_2-lstm3": (("gru_v1", 2), ("lstm", 3)),
    "simple3-gruv1_4-lstm2-gru2": (("simple", 3), ("gru_v1", 4), ("lstm", 2), ("gru", 2)),
}
STACK_CASES = ("none", "left", "holes")
# Every (stack, return_sequences, go_backwards, zero_output_for_mask); `unroll` cycles through
# False, True, 3 over them (the matrix above covers unroll exhaustively for single cells).
STACKED = [
    (*p, UNROLLS[i % len(UNROLLS)])
    for i, p in enumerate(itertools.product(STACKS, (False, True), (False, True), (False, True)))
]


@functools.cache
def _stack_ref(name, rs, gb, zof):
    flags = dict(return_sequences=rs, return_state=True, go_backwards=gb, zero_output_for_mask=zof)
    return _Ref(STACKS[name], True, flags, STACK_CASES)


@pytest.mark.parametrize(
    "name,rs,gb,zof,unroll",
    sampled(
        STACKED,
        [f"{n}-rs{int(rs)}-back{int(gb)}-zof{int(z)}-unroll{u}" for n, rs, gb, z, u in STACKED],
    ),
)
def test_stacked(name, rs, gb, zof, unroll):
    # Keras returns (output, [states of cell 0], [states of cell 1], ...) for a stack, a list
    # per cell even for one-state cells; jaxrnn returns (output, (states of cell 0), ...).
    # _compare matches them position by position.
    ref = _stack_ref(name, rs, gb, zof)
    flags = dict(return_sequences=rs, return_state=True, go_backwards=gb, zero_output_for_mask=zof)
    cells = [_jr_cell(kind, units) for kind, units in STACKS[name]]
    layer = jr.RNN(cells, unroll=unroll, **flags)
    if unroll is False:
        _check_init_matches(layer, ref.params)
    _run_cases(_rnn_call(layer), ref.params, ref.x, ref.init, ref.expected, STACK_CASES)


def test_stacked_explicit_cells():
    """jr.RNN(jr.StackedRNNCells(cells)) is the same layer as jr.RNN(cells)."""
    name = "lstm4-gru3-simple5"
    ref = _stack_ref(name, True, True, False)
    cells = [_jr_cell(kind, units) for kind, units in STACKS[name]]
    layer = jr.RNN(
        jr.StackedRNNCells(cells), return_sequences=True, return_state=True, go_backwards=True
    )
    _check_init_matches(layer, ref.params)
    _run_cases(_rnn_call(layer), ref.params, ref.x, ref.init, ref.expected, STACK_CASES)


# --------------------------------------------------------------------------------------------
# Nonzero initial states for every cell (and a stack), no mask.

INIT_SPECS = {
    "simple": ((("simple", UNITS),), False),
    "lstm": ((("lstm", UNITS),), False),
    "gru": ((("gru", UNITS),), False),
    "gru_v1": ((("gru_v1", UNITS),), False),
    "stack": ((("lstm", 3), ("gru_v1", 2), ("simple", 4), ("gru", 3)), True),
}


@pytest.mark.parametrize("gb", (False, True), ids=("forward", "backward"))
@pytest.mark.parametrize("name", INIT_SPECS)
def test_initial_state(name, gb):
    spec, stacked = INIT_SPECS[name]
    flags = dict(return_sequences=True, return_state=True, go_backwards=gb)
    ref = _Ref(spec, stacked, flags, ())  # built for its weights and a nonzero init
    x = _x("init")
    with _lenient():
        want = _to_numpy(ref.keras_layer(x, initial_state=ref.init))
        want_zero = _to_numpy(ref.keras_layer(x))
    cells = [_jr_cell(kind, units) for kind, units in spec]
    layer = jr.RNN(cells if stacked else cells[0], **flags)
    fn = jax.jit(lambda p, x, s: layer(p, x, initial_state=s))
    init = jax.tree_util.tree_map(jnp.asarray, ref.init)
    _compare(fn(ref.params, jnp.asarray(x), init), want)
    # A zero initial state given explicitly == no initial state.
    zeros = jax.tree_util.tree_map(jnp.zeros_like, init)
    _compare(
        fn(ref.params, jnp.asarray(x), zeros),
        want_zero,
        "zero initial_state",
    )


# --------------------------------------------------------------------------------------------
# The Keras-style shorthands jr.LSTM / jr.GRU / jr.SimpleRNN against keras.layers.*.

SHORTHANDS = {
    "LSTM-default": ("LSTM", {}),
    "LSTM-relu-hardsig-nobias": (
        "LSTM",
        dict(activation="relu", recurrent_activation="hard_sigmoid", use_bias=False),
    ),
    "LSTM-sigmoid-linear": ("LSTM", dict(activation="sigmoid", recurrent_activation="linear")),
    "GRU-default": ("GRU", {}),
    "GRU-nobias": ("GRU", dict(use_bias=False)),
    "GRU-v1-relu-hardsig": (
        "GRU",
        dict(reset_after=False, activation="relu", recurrent_activation="hard_sigmoid"),
    ),
    "SimpleRNN-default": ("SimpleRNN", {}),
    "SimpleRNN-relu": ("SimpleRNN", dict(activation="relu")),
    "SimpleRNN-linear-nobias": ("SimpleRNN", dict(activation="linear", use_bias=False)),
}
SHORTHAND_LAYER_KW = {
    "plain": {},
    "seq-state-back": dict(return_sequences=True, return_state=True, go_backwards=True),
    "state-zof": dict(return_state=True, zero_output_for_mask=True),
}
SHORTHAND_CASES = ("none", "right", "holes")
SHORTHAND_ITEMS = list(itertools.product(SHORTHANDS, SHORTHAND_LAYER_KW))
# By default, a Latin square: each class's three cell configurations meet its three layer
# configurations once each (shifted per class, so each configuration name meets each too).
_SHORTHAND_SAMPLE = [
    (name, list(SHORTHAND_LAYER_KW)[(i + i // 3) % 3]) for i, name in enumerate(SHORTHANDS)
]


@pytest.mark.parametrize(
    "name,layer_kw",
    sampled(SHORTHAND_ITEMS, [f"{n}-{k}" for n, k in SHORTHAND_ITEMS], _SHORTHAND_SAMPLE),
)
def test_shorthand(name, layer_kw):
    cls, cell_kw = SHORTHANDS[name]
    kw = {**cell_kw, **SHORTHAND_LAYER_KW[layer_kw]}
    rng = _rng("shorthand", name, layer_kw)
    x = _x("shorthand")
    klayer = getattr(keras.layers, cls)(UNITS, **kw)
    with _lenient():
        klayer.build((None, T, F))
        _randomize([klayer.cell], rng)
    init = _initial_state([klayer.cell], False, rng)
    expected = _keras_cases(klayer, x, SHORTHAND_CASES, init)
    params = _cell_params(klayer.cell)
    layer = getattr(jr, cls)(UNITS, **kw)
    _check_init_matches(layer, params)
    _run_cases(_rnn_call(layer), params, x, init, expected, SHORTHAND_CASES)


# --------------------------------------------------------------------------------------------
# Bidirectional: all merge modes, with and without a mask, return_sequences, return_state.

BIDI = list(itertools.product(MERGE_MODES, (False, True), (False, True)))
BIDI_CASES = ("none", "right", "holes")


@pytest.mark.parametrize(
    "merge_mode,rs,rstate", sampled(BIDI, [f"{m}-rs{int(rs)}-state{int(st)}" for m, rs, st in BIDI])
)
def test_bidirectional(merge_mode, rs, rstate):
    rng = _rng("bidi", merge_mode, rs, rstate)
    x = _x("bidi")
    klayer = keras.layers.Bidirectional(
        keras.layers.LSTM(UNITS, return_sequences=rs, return_state=rstate), merge_mode=merge_mode
    )
    with _lenient():
        klayer.build((None, T, F))
    # Keras's Bidirectional sets zero_output_for_mask = return_sequences on both directions.
    assert klayer.forward_layer.zero_output_for_mask == rs
    assert klayer.backward_layer.zero_output_for_mask == rs
    fwd, bwd = klayer.forward_layer.cell, klayer.backward_layer.cell
    with _lenient():
        _randomize([fwd, bwd], rng)
    expected = _keras_cases(klayer, x, BIDI_CASES)
    params = {"forward": _cell_params(fwd), "backward": _cell_params(bwd)}
    layer = jr.Bidirectional(
        jr.LSTM(UNITS, return_sequences=rs, return_state=rstate), merge_mode=merge_mode
    )
    _check_init_matches(layer, params)
    # With merge_mode=None, Keras flattens: (out_fwd, out_bwd, *fwd_states, *bwd_states), while
    # jaxrnn's API nests the unmerged pair: ((out_fwd, out_bwd), *fwd_states, *bwd_states); so
    # compare the leaves, in order.
    _run_cases(
        lambda p, x, m, s: layer(p, x, mask=m),
        params,
        x,
        None,
        expected,
        BIDI_CASES,
        flatten=merge_mode is None,
    )


# --------------------------------------------------------------------------------------------
# Stateful layers: three consecutive batches, a reset, then one more.

STATEFUL = list(itertools.product(("LSTM", "GRU", "SimpleRNN"), (False, True), (False, True)))


@pytest.mark.parametrize(
    "cls,rs,masked", sampled(STATEFUL, [f"{c}-rs{int(rs)}-mask{int(m)}" for c, rs, m in STATEFUL])
)
def test_stateful(cls, rs, masked):
    rng = _rng("stateful", cls, rs, masked)
    xs = [rng.normal(size=(B, T, F)).astype(np.float32) for _ in range(4)]
    mask = MASK_CASES["holes"][0] if masked else None
    klayer = getattr(keras.layers, cls)(UNITS, stateful=True, return_sequences=rs)
    with _lenient():
        klayer(xs[0])  # build (this also advances its state; reset below)
        _randomize([klayer.cell], rng)
        klayer.reset_states()
    params = _cell_params(klayer.cell)

    layer = getattr(jr, cls)(UNITS, stateful=True, return_sequences=rs)
    fn = jax.jit(lambda p, x, m, s: layer(p, x, mask=m, state=s))
    state = layer.reset_state(B)
    for i, x in enumerate(xs):
        with _lenient():
            if i == 3:
                klayer.reset_states()
            want = _to_numpy(klayer(x, mask=mask))
        if i == 3:
            state = layer.reset_state(B)
        got, state = fn(params, jnp.asarray(x), None if mask is None else jnp.asarray(mask), state)
        _compare(got, want, f"batch {i} output")
        want_state = [np.asarray(_variable(v)) for v in klayer.states]
        _compare(jax.tree_util.tree_leaves(state), want_state, f"batch {i} state")


def test_stateful_reset_state_with_given_states():
    layer = jr.LSTM(UNITS, stateful=True)
    h, c = (np.full((B, UNITS), v, np.float32) for v in (0.5, -0.25))
    state = layer.reset_state(B, states=[h, c])
    leaves = jax.tree_util.tree_leaves(state)
    assert len(leaves) == 2
    np.testing.assert_array_equal(leaves[0], h)
    np.testing.assert_array_equal(leaves[1], c)
    zeros = jax.tree_util.tree_leaves(layer.reset_state(B))
    assert [z.shape for z in zeros] == [(B, UNITS), (B, UNITS)]
    assert all(not np.any(np.asarray(z)) for z in zeros)


# --------------------------------------------------------------------------------------------
# Config round trip and Keras-compatible config keys.

CONFIG_LAYERS = {
    "lstm-relu-flags": lambda: jr.RNN(
        jr.LSTMCell(UNITS, activation="relu", recurrent_activation="hard_sigmoid"),
        return_sequences=True,
        go_backwards=True,
        zero_output_for_mask=True,
        unroll=3,
    ),
    "gru_v1-state": lambda: jr.RNN(jr.GRUCell(UNITS, reset_after=False), return_state=True),
    "simple-nobias-unrolled": lambda: jr.RNN(
        jr.SimpleRNNCell(UNITS, use_bias=False, activation="linear"), unroll=True
    ),
    "stack": lambda: jr.RNN(
        [jr.LSTMCell(3), jr.GRUCell(2), jr.SimpleRNNCell(4, activation="relu")],
        return_sequences=True,
        return_state=True,
    ),
    "shorthand-LSTM": lambda: jr.LSTM(
        UNITS, activation="relu", use_bias=False, return_sequences=True
    ),
    "shorthand-GRU": lambda: jr.GRU(UNITS, reset_after=False, go_backwards=True),
    "shorthand-SimpleRNN": lambda: jr.SimpleRNN(
        UNITS, return_state=True, zero_output_for_mask=True
    ),
}


@pytest.mark.parametrize("name", CONFIG_LAYERS)
def test_config_round_trip(name):
    layer = CONFIG_LAYERS[name]()
    config = layer.get_config()
    text = json.dumps(config)  # JSON-serializable
    copies = [type(layer).from_config(json.loads(text))]
    if isinstance(layer, jr.RNN):
        copies.append(jr.RNN.from_config(json.loads(text)))
    params = layer.init(jax.random.PRNGKey(1), (B, T, F))
    x = jnp.asarray(_x("config"))
    mask = jnp.asarray(MASK_CASES["holes"][0])
    # The layer and its copies in one compiled call (one compilation, not one per layer).
    want, *gots = _to_numpy(
        jax.jit(lambda p, x, m: [l(p, x, mask=m) for l in (layer, *copies)])(params, x, mask)
    )
    for copy, got in zip(copies, gots):
        assert json.loads(json.dumps(copy.get_config())) == json.loads(text)
        assert len(jax.tree_util.tree_leaves(got)) == len(jax.tree_util.tree_leaves(want))
        for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_array_equal(g, w)


CELL_CONFIG_KW = {
    "simple": dict(activation="relu", use_bias=False, dropout=0.25),
    "lstm": dict(activation="relu", recurrent_activation="hard_sigmoid", unit_forget_bias=False),
    "gru": dict(recurrent_activation="hard_sigmoid", recurrent_dropout=0.5),
    "gru_v1": dict(activation="linear", use_bias=False),
}
# Hyperparameters compared by value; the initializers only by presence (Keras serializes them
# as dicts, jaxrnn by name).
VALUE_KEYS = (
    "units",
    "activation",
    "recurrent_activation",
    "use_bias",
    "unit_forget_bias",
    "reset_after",
    "dropout",
    "recurrent_dropout",
)
PRESENCE_KEYS = ("kernel_initializer", "recurrent_initializer", "bias_initializer")


@pytest.mark.parametrize("kind", KINDS)
def test_cell_config_mirrors_keras(kind):
    kw = CELL_CONFIG_KW[kind]
    kconfig = _keras_cell(kind, UNITS, **kw).get_config()
    cell = _jr_cell(kind, UNITS, **kw)
    config = cell.get_config()
    text = json.dumps(config)
    for key in VALUE_KEYS:
        if key in kconfig:
            assert key in config, f"jaxrnn {kind} cell config lacks Keras's {key!r}"
            assert config[key] == kconfig[key], (key, config[key], kconfig[key])
    for key in PRESENCE_KEYS:
        assert key in config, f"jaxrnn {kind} cell config lacks Keras's {key!r}"
    again = type(cell).from_config(json.loads(text))
    assert json.loads(json.dumps(again.get_config())) == json.loads(text)
    assert again == cell  # cells are immutable, hashable hyperparameter holders
    assert hash(again) == hash(cell)


@pytest.mark.parametrize("unroll", (False, True))
def test_layer_config_mirrors_keras(unroll):
    flags = dict(
        return_sequences=True,
        return_state=True,
        go_backwards=True,
        stateful=False,
        unroll=unroll,
        zero_output_for_mask=True,
    )
    kconfig = keras.layers.RNN(keras.layers.LSTMCell(UNITS), **flags).get_config()
    config = jr.RNN(jr.LSTMCell(UNITS), **flags).get_config()
    for key in flags:
        assert key in config, f"jaxrnn RNN config lacks Keras's {key!r}"
        assert config[key] == kconfig[key], (key, config[key], kconfig[key])
