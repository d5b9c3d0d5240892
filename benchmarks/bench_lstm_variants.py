"""Benchmark: what the LSTM variants cost against the plain LSTM, at one shape.

The same training step, ``jit(value_and_grad)`` of ``mean(y**2)`` over every step's output,
and the same inference call, for:

- ``lstm``: `LSTMCell`, the default (fused) path, and ``lstm-scan``: the same on the generic
  scan (``fused=False``), the engine the variants run on;
- ``peephole``: `PeepholeLSTMCell`, ``layer_norm``: `LayerNormLSTMCell` (generic scan);
- ``proj``: `LSTMCell(proj_size=P)`, fused, and ``proj-scan``: the same with ``fused=False``.

Interleaved rounds in one process, so that drift on a shared machine hits every case alike.
Reported: median ms and the ratio to ``lstm`` (the fused plain LSTM; lower is better).
Results go to ``outputs/bench/bench_lstm_variants.json`` (untracked) unless ``--out`` says
otherwise.

    python benchmarks/bench_lstm_variants.py            # about a minute on 2 CPU cores
    python benchmarks/bench_lstm_variants.py --shape 8 256 32 128 --proj 64
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxrnn as jr

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_rnn, beside this file
import bench_rnn as br  # noqa: E402

DEFAULT_OUT = (Path(__file__).resolve().parent.parent / "outputs" / "bench" /
               "bench_lstm_variants.json")


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=4, default=[8, 256, 32, 128],
                   metavar=("B", "T", "F", "H"))
    p.add_argument("--proj", type=int, default=64, help="proj_size of the projected LSTM")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--out", type=str, default=str(DEFAULT_OUT),
                   help="JSON output path (default: outputs/bench/bench_lstm_variants.json, "
                        "untracked; '' to skip writing)")
    return p.parse_args(argv)


def _layers(h: int, proj: int) -> dict:
    return {
        "lstm": jr.RNN(jr.LSTMCell(h), return_sequences=True),
        "lstm-scan": jr.RNN(jr.LSTMCell(h), return_sequences=True, fused=False),
        "peephole": jr.RNN(jr.PeepholeLSTMCell(h), return_sequences=True),
        "layer_norm": jr.RNN(jr.LayerNormLSTMCell(h), return_sequences=True),
        "proj": jr.RNN(jr.LSTMCell(h, proj_size=proj), return_sequences=True),
        "proj-scan": jr.RNN(jr.LSTMCell(h, proj_size=proj), return_sequences=True, fused=False),
    }


def _calls(layer, shape) -> tuple:
    """The compiled training step and inference call of `layer`, ready to time."""
    b, t, f, _ = shape
    x = jax.random.normal(jax.random.key(0), (b, t, f))
    params = layer.init(jax.random.key(1), x.shape)
    train = jax.jit(jax.value_and_grad(lambda p, x: jnp.mean(layer(p, x) ** 2)))
    infer = jax.jit(layer)
    jax.block_until_ready(train(params, x))
    jax.block_until_ready(infer(params, x))
    return (lambda: jax.block_until_ready(train(params, x)),
            lambda: jax.block_until_ready(infer(params, x)))


def main(argv=None) -> dict:
    """Runs the benchmark; returns (and writes) the results as a dict."""
    args = _parse(argv)
    shape = tuple(args.shape)
    layers = _layers(shape[3], args.proj)
    calls = {}
    for name, layer in layers.items():
        train, infer = _calls(layer, shape)
        calls[f"{name} train"], calls[f"{name} infer"] = train, infer
    ms = br.alternating_medians(calls, args.rounds)
    print(f"B,T,F,H = {shape}, proj_size = {args.proj}; median ms, ratio to the fused LSTM "
          "(lower is better)")
    print(f"{'case':<12} {'train':>8} {'ratio':>6} {'infer':>8} {'ratio':>6}")
    rows = []
    for name in layers:
        row = {"case": name, "train_ms": ms[f"{name} train"], "infer_ms": ms[f"{name} infer"],
               "train_ratio": ms[f"{name} train"] / ms["lstm train"],
               "infer_ratio": ms[f"{name} infer"] / ms["lstm infer"]}
        rows.append(row)
        print(f"{name:<12} {row['train_ms']:8.2f} {row['train_ratio']:6.2f} "
              f"{row['infer_ms']:8.2f} {row['infer_ratio']:6.2f}")
    result = {"meta": {"jax": jax.__version__, "platform": platform.platform(),
                       "backend": jax.default_backend(), "shape": shape, "proj": args.proj,
                       "rounds": args.rounds},
              "rows": rows}
    if args.out:
        br.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
