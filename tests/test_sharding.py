"""Data parallelism over 4 emulated CPU devices: the sharded training step gives the loss,
gradients, optax update and stateful states of the single-device step.

XLA_FLAGS must be set before jax initializes, so the check runs in a fresh interpreter.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    os.environ["JAX_PLATFORMS"] = "cpu"  # four emulated CPU devices, on a GPU machine too
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import NamedSharding, PartitionSpec as P
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import jaxrnn as jr
    from jaxrnn._sharding import data_mesh, replicate, shard_batch

    assert jax.device_count() == 4, jax.devices()
    B, T, F, H = 8, 6, 3, 5
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(B, T, F)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(B,)), jnp.float32)
    mask = jnp.arange(T)[None, :] < jnp.asarray(rng.integers(1, T + 1, B))[:, None]
    layer = jr.Bidirectional(jr.GRU(H))
    params = {"rnn": layer.init(jax.random.PRNGKey(0), x.shape),
              "w": jnp.asarray(rng.normal(size=(2 * H,)), jnp.float32)}
    opt = optax.adam(1e-2)

    def loss_fn(params, x, y, mask):
        return jnp.mean((layer(params["rnn"], x, mask=mask) @ params["w"] - y) ** 2)

    @jax.jit
    def step(params, opt_state, x, y, mask):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y, mask)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, grads

    def close(a, b):
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6)

    one = step(params, opt.init(params), x, y, mask)
    mesh = data_mesh()
    p_sh, o_sh = replicate((params, opt.init(params)), mesh)
    xs, ys, ms = shard_batch((x, y, mask), mesh)
    assert xs.sharding.is_equivalent_to(NamedSharding(mesh, P("data")), 3)
    assert {s.data.shape for s in xs.addressable_shards} == {(B // 4, T, F)}
    many = step(p_sh, o_sh, xs, ys, ms)
    close(many, one)  # new params, optimizer state, loss, gradients
    for leaf in jax.tree.leaves(many[0]) + jax.tree.leaves(many[3]):
        assert leaf.sharding.is_fully_replicated, leaf.sharding

    # Stateful, time-major: each sample's state stays on its device across steps.
    sl = jr.GRU(H, stateful=True, return_sequences=True, time_major=True)
    sp = sl.init(jax.random.PRNGKey(1), (T, B, F))
    run = jax.jit(lambda p, x, s: sl(p, x, state=s))
    x_tm = jnp.swapaxes(x, 0, 1)
    s1 = sl.reset_state(B)
    s4 = shard_batch(s1, mesh)
    for _ in range(2):
        (out1, s1), (out4, s4) = run(sp, x_tm, s1), run(replicate(sp, mesh),
                                                        shard_batch(x_tm, mesh, axis=1), s4)
        close((out4, s4), (out1, s1))
        assert s4[0].sharding.is_equivalent_to(NamedSharding(mesh, P("data")), 2), s4[0].sharding
        assert out4.sharding.is_equivalent_to(NamedSharding(mesh, P(None, "data")), 3)

    try:
        shard_batch(jnp.ones((6, 2)), mesh)
    except ValueError as e:
        assert "batch size 6" in str(e) and "4 devices" in str(e), e
    else:
        raise AssertionError("no error for an uneven batch")
    print("SHARDING-OK")
    """
)


def test_sharded_step_matches_single_device():
    pytest.importorskip("optax")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SHARDING-OK" in proc.stdout
