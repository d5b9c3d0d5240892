"""Benchmark: what ``unroll`` does to the default layer's speed, shape by shape.

Each step of a scan costs the loop's own bookkeeping besides its work: on a GPU a few kernel
launches and a trip of the loop's condition to the host, whatever the step's size, so a long
sequence of small steps is mostly loop. ``unroll=k`` runs k steps per loop iteration. This
times the default layer (`jaxrnn.LSTM` / `jaxrnn.GRU`, fused) for each ``unroll`` with the
same training step and inference call as ``benchmarks/run.py``, in interleaved rounds in one
process, and reports median ms and the ratio to ``unroll=1`` (the default, ``unroll=False``;
below 1, unrolling is faster). Results never depend on ``unroll``; only speed and compile
time do.

    python benchmarks/bench_unroll.py                      # a few minutes on 2 CPU cores
    python benchmarks/bench_unroll.py --unrolls 1 8 32 --kinds lstm --modes infer
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_rnn, beside this file
import bench_rnn as br  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "outputs" / "bench" / "bench_unroll.json"
SHAPES = [(1, 2000, 8, 64), (32, 1000, 16, 64), (8, 256, 32, 128), (64, 128, 64, 256)]


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", type=br.parse_shape, nargs="+", default=SHAPES, metavar="B,T,F,H")
    p.add_argument("--kinds", default="lstm,gru", help="comma-separated: lstm,gru")
    p.add_argument("--modes", default="infer,train", help="comma-separated: train,infer")
    p.add_argument("--unrolls", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", type=str, default=str(DEFAULT_OUT),
                   help="JSON output path (default: outputs/bench/bench_unroll.json, "
                        "untracked; '' to skip writing)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = _parse(argv)
    if 1 not in args.unrolls:
        raise SystemExit("--unrolls must include 1, the default the ratios are taken against")
    info = br.machine_info()
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, backend {info['backend']} "
          f"{info['devices']}; jax {info['versions']['jax']}")
    print("median ms (compile s); ratio = unroll k / unroll 1: below 1, unrolling is faster")
    results = []
    for mode in args.modes.split(","):
        for kind in args.kinds.split(","):
            for shape in args.shapes:
                case = br.Case(kind, tuple(shape), mode)
                calls, compile_s = {}, {}
                for k in args.unrolls:
                    meta, calls[k] = br.jaxrnn_case(case, unroll=False if k == 1 else k)
                    compile_s[k] = meta["compile_s"]
                ms = br.alternating_medians(calls, args.rounds)
                row = {"label": case.label(), "median_ms": {str(k): ms[k] for k in ms},
                       "compile_s": {str(k): compile_s[k] for k in compile_s},
                       "ratio": {str(k): ms[k] / ms[1] for k in ms}}
                results.append(row)
                print(f"{case.label():30s} " + "  ".join(
                    f"u{k} {ms[k]:7.2f} ({compile_s[k]:.1f}) x{ms[k] / ms[1]:.2f}" for k in ms),
                    flush=True)
    payload = {"machine": info, "argv": sys.argv[1:] if argv is None else list(argv),
               "rounds": args.rounds, "results": results}
    if args.out:
        br.write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
