"""Train a small LSTM with optax to forecast noisy sine waves one step ahead.

Each training sequence is a sine wave with a random frequency, phase and amplitude, seen
through Gaussian noise. At every step the model reads the noisy value and predicts the
*clean* value of the next step, so it has to both denoise and extrapolate:

    x[b, t] = A_b * sin(w_b * t + p_b) + noise      # [B, T, 1]
    y[b, t] = A_b * sin(w_b * (t + 1) + p_b)        # [B, T, 1]

The model is ``jr.LSTM(units, return_sequences=True)`` followed by a dense readout whose
params are a plain ``{"w", "b"}`` dict. The final report compares the test MSE with the
"persistence" baseline that predicts the next value to be the current noisy one.

Run:
    python examples/train_lstm.py                 # ~300 steps, well under a minute on CPU
    python examples/train_lstm.py --steps 1000 --units 64
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import optax

import jaxrnn as jr

NOISE = 0.1  # standard deviation of the observation noise


def make_batch(key, batch_size, seq_len):
    """Samples noisy sine waves and their clean next-step targets.

    Args:
      key: a jax.random key.
      batch_size: B, the number of sequences.
      seq_len: T, the number of steps per sequence.

    Returns:
      (x, y): [B, T, 1] float32 noisy inputs and [B, T, 1] clean next-step targets.
    """
    k_freq, k_phase, k_amp, k_noise = jax.random.split(key, 4)
    # Periods between ~6 and ~40 steps.
    omega = jax.random.uniform(k_freq, (batch_size, 1), minval=0.15, maxval=1.0)
    phase = jax.random.uniform(k_phase, (batch_size, 1), minval=0.0, maxval=2 * jnp.pi)
    amp = jax.random.uniform(k_amp, (batch_size, 1), minval=0.5, maxval=1.5)
    t = jnp.arange(seq_len + 1, dtype=jnp.float32)[None, :]  # [1, T + 1]
    clean = amp * jnp.sin(omega * t + phase)  # [B, T + 1]
    noisy = clean[:, :-1] + NOISE * jax.random.normal(k_noise, (batch_size, seq_len))
    return noisy[..., None], clean[:, 1:, None]


def init_params(key, layer, units, batch_size, seq_len):
    """Params for the LSTM and the dense readout: {"lstm": ..., "dense": {"w", "b"}}."""
    k_lstm, k_dense = jax.random.split(key)
    return {
        "lstm": layer.init(k_lstm, (batch_size, seq_len, 1)),
        "dense": {
            "w": jax.nn.initializers.glorot_uniform()(k_dense, (units, 1), jnp.float32),
            "b": jnp.zeros((1,), jnp.float32),
        },
    }


def predict(layer, params, x):
    """[B, T, 1] inputs -> [B, T, 1] next-step predictions."""
    h = layer(params["lstm"], x)  # [B, T, H]
    dense = params["dense"]
    return h @ dense["w"] + dense["b"][None, None, :]  # explicit broadcast of b over B, T


def mse(pred, target):
    return jnp.mean((pred - target) ** 2)


def progress_bar(step, total, loss, width=30):
    """Redraws a one-line text progress bar in place (no trailing newline)."""
    filled = int(width * step / total)
    bar = "#" * filled + "-" * (width - filled)
    sys.stdout.write(f"\r[{bar}] {step:>{len(str(total))}}/{total}  loss {loss:.4f}")
    sys.stdout.flush()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--batch-size", type=int, default=64, help="sequences per step")
    parser.add_argument("--units", type=int, default=32, help="LSTM units")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed")
    parser.add_argument("--seq-len", type=int, default=50, help="steps per sequence")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    parser.add_argument("--eval-size", type=int, default=512, help="held-out sequences")
    parser.add_argument(
        "--log-every", type=int, default=50, help="print the loss every N steps (0: never)"
    )
    parser.add_argument(
        "--plot",
        metavar="PATH",
        default=None,
        help="save a plot of test predictions to PATH (needs matplotlib), e.g. outputs/lstm.png",
    )
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "units", "seq_len", "eval_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None):
    """Trains the model and returns the final metrics as a dict of Python floats/ints."""
    args = parse_args(argv)
    key = jax.random.PRNGKey(args.seed)
    k_init, k_data, k_eval = jax.random.split(key, 3)

    layer = jr.LSTM(args.units, return_sequences=True)
    params = init_params(k_init, layer, args.units, args.batch_size, args.seq_len)
    optimizer = optax.adam(optax.cosine_decay_schedule(args.lr, args.steps, alpha=0.1))
    opt_state = optimizer.init(params)

    def loss_fn(params, x, y):
        return mse(predict(layer, params, x), y)

    @jax.jit
    def train_step(params, opt_state, key):
        x, y = make_batch(key, args.batch_size, args.seq_len)
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def evaluate(params, x, y):
        pred = predict(layer, params, x)
        return mse(pred, y), mse(x, y), pred  # model MSE, persistence-baseline MSE

    x_test, y_test = make_batch(k_eval, args.eval_size, args.seq_len)
    n_params = sum(p.size for p in jax.tree.leaves(params))
    print(
        f"LSTM({args.units}) + Dense(1), {n_params} params; "
        f"{args.steps} steps of batch {args.batch_size} x {args.seq_len} steps"
    )

    start = time.perf_counter()
    loss = float("nan")
    for step, step_key in enumerate(jax.random.split(k_data, args.steps), start=1):
        params, opt_state, loss = train_step(params, opt_state, step_key)
        loss = float(loss)
        progress_bar(step, args.steps, loss)
        if args.log_every and (step % args.log_every == 0 or step == args.steps):
            sys.stdout.write(f"\rstep {step:>5}  train MSE {loss:.4f}" + " " * 40 + "\n")
    elapsed = time.perf_counter() - start
    sys.stdout.write("\n" if not args.log_every else "")

    test_mse, baseline_mse, pred = evaluate(params, x_test, y_test)
    metrics = {
        "steps": args.steps,
        "train_mse": loss,
        "test_mse": float(test_mse),
        "baseline_mse": float(baseline_mse),
        "seconds": elapsed,
    }
    print(
        f"test MSE {metrics['test_mse']:.4f} vs persistence baseline "
        f"{metrics['baseline_mse']:.4f} ({metrics['baseline_mse'] / metrics['test_mse']:.1f}x "
        f"better); trained in {elapsed:.1f} s"
    )

    if args.plot:
        save_plot(args.plot, x_test, y_test, pred)
    return metrics


def save_plot(path, x, y, pred, n=3):
    """Plots the first n test sequences: noisy input, clean target and prediction."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 * n), sharex=True)
    for i, ax in enumerate(axes):
        ax.plot(x[i, :, 0], ".", color="0.6", label="noisy input x[t]")
        ax.plot(y[i, :, 0], label="clean target x[t+1]")
        ax.plot(pred[i, :, 0], "--", label="LSTM prediction")
    axes[0].legend(loc="upper right", fontsize="small")
    axes[-1].set_xlabel("t")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
