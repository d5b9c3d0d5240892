"""Benchmark: what ``reset=`` costs a training step, on the fused path and the parallel cells.

For each case the same training step, ``jit(value_and_grad)`` of ``mean(y**2)`` over every
step's output, is timed with and without ``reset=`` (each step of each sample starts a new
segment with probability --rate), in interleaved rounds in one process so that drift on a
shared machine hits both alike. Reported: median ms and the ratio with/without (lower is
better; 1.00 means resets are free). For the parallel cells it also times their sequential
mode (``parallel=False``) with and without resets, so that the table shows whether the
parallel mode's speedup survives resets.

Results go to ``outputs/bench/bench_reset.json`` (untracked) unless ``--out`` says otherwise.

    python benchmarks/bench_reset.py                  # a few minutes on 2 CPU cores
    python benchmarks/bench_reset.py --quick          # one small shape of each kind
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn as jr
from jaxrnn import LRUCell, MinGRUCell, MinLSTMCell

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_rnn, beside this file
import bench_rnn as br  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "outputs" / "bench" / "bench_reset.json"
FUSED = [("lstm", (8, 256, 32, 128)), ("lstm", (64, 128, 64, 256)), ("lstm", (32, 1000, 16, 64)),
         ("gru", (8, 256, 32, 128)), ("gru", (64, 128, 64, 256)), ("gru", (32, 1000, 16, 64))]
PARALLEL = [("mingru", (8, 4096, 32, 64)), ("minlstm", (8, 4096, 32, 64)),
            ("lru", (8, 4096, 64, 64))]
CELLS = {"lstm": jr.LSTMCell, "gru": jr.GRUCell, "mingru": MinGRUCell, "minlstm": MinLSTMCell,
         "lru": LRUCell}


def _step(layer, shape, reset):
    b, t, f, _ = shape
    x = jax.random.normal(jax.random.key(0), (b, t, f))
    params = layer.init(jax.random.key(1), x.shape)
    fn = jax.jit(jax.value_and_grad(lambda p, x, r: jnp.mean(layer(p, x, reset=r) ** 2)))
    jax.block_until_ready(fn(params, x, reset))

    def call():
        jax.block_until_ready(fn(params, x, reset))

    return call


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=0.02, help="P(a step starts a segment)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="one small shape of each kind")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    fused = FUSED[:1] + FUSED[3:4] if args.quick else FUSED
    parallel = [(k, (8, 512, 32, 64) if k != "lru" else (8, 512, 64, 64)) for k, _ in
                PARALLEL[:1]] if args.quick else PARALLEL
    rng = np.random.default_rng(0)
    rows = []
    print(f"{'case':<28} {'no reset':>10} {'reset':>10} {'ratio':>7}  (ms, lower is better)")
    for kind, shape in fused:
        b, t, _, h = shape
        reset = rng.random((b, t)) < args.rate
        layer = jr.RNN(CELLS[kind](h), return_sequences=True)
        m = br.alternating_medians({"none": _step(layer, shape, None), "reset": _step(layer, shape, reset)},
                  args.rounds)
        rows.append({"case": f"{kind} train {shape}", "engine": "fused", "none_ms": m["none"],
                     "reset_ms": m["reset"], "ratio": m["reset"] / m["none"]})
        r = rows[-1]
        print(f"{r['case']:<28} {r['none_ms']:10.2f} {r['reset_ms']:10.2f} {r['ratio']:7.3f}")
    for kind, shape in parallel:
        b, t, _, h = shape
        reset = rng.random((b, t)) < args.rate
        par = jr.RNN(CELLS[kind](h), return_sequences=True)
        seq = jr.RNN(CELLS[kind](h), return_sequences=True, parallel=False)
        m = br.alternating_medians({"par": _step(par, shape, None), "par_r": _step(par, shape, reset),
                   "seq": _step(seq, shape, None), "seq_r": _step(seq, shape, reset)},
                  args.rounds)
        rows.append({"case": f"{kind} train {shape}", "engine": "parallel",
                     "none_ms": m["par"], "reset_ms": m["par_r"], "ratio": m["par_r"] / m["par"],
                     "sequential_none_ms": m["seq"], "sequential_reset_ms": m["seq_r"],
                     "speedup_none": m["seq"] / m["par"], "speedup_reset": m["seq_r"] / m["par_r"]})
        r = rows[-1]
        print(f"{r['case']:<28} {r['none_ms']:10.2f} {r['reset_ms']:10.2f} {r['ratio']:7.3f}  "
              f"speedup over sequential: {r['speedup_none']:.2f}x without, "
              f"{r['speedup_reset']:.2f}x with resets")
    meta = {"jax": jax.__version__, "cpu": platform.processor() or platform.machine(),
            "backend": jax.default_backend(), "rate": args.rate, "rounds": args.rounds}
    br.write_json(args.out, {"meta": meta, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
