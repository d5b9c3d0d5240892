"""Benchmark: parallel-in-time cells against their own sequential mode and against the LSTM.

Times one training step, ``jax.jit(jax.value_and_grad(loss))`` with ``loss = mean(y**2)``
over the whole output sequence, for each engine and sequence length T (the steps of one T
called in turn, as in a training loop where other programs run between steps;
``--no-alternate`` times each alone), and reports the median wall time, the speedup of the
parallel mode over the sequential one, and the step's peak memory as XLA's compiled ``memory_analysis()`` estimates it (arguments + outputs +
temporaries). Results go to ``outputs/bench/bench_parallel.json`` (untracked: git ignores
``outputs/``); ``--out benchmarks/results/bench_parallel.json`` replaces the committed ones.

The cells: ``MinGRUCell``/``MinLSTMCell`` (log-space, the default) and ``LRUCell`` in
``parallel=True`` mode with the backend's default solver ("parallel"; on CPU the
"sequential" solver, a `lax.scan` over precomputed coefficients), with the
`jax.lax.associative_scan` solver ("parallel-assoc", the default on GPU/TPU) and in
``parallel=False`` mode (the cell stepped by `lax.scan`); and ``jaxrnn.LSTM`` (scan path).
The LRU maps H features to H (its ``D * x`` skip), so it is fed F = H inputs.

Run:
    python benchmarks/bench_parallel.py                       # T = 256 .. 16384, B=8, F=32, H=64
    python benchmarks/bench_parallel.py --seq-lens 256 1024 --cells mingru lstm
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxrnn as jr
from jaxrnn import LRUCell, MinGRUCell, MinLSTMCell, _parallel

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_rnn, beside this file
import bench_rnn as br  # noqa: E402

# Untracked by default: outputs/ is in .gitignore. benchmarks/results/ holds committed runs.
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "outputs" / "bench" / "bench_parallel.json"

CELLS = {
    "mingru": lambda h: MinGRUCell(h),
    "minlstm": lambda h: MinLSTMCell(h),
    "lru": lambda h: LRUCell(h),
    "lstm": lambda h: jr.LSTMCell(h),
}


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq-lens", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    p.add_argument("--min-reps", type=int, default=3, help="timed calls per case, at least")
    p.add_argument("--max-reps", type=int, default=15, help="timed calls per case, at most")
    p.add_argument("--budget-s", type=float, default=1.0,
                   help="stop repeating a case after this many seconds (min-reps first)")
    p.add_argument("--max-seq-t", type=int, default=16384,
                   help="skip sequential/LSTM runs above this T (they are T times a step)")
    p.add_argument("--associative", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the parallel mode with the associative_scan solver "
                        "(the default solver off CPU)")
    p.add_argument("--alternate", action=argparse.BooleanOptionalAction, default=True,
                   help="time the steps of one T alternating, one call of each in turn, as "
                        "in a training loop where other programs run between steps "
                        "(default); --no-alternate times each alone")
    p.add_argument("--out", type=str, default=str(DEFAULT_OUT),
                   help="JSON output path (default: outputs/bench/bench_parallel.json, "
                        "untracked; '' to skip writing)")
    return p.parse_args(argv)


def _step_fn(layer):
    def loss(params, x):
        y = layer(params, x)
        return jnp.mean(y * y)

    return jax.jit(jax.value_and_grad(loss))


def build_case(cell, parallel, b, t, f, solver=None) -> tuple[dict, object]:
    """Compiles one training step; returns its stats so far and a call that runs it once."""
    layer = jr.RNN(cell, return_sequences=True, parallel=parallel, solver=solver)
    f_in = cell.units if isinstance(cell, LRUCell) else f
    key = jax.random.key(0)
    params = layer.init(key, (b, t, f_in))
    x = jax.random.normal(jax.random.key(1), (b, t, f_in))
    fn = _step_fn(layer)
    t0 = time.perf_counter()
    compiled = fn.lower(params, x).compile()
    compile_s = time.perf_counter() - t0

    def call():
        jax.block_until_ready(compiled(params, x))

    call()  # warm-up
    return {"compile_s": compile_s, "peak_mb": br.peak_mb(compiled)}, call


def time_cases(calls: dict, args) -> dict:
    """Times the compiled steps of `calls` ``{name: call}``: alternating (one call of each in
    turn, as in a training loop where other programs run between steps) unless
    ``args.alternate`` is off, then each alone. Returns ``{name: (median_ms, reps)}``."""
    times: dict = {name: [] for name in calls}

    def timed(name):
        t0 = time.perf_counter()
        calls[name]()
        times[name].append(time.perf_counter() - t0)

    if args.alternate:
        start = time.perf_counter()
        while True:
            for name in calls:
                timed(name)
            n = len(times[next(iter(calls))])
            if n >= args.max_reps or (n >= args.min_reps
                                      and time.perf_counter() - start >= args.budget_s
                                      * len(calls)):
                break
    else:
        for name in calls:
            start = time.perf_counter()
            while len(times[name]) < args.max_reps and (
                    len(times[name]) < args.min_reps
                    or time.perf_counter() - start < args.budget_s):
                timed(name)
    return {name: (1e3 * statistics.median(ts), len(ts)) for name, ts in times.items()}


def _fmt(v, spec, suffix=""):
    if v is None:  # right-aligned like the numbers, suffix included
        return "-".rjust(len(format(0.0, spec)) + len(suffix))
    return format(v, spec) + suffix


def main(argv=None) -> dict:
    """Runs the benchmark; returns (and writes) the results as a dict."""
    args = _parse(argv)
    b, f, h = args.batch, args.features, args.units
    rows = []
    for t in args.seq_lens:
        built, calls = {}, {}
        for name in args.cells:
            cell = CELLS[name](h)
            modes = ["sequential"] if name == "lstm" else ["parallel", "sequential"]
            if name != "lstm" and args.associative:
                modes.insert(1, "parallel-assoc")
            for mode in modes:
                parallel = mode != "sequential"
                if not parallel and t > args.max_seq_t:
                    continue
                solver = "associative" if mode == "parallel-assoc" else None
                built[name, mode], calls[name, mode] = build_case(cell, parallel, b, t, f,
                                                                  solver)
        for (name, mode), (median_ms, reps) in time_cases(calls, args).items():
            r = {**built[name, mode], "median_ms": median_ms, "reps": reps,
                 "cell": name, "mode": mode, "T": t}
            rows.append(r)
            print(f"  {name:8s} {mode:14s} T={t:6d}: {r['median_ms']:9.2f} ms "
                  f"(x{r['reps']}, compile {r['compile_s']:.1f} s, "
                  f"peak {_fmt(r['peak_mb'], '.1f')} MB)", flush=True)

    def ms(cell, mode, t):
        for r in rows:
            if (r["cell"], r["mode"], r["T"]) == (cell, mode, t):
                return r["median_ms"]
        return None

    summary = []
    print(f"\nTraining step, B={b}, F={f}, H={h}, median ms; speedup = sequential / parallel "
          "and vs LSTM = LSTM / parallel: above 1, the parallel mode is faster")
    print(f"{'cell':8s} {'T':>6s} {'parallel':>10s} {'par-assoc':>10s} {'sequential':>11s} "
          f"{'speedup':>8s} {'LSTM':>9s} {'vs LSTM':>8s}")
    for name in [c for c in args.cells if c != "lstm"]:
        for t in args.seq_lens:
            par, seq, lstm = ms(name, "parallel", t), ms(name, "sequential", t), \
                ms("lstm", "sequential", t)
            assoc = ms(name, "parallel-assoc", t)
            s = {"cell": name, "T": t, "parallel_ms": par, "parallel_assoc_ms": assoc,
                 "sequential_ms": seq,
                 "lstm_ms": lstm,
                 "speedup": None if not (par and seq) else seq / par,
                 "speedup_vs_lstm": None if not (par and lstm) else lstm / par}
            summary.append(s)
            print(f"{name:8s} {t:6d} {_fmt(par, '10.2f')} {_fmt(assoc, '10.2f')} "
                  f"{_fmt(seq, '11.2f')} "
                  f"{_fmt(s['speedup'], '7.1f', 'x')} {_fmt(lstm, '9.2f')} "
                  f"{_fmt(s['speedup_vs_lstm'], '7.1f', 'x')}")
    result = {
        "benchmark": "bench_parallel",
        "config": {"batch": b, "features": f, "units": h, "seq_lens": args.seq_lens,
                   "alternate": args.alternate},
        "device": str(jax.devices()[0]),
        "default_solver": _parallel.default_solver(),
        "jax": jax.__version__,
        "platform": platform.platform(),
        "rows": rows,
        "summary": summary,
    }
    if args.out:
        br.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
