"""Forward-mode differentiation of every default engine, against the generic scan's.

The fused LSTM/GRU cores and the parallel cells' `linear_scan` define their derivatives as a
`jax.custom_jvp` whose tangent is a `jax.lax.custom_linear_solve`: solved forwards by a
tangent loop for `jax.jvp`, and by the hand-written backward loop when `jax.grad` transposes
it. Every case compares the default-engine layer with the same layer on the generic scan
(``fused=False`` / ``parallel=False``) with masks (every kind of padding) and per-sample
resets, tangents for the params, the inputs and the initial states, and both in one compiled
function. Stacks put every core in one case: the fused cores (LSTM, GRU with
``reset_after`` True and False, the projected LSTM), or minGRU, minLSTM and the LRU with
each solver.
`jax.linearize` and `jax.jacfwd` (batched tangents) share the `jax.jvp` rule; they run on
one cell of each engine, with second order. Shapes are tiny: compiling is the cost.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr

B, T, F, H = 3, 5, 2, 3

MASK = jnp.array([[1, 1, 1, 1, 1],  # full
                  [1, 1, 1, 0, 0],  # right padding
                  [0, 1, 0, 1, 1]], dtype=bool)  # left padding and a hole
RESET = jnp.array([[0, 0, 1, 0, 0],
                   [0, 1, 0, 0, 0],
                   [1, 0, 0, 1, 0]], dtype=bool)


def _parallel_stack():
    return jr.StackedRNNCells([jr.MinGRUCell(H), jr.MinLSTMCell(H),
                               jr.LRUCell(H, state_dim=2, r_min=0.5, r_max=0.95)])


# name: (cell, the engine it takes, layer options)
CASES = {
    "fused_stack": (lambda: jr.StackedRNNCells([jr.LSTMCell(H), jr.GRUCell(H),
                                                jr.GRUCell(2, reset_after=False),
                                                jr.LSTMCell(H, proj_size=2)]),
                    "fused", {"go_backwards": True, "return_sequences": True}),
    # Only the last output: the last core keeps no per-step outputs.
    "gru_stack_last": (lambda: jr.StackedRNNCells([jr.GRUCell(H),
                                                   jr.GRUCell(H, reset_after=False)]),
                       "fused", {"return_sequences": False}),
    "parallel_sequential": (_parallel_stack, "parallel",
                            {"solver": "sequential", "go_backwards": True,
                             "return_sequences": True}),
    "parallel_associative": (_parallel_stack, "parallel",
                             {"solver": "associative", "go_backwards": True,
                              "return_sequences": True}),
    "lstm": (lambda: jr.LSTMCell(H), "fused", {"return_sequences": False}),
    "proj": (lambda: jr.LSTMCell(H, proj_size=2), "fused", {"return_sequences": False}),
    "minlstm": (lambda: jr.MinLSTMCell(H), "parallel",
                {"solver": "associative", "go_backwards": True, "return_sequences": True}),
}


def _setup(name):
    """The layer, the same on the generic scan, the primals (params, inputs, initial states)
    and tangents for each. Params are random arrays of `init`'s shapes, made by NumPy:
    compiling the initializers would cost more than the test."""
    make, engine, opts = CASES[name]
    cell = make()
    layer = jr.RNN(cell, return_state=True, **opts)
    generic = dataclasses.replace(layer, **{engine: False})
    shapes = jax.eval_shape(lambda: (layer.init(jax.random.key(0), (B, T, F)),
                                     jnp.zeros((B, T, F)), cell.get_initial_state(B)))
    rng = np.random.default_rng(0)

    def random(s):
        return jnp.asarray(0.5 * rng.normal(size=s.shape), s.dtype)

    return layer, generic, jax.tree.map(random, shapes), jax.tree.map(random, shapes)


def _apply(layer, masked=True):
    if not masked:
        return lambda params, x, init: layer(params, x, initial_state=init)
    return lambda params, x, init: layer(params, x, initial_state=init, mask=MASK, reset=RESET)


def _jit(f):
    # No LLVM optimisation: these programs run once, and compiling is most of their cost.
    return jax.jit(f, compiler_options={"xla_backend_optimization_level": 0})


def _close(got, want, rtol=1e-4, atol=1e-5):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", ["fused_stack", "gru_stack_last", "parallel_sequential",
                                  "parallel_associative"])
def test_jvp_matches_generic_scan(name):
    layer, generic, primals, tangents = _setup(name)
    got, want = _jit(lambda p, t: (jax.jvp(_apply(layer), p, t),
                                   jax.jvp(_apply(generic), p, t)))(primals, tangents)
    _close(got, want)


@pytest.mark.parametrize("name", ["lstm", "minlstm",
                                  pytest.param("proj", marks=pytest.mark.slow)])
def test_linearize_jacfwd_and_hessian(name):
    """`jax.linearize`, `jax.jacfwd` (wrt the inputs: B*T*F tangents at once) and
    `jax.hessian` (forward over reverse, through the tangent's implicit derivative, batched:
    the transposed solve under `jax.vmap` too), against the generic scan."""
    layer, generic, primals, tangents = _setup(name)

    def derivatives(layer, p, t, linear):
        params, x, init = p
        f = _apply(layer)

        def loss(init):
            return jnp.sum(jnp.sin(jax.tree.leaves(f(params, x, init))[0]))

        tangent = jax.linearize(f, *p)[1](*t) if linear else jax.jvp(f, p, t)[1]
        return tangent, jax.jacfwd(f, argnums=1)(*p), jax.hessian(loss)(init)

    got, want = _jit(lambda p, t: (derivatives(layer, p, t, True),
                                   derivatives(generic, p, t, False)))(primals, tangents)
    _close(got, want, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("name", ["lstm", "minlstm"])
def test_grad_keeps_the_hand_written_backward_pass(name):
    """Reverse mode transposes the tangent's linear solve, i.e. runs the hand-written
    backward loop (a `custom_linear_solve` in the gradient's program), never autodiff of the
    forward loop; the generic scan has none."""
    layer, generic, (params, x, init), _ = _setup(name)

    def grad_jaxpr(layer):
        def loss(p):
            return jnp.sum(jax.tree.leaves(_apply(layer)(p, x, init))[0] ** 2)
        return str(jax.make_jaxpr(jax.grad(loss))(params))

    assert "custom_linear_solve" in grad_jaxpr(layer)
    assert "custom_linear_solve" not in grad_jaxpr(generic)
