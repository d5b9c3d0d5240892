"""Data-parallel training across several devices, emulated on the CPU.

The batch is split over the devices along its batch axis, the params (and optimizer state)
are replicated, and the jitted training step is the ordinary single-device one: XLA runs each
device on its slice and all-reduces the gradients. The script first checks that one sharded
step gives the loss and gradients of the single-device step, then trains a stateful GRU
(truncated backpropagation through time over long sequences, each sample's state kept on
its device between steps) to predict the next value of noisy sine waves.

    python examples/data_parallel.py                  # 4 emulated CPU devices, ~1 minute
    python examples/data_parallel.py --devices 8 --steps 400

On real accelerators, drop --devices: the mesh spans every device JAX sees. For several
hosts, call ``jax.distributed.initialize()`` at the start of every process; the same code
then trains over all hosts' devices, each process feeding its local part of the batch.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=4,
                   help="emulated CPU devices (0: use the real devices as they are)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=32, help="global batch, split over devices")
    p.add_argument("--chunk", type=int, default=25, help="steps of time per training step")
    p.add_argument("--units", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _emulate_devices(n: int) -> None:
    """Asks XLA for `n` CPU devices, and for the CPU as JAX's platform (on a machine with a
    GPU, JAX would otherwise use the GPU alone); only works before jax initializes its
    backends. An explicit JAX_PLATFORMS is kept."""
    if n <= 0:
        return
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={n}"])
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if "jax" in sys.modules:
        import jax

        if jax.device_count() != n and jax.default_backend() == "cpu":
            print(f"note: jax was already initialized with {jax.device_count()} device(s); "
                  f"run this script on its own to get {n}.")


def main(argv=None) -> dict:
    args = parse_args(argv)
    _emulate_devices(args.devices)  # before the first jax computation

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import jaxrnn as jr

    mesh = jr.data_mesh()
    n = mesh.devices.size
    print(f"{n} device(s): {[str(d) for d in mesh.devices]}")
    batch = args.batch_size - args.batch_size % n or n  # divisible by the device count

    rng = np.random.default_rng(args.seed)
    freq = rng.uniform(0.02, 0.1, (batch, 1))
    phase = rng.uniform(0, 2 * np.pi, (batch, 1))

    def chunk(i):
        """Chunk i of each sample's endless noisy sine wave: inputs [B, T, 1], targets [B, T]."""
        t = np.arange(i * args.chunk, (i + 1) * args.chunk + 1)[None, :]
        wave = np.sin(2 * np.pi * freq * t + phase) + 0.05 * rng.normal(size=(batch, t.size))
        wave = wave.astype(np.float32)
        return wave[:, :-1, None], wave[:, 1:]

    layer = jr.GRU(args.units, return_sequences=True, stateful=True)
    k1, k2 = jax.random.split(jax.random.PRNGKey(args.seed))
    params = {"rnn": jax.jit(lambda k: layer.init(k, (None, None, 1)))(k1),
              "w": jax.random.normal(k2, (args.units,)) * 0.1, "b": jnp.zeros(())}
    opt = optax.adam(args.lr)
    opt_state = opt.init(params)

    def loss_fn(params, state, x, y):
        h, state = layer(params["rnn"], x, state=state)
        return jnp.mean((h @ params["w"] + params["b"] - y) ** 2), state

    @jax.jit
    def train_step(params, opt_state, state, x, y):
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, state, loss, grads

    # 1. One sharded step equals the single-device step.
    x0, y0 = chunk(0)
    state0 = layer.reset_state(batch)
    _, _, _, loss_1, grads_1 = train_step(params, opt_state, state0, x0, y0)
    params, opt_state = jr.replicate((params, opt_state), mesh)
    state = jr.shard_batch(state0, mesh)
    _, _, _, loss_n, grads_n = train_step(params, opt_state, state, *jr.shard_batch((x0, y0), mesh))
    grad_diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                    zip(jax.tree.leaves(grads_1), jax.tree.leaves(grads_n)))
    print(f"one step, 1 device vs {n}: loss {float(loss_1):.6f} vs {float(loss_n):.6f}, "
          f"max gradient difference {grad_diff:.1e}")

    # 2. Train: the state stays sharded along the batch, each sample's on its device.
    losses = []
    for step in range(args.steps):
        x, y = jr.shard_batch(chunk(step), mesh)
        params, opt_state, state, loss, _ = train_step(params, opt_state, state, x, y)
        losses.append(float(loss))
        if args.log_every and ((step + 1) % args.log_every == 0 or step + 1 == args.steps):
            print(f"step {step + 1:4d}  loss {np.mean(losses[-args.log_every:]):.4f}")
    rows = sorted({s.data.shape[0] for s in state[0].addressable_shards})
    print(f"the state {tuple(state[0].shape)} lives on {len(state[0].devices())} devices, "
          f"{rows[0]} samples each")
    return {"devices": n, "first_loss": losses[0], "final_loss": float(np.mean(losses[-10:])),
            "loss_difference": abs(float(loss_1) - float(loss_n)), "grad_difference": grad_diff}


if __name__ == "__main__":
    main()
