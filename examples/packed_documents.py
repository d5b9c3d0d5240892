"""Packed rows with `reset=` against padded rows: the same character model, the same text.

The documents are the docstrings of a fixed list of standard-library modules (no download).
A character-level LSTM language model is trained three ways, for the same number of steps
at the same batch shape [B, L]:

* **padded**: one document per row, cut to L characters, the rest of the row padded and
  masked (``mask=``). Every step of the RNN runs, padding included, but only the real
  characters train the model.
* **packed + reset**: the documents laid end to end and cut into rows of L characters;
  ``reset=`` marks each document's first character, so no state flows from one document
  into the next. Every step is a real character.
* **packed, no reset**: the same rows without ``reset=``: each document starts from the
  previous one's final state, which it never sees at evaluation.

In every run the loss counts only predictions within a document (never the first character
of the next one). Validation is the mean cross-entropy per character on whole held-out
documents, each run on its own from the zero state, the way the model will be used. (Padded
rows cut every document at L characters; packing trains on all of each document.) The script prints,
for each run, the real characters trained on per second and the validation loss.

    python examples/packed_documents.py        # ~1.5 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn as jr

MODULES = ("argparse", "calendar", "collections", "csv", "dataclasses", "datetime", "decimal",
           "difflib", "enum", "fractions", "functools", "heapq", "itertools", "json", "logging",
           "operator", "pathlib", "random", "re", "shutil", "statistics", "string", "textwrap",
           "typing", "unittest", "zipfile")
CHARS = "".join(chr(c) for c in range(32, 127)) + "\n"


def load_documents(min_chars: int = 16) -> list[str]:
    """Every public docstring of `MODULES` (one document each), printable ASCII only."""
    docs = []
    with warnings.catch_warnings():  # typing.io and friends warn when touched
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in MODULES:
            module = importlib.import_module(name)
            members = [getattr(module, a) for a in sorted(vars(module)) if not a.startswith("_")]
            for obj in [module] + members:
                if obj is not module and getattr(obj, "__module__", None) != module.__name__:
                    continue
                doc = inspect.getdoc(obj)
                if doc and len(doc) >= min_chars:
                    docs.append("".join(c if c in CHARS else " " for c in doc))
    return docs


_INDEX = np.zeros(128, np.int32)
_INDEX[[ord(c) for c in CHARS]] = np.arange(len(CHARS))


def encode(text: str) -> np.ndarray:
    """Character ids [N] (positions in `CHARS`)."""
    return _INDEX[np.frombuffer(text.encode("ascii"), np.uint8)]


def padded_rows(docs: list[np.ndarray], length: int):
    """One document per row: inputs [N, L], targets [N, L], mask [N, L] (real predictions)."""
    n = len(docs)
    x, y, m = (np.zeros((n, length), np.int32), np.zeros((n, length), np.int32),
               np.zeros((n, length), bool))
    for i, d in enumerate(docs):
        d = d[:length + 1]
        k = len(d) - 1
        x[i, :k], y[i, :k], m[i, :k] = d[:-1], d[1:], True
    return x, y, m


def packed_rows(docs: list[np.ndarray], length: int):
    """Documents end to end in rows of `length`: inputs, targets, loss weights (False where
    the target is another document's first character) and resets (a document's first
    character), each [N, L]."""
    stream = np.concatenate(docs)
    starts = np.zeros(len(stream), bool)
    starts[np.cumsum([0] + [len(d) for d in docs[:-1]])] = True
    n = (len(stream) - 1) // length
    cut = n * length
    x = stream[:cut].reshape(n, length)
    y = stream[1:cut + 1].reshape(n, length)
    loss_w = ~starts[1:cut + 1].reshape(n, length)
    reset = starts[:cut].reshape(n, length)
    return x, y, loss_w, reset


def make_model(vocab: int, embed: int, units: int):
    lstm = jr.LSTM(units, return_sequences=True)

    def init(key):
        k1, k2, k3 = jax.random.split(key, 3)
        return {"embed": jax.random.normal(k1, (vocab, embed)) * 0.1,
                "lstm": lstm.init(k2, (None, None, embed)),
                "w": jax.random.normal(k3, (units, vocab)) / math.sqrt(units),
                "b": jnp.zeros((vocab,))}

    def loss(params, x, y, weight, mask=None, reset=None):
        h = lstm(params["lstm"], params["embed"][x], mask=mask, reset=reset)
        logits = h @ params["w"] + params["b"][None, None, :]
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jnp.sum(nll * weight) / jnp.maximum(jnp.sum(weight), 1)

    return init, loss


def train(name, batches, init, loss, steps, lr, seed):
    """Trains on `batches(step) -> (x, y, weight, mask, reset)`; returns (params, stats)."""
    opt = optax.adam(lr)
    params = init(jax.random.key(seed))
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, x, y, w, mask, reset):
        value, grads = jax.value_and_grad(loss)(params, x, y, w, mask, reset)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    jax.block_until_ready(step(params, opt_state, *batches(0)))  # compile outside the clock
    chars, start = 0, time.perf_counter()
    for i in range(steps):
        x, y, w, mask, reset = batches(i)
        params, opt_state, value = step(params, opt_state, x, y, w, mask, reset)
        chars += int(w.sum())
    jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    return params, {"run": name, "train_loss": float(value), "chars_per_s": chars / seconds,
                    "chars": chars, "seconds": seconds}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--length", type=int, default=128, help="row length L")
    ap.add_argument("--units", type=int, default=128)
    ap.add_argument("--embed", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--max-docs", type=int, default=0, help="use only this many (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    docs = [encode(d) for d in load_documents()]
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(docs))
    docs = [docs[i] for i in order]
    if args.max_docs:
        docs = docs[:args.max_docs]
    n_val = max(1, len(docs) // 10)
    val, train_docs = docs[:n_val], docs[n_val:]
    print(f"{len(train_docs)} training documents ({sum(map(len, train_docs)):,} characters), "
          f"{n_val} held out; rows of {args.length} characters, batch {args.batch_size}")

    vocab = len(CHARS)
    init, loss = make_model(vocab, args.embed, args.units)
    b, length = args.batch_size, args.length
    px, py, pm = padded_rows(train_docs, length)
    kx, ky, kw, kr = packed_rows(train_docs, length)
    # Whole held-out documents, one per row from the zero state: what the model is for.
    vx, vy, vm = padded_rows(val, max(len(d) for d in val) - 1)
    print(f"padded rows: {len(px)} ({pm.mean():.0%} real); packed rows: {len(kx)}")

    def cycle(n, i):
        return np.arange(i * b, (i + 1) * b) % n

    def padded(i):
        j = cycle(len(px), i)
        return px[j], py[j], pm[j].astype(np.float32), pm[j], None

    def packed(reset):
        def batches(i):
            j = cycle(len(kx), i)
            return kx[j], ky[j], kw[j].astype(np.float32), None, (kr[j] if reset else None)
        return batches

    evaluate = jax.jit(lambda p: loss(p, vx, vy, vm.astype(np.float32), vm))
    results = []
    for name, batches in (("padded", padded), ("packed + reset", packed(True)),
                          ("packed, no reset", packed(False))):
        params, stats = train(name, batches, init, loss, args.steps, args.lr, args.seed)
        stats["val_loss"] = float(evaluate(params))
        results.append(stats)
        print(f"{name:>17}: {stats['chars_per_s']:9,.0f} chars/s  train loss "
              f"{stats['train_loss']:.3f}  validation loss {stats['val_loss']:.3f} nats/char "
              f"({stats['chars']:,} characters in {stats['seconds']:.1f} s)")
    print(f"uniform guessing: {math.log(vocab):.3f} nats/char")
    return results


if __name__ == "__main__":
    main()
