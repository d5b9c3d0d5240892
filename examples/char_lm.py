"""A character-level LSTM language model, trained with optax on text that ships with Python.

The corpus is the documentation of a fixed list of standard-library modules (their
docstrings, read with `inspect`): no download, the same text on every machine with the same
Python version. The model embeds characters, runs a `jaxrnn.LSTM` over them and predicts the
next character; the whole training step is one `jax.jit`-compiled function.

    python examples/char_lm.py                      # ~3 minutes on 2 CPU cores
    python examples/char_lm.py --steps 3000 --units 512 --seq-len 128   # a bigger run

One training loss is printed everywhere (progress bar, periodic lines, summary): the mean
cross-entropy of the last --avg-steps training steps, in nats per character. The validation
loss is the mean cross-entropy on held-out text (the last 5% of the corpus, never trained
on), measured before training and every --log-every steps. Uniform guessing over the
vocabulary scores log(96) ~ 4.56. The script writes both curves to a plot
(outputs/char_lm_loss.png, if matplotlib is installed), saves a checkpoint
(outputs/char_lm.safetensors, with `jaxrnn.save`) and samples text from the model, one
character at a time with `jaxrnn.Stream` (one compiled step, the LSTM's state carried).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import math
import os
import sys
import time
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn as jr

# Modules whose documentation makes the corpus (sorted names, in this order).
MODULES = ("argparse", "bisect", "calendar", "collections", "contextlib", "csv", "dataclasses",
           "datetime", "decimal", "difflib", "enum", "fractions", "functools", "heapq", "inspect",
           "itertools", "json", "logging", "operator", "pathlib", "pickle", "random", "re",
           "shutil", "statistics", "string", "subprocess", "tarfile", "textwrap", "threading",
           "typing", "unittest", "urllib.parse", "zipfile")
CHARS = "".join(chr(c) for c in range(32, 127)) + "\n"  # printable ASCII and newline


def load_corpus(max_chars: int | None = None) -> str:
    """The docstrings of `MODULES` and of their public members, cleaned to printable ASCII."""
    parts = []
    for name in MODULES:
        module = importlib.import_module(name)
        docs = [inspect.getdoc(module)]
        for attr in sorted(vars(module)):
            obj = getattr(module, attr)
            if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            docs.append(inspect.getdoc(obj))
        parts.extend(d for d in docs if d)
    text = "\n\n".join(parts)
    text = "".join(c if c in CHARS else " " for c in text.replace("\t", "    "))
    return text[:max_chars] if max_chars else text


def make_model(vocab: int, embed: int, units: int):
    """The LSTM layer and ``init(key) -> params`` for embedding -> LSTM -> linear head."""
    lstm = jr.LSTM(units, return_sequences=True, return_state=True)

    def init(key):
        k_emb, k_lstm, k_out = jax.random.split(key, 3)
        return {
            "embed": jax.random.normal(k_emb, (vocab, embed)) * 0.1,
            "lstm": lstm.init(k_lstm, (None, None, embed)),
            "head": {"w": jax.random.normal(k_out, (units, vocab)) / math.sqrt(units),
                     "b": jnp.zeros((vocab,))},
        }

    return lstm, init


def logits_fn(lstm, params, tokens, initial_state=None):
    """tokens [B, T] int -> (logits [B, T, V], final LSTM state (h, c))."""
    x = params["embed"][tokens]
    y, h, c = lstm(params["lstm"], x, initial_state=initial_state)
    return y @ params["head"]["w"] + params["head"]["b"][None, None, :], (h, c)


def batches(data: np.ndarray, batch_size: int, seq_len: int, rng: np.random.Generator):
    """Endless random windows: (inputs [B, T], targets [B, T]) with targets shifted by one."""
    while True:
        starts = rng.integers(0, len(data) - seq_len - 1, batch_size)
        window = np.stack([data[s:s + seq_len + 1] for s in starts])
        yield window[:, :-1], window[:, 1:]


def validation_windows(data: np.ndarray, n: int, seq_len: int):
    """`n` fixed windows spread evenly over `data`: (inputs [n, T], targets [n, T]).

    The same windows at every evaluation, so the validation curve moves only with the model.
    """
    if len(data) < seq_len + 2:
        raise ValueError(
            f"the held-out text has {len(data)} characters, fewer than --seq-len + 2 = "
            f"{seq_len + 2}: raise --max-chars (or use 0 for the whole corpus) or lower "
            "--seq-len")
    starts = np.linspace(0, len(data) - seq_len - 1, n).astype(int)
    window = np.stack([data[s:s + seq_len + 1] for s in starts])
    return window[:, :-1], window[:, 1:]


def progress(step: int, total: int, loss: float, window: int, rate: float,
             width: int = 30) -> int:
    """Draws the bar in place; returns the number of characters written."""
    done = int(width * step / total)
    bar = "#" * done + "." * (width - done)
    line = (f"[{bar}] {step}/{total} train loss {loss:.3f} (last {window} steps) "
            f"{rate:.1f} step/s ")
    sys.stdout.write("\r" + line)
    sys.stdout.flush()
    return len(line)


@functools.partial(jax.jit, static_argnums=0)
def generate_step(stream, params, token, state, key, i, temperature):
    """The model's next character after `token` [1], drawn with ``fold_in(key, i)``.

    The LSTM runs one step ([1, 1, E]) from `state` through `jaxrnn.Stream`, which returns
    the state to carry to the next call. Every call has the same shapes and dtypes (the step
    number and the temperature are traced arguments), so this compiles once for any prompt,
    sample length and temperature.
    """
    x = params["embed"][token][:, None, :]  # [1, 1, E]
    y, state = stream(params["lstm"], x, state)  # [1, 1, H]
    logits = y[:, 0] @ params["head"]["w"] + params["head"]["b"][None, :]  # [1, V]
    nxt = jax.random.categorical(jax.random.fold_in(key, i), logits / temperature)
    return nxt.astype(jnp.int32), state


def sample(lstm, params, prompt_ids, n: int, key, temperature: float) -> list[int]:
    """Feeds the prompt one character at a time, then draws `n` characters, each fed back
    in: one compiled `generate_step`, the LSTM's state carried between calls."""
    stream = jr.Stream(lstm)
    state = stream.reset_state(1)
    ids, nxt = [], None
    for i, c in enumerate(prompt_ids):
        nxt, state = generate_step(stream, params, jnp.array([c], jnp.int32), state, key, i,
                                   temperature)
    for i in range(n):
        ids.append(int(nxt[0]))
        if i + 1 < n:
            nxt, state = generate_step(stream, params, nxt, state, key, len(prompt_ids) + i,
                                       temperature)
    return ids


def save_plot(train: list[float], window: int, val: list[tuple[int, float]], uniform: float,
              path: str) -> str | None:
    """Plots the per-step and the averaged training loss, the validation loss and the
    uniform-guess level; returns the path, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no loss curve (pip install matplotlib).")
        return None
    steps = np.arange(1, len(train) + 1)
    cumsum = np.cumsum(np.concatenate([[0.0], train]))
    lo = np.maximum(steps - window, 0)
    averaged = (cumsum[steps] - cumsum[lo]) / (steps - lo)  # mean of the last `window` steps
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, train, color="tab:blue", alpha=0.25, lw=0.8, label="train loss, each step")
    ax.plot(steps, averaged, color="tab:blue", lw=2,
            label=f"train loss, mean of the last {window} steps")
    if val:
        v_steps, v_losses = zip(*val)
        ax.plot(v_steps, v_losses, "o-", color="tab:orange", lw=2, ms=4,
                label="validation loss (held-out 5% of the text)")
    ax.axhline(uniform, color="gray", ls="--", lw=1,
               label=f"uniform guess, log({len(CHARS)}) = {uniform:.2f}")
    low = min(min(train), *(v for _, v in val)) if val else min(train)
    bottom, top = max(0.0, low - 0.2), uniform + 0.4  # the first steps' spikes off the top
    ax.set_ylim(bottom, top)
    ax.set_xlim(0, len(train))
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy (nats/char)")
    ax.set_title("char_lm: LSTM on the standard library's docstrings")
    ax.grid(alpha=0.3)
    # Below the uniform-guess line, in the space the falling curves leave free.
    ax.legend(loc="upper right", bbox_to_anchor=(1.0, (uniform - bottom) / (top - bottom) - 0.03),
              fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--max-chars", type=int, default=0, help="truncate the corpus (0: all)")
    p.add_argument("--log-every", type=int, default=100,
                   help="print the losses and measure the validation loss every N steps "
                        "(0: only before and after training)")
    p.add_argument("--avg-steps", type=int, default=100,
                   help="the printed train loss is the mean over this many last steps")
    p.add_argument("--val-windows", type=int, default=128,
                   help="held-out windows of --seq-len characters in each validation")
    p.add_argument("--sample-chars", type=int, default=300)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--prompt", default="Return the ")
    p.add_argument("--out-dir", default="outputs", help="where the PNG and checkpoint go")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in ("steps", "batch_size", "seq_len", "units", "embed", "avg_steps",
                 "val_windows"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    text = load_corpus(args.max_chars or None)
    char_to_id = {c: i for i, c in enumerate(CHARS)}
    data = np.array([char_to_id[c] for c in text], np.int32)
    split = int(0.95 * len(data))
    train, val = data[:split], data[split:]
    print(f"corpus: {len(text):,} characters of stdlib documentation "
          f"({len(MODULES)} modules), vocabulary {len(CHARS)}")

    lstm, init = make_model(len(CHARS), args.embed, args.units)
    params = jax.jit(init)(jax.random.PRNGKey(args.seed))  # one compile, not one per op
    n_params = sum(a.size for a in jax.tree.leaves(params))
    print(f"model: embedding {args.embed} -> LSTM {args.units} -> {len(CHARS)} logits, "
          f"{n_params:,} params")
    schedule = optax.cosine_decay_schedule(args.lr, args.steps, alpha=0.1)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    opt_state = opt.init(params)

    def loss_fn(params, inputs, targets):
        logits, _ = logits_fn(lstm, params, inputs)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    @jax.jit
    def train_step(params, opt_state, inputs, targets):
        loss, grads = jax.value_and_grad(loss_fn)(params, inputs, targets)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    val_inputs, val_targets = validation_windows(val, args.val_windows, args.seq_len)
    eval_loss = jax.jit(loss_fn)

    def validate(params):
        return float(eval_loss(params, val_inputs, val_targets))

    uniform = math.log(len(CHARS))
    window = args.avg_steps
    print(f"train loss: mean cross-entropy of the last {window} training steps; validation "
          f"loss: on {args.val_windows} held-out windows of {args.seq_len} characters; "
          f"nats/char, uniform guessing {uniform:.3f}")
    val_losses = [(0, validate(params))]
    print(f"step {0:5d}  validation loss {val_losses[0][1]:.3f}")

    rng = np.random.default_rng(args.seed)
    stream = batches(train, args.batch_size, args.seq_len, rng)
    losses, recent = [], deque(maxlen=window)
    start = time.perf_counter()
    width = 0
    for step in range(1, args.steps + 1):
        inputs, targets = next(stream)
        params, opt_state, loss = train_step(params, opt_state, inputs, targets)
        losses.append(float(loss))
        recent.append(losses[-1])
        train_loss = float(np.mean(recent))
        width = progress(step, args.steps, train_loss, len(recent),
                         step / (time.perf_counter() - start))
        if args.log_every and step % args.log_every == 0 and step < args.steps:
            val_losses.append((step, validate(params)))
            line = (f"step {step:5d}  train loss {train_loss:.3f}  "
                    f"validation loss {val_losses[-1][1]:.3f}")
            sys.stdout.write("\r" + line.ljust(width) + "\n")
    sys.stdout.write("\n")
    seconds = time.perf_counter() - start
    val_losses.append((args.steps, validate(params)))
    val_loss = val_losses[-1][1]
    print(f"trained {args.steps} steps in {seconds:.0f}s: train loss {train_loss:.3f} (mean of "
          f"the last {len(recent)} steps), validation loss {val_losses[0][1]:.3f} -> "
          f"{val_loss:.3f} nats/char (uniform guessing: {uniform:.3f})")

    os.makedirs(args.out_dir, exist_ok=True)
    plot = save_plot(losses, window, val_losses, uniform,
                     os.path.join(args.out_dir, "char_lm_loss.png"))
    if plot:
        print(f"loss curve: {plot}")
    checkpoint = os.path.join(args.out_dir, "char_lm.safetensors")
    try:
        jr.save(checkpoint, lstm, params["lstm"])  # the LSTM layer with its config, for jr.load
        print(f"LSTM checkpoint: {checkpoint}")
    except ImportError:
        checkpoint = None
        print("safetensors is not installed: no checkpoint (pip install safetensors).")

    prompt = "".join(c if c in char_to_id else " " for c in args.prompt) or " "
    ids = sample(lstm, params, [char_to_id[c] for c in prompt], args.sample_chars,
                 jax.random.PRNGKey(args.seed + 1), args.temperature)
    text_out = prompt + "".join(CHARS[i] for i in ids)
    print(f"\n--- sample (temperature {args.temperature}) ---\n{text_out}\n---")
    return {"steps": args.steps, "first_loss": losses[0], "train_loss": train_loss,
            "train_losses": losses, "val_loss": val_loss, "val_losses": val_losses,
            "seconds": seconds, "sample": text_out, "plot": plot,
            "checkpoint": checkpoint, "corpus_chars": len(text)}


if __name__ == "__main__":
    main()
