"""Benchmark: onnxruntime against ``jax.jit`` for inference of an exported LSTM or GRU.

The layer (``return_sequences=True``, its default fused path) is exported through jax2onnx
twice -- with a symbolic batch and time axis, as the Deploying guide does, and at the case's
fixed shape -- and each model runs in an onnxruntime CPU session with its default options,
beside the same forward pass under ``jax.jit`` (params as arguments, as in bench_rnn.py).
All of them are timed in interleaved rounds in one process, so that drift of a shared
machine hits them alike, after checking that their outputs agree. Reported: median ms per
call and the ratio onnxruntime / jax.jit (below 1: onnxruntime is faster), plus the export
and compile times. onnxruntime's worker threads do not spin between runs here (they would
take the cores from XLA's next call).

Results go to ``outputs/bench/bench_onnx.json`` (untracked: git ignores ``outputs/``)
unless ``--out`` says otherwise. Needs the onnx extra (``pip install -e ".[onnx]"``).

    python benchmarks/bench_onnx.py                 # LSTM and GRU at three shapes
    python benchmarks/bench_onnx.py --quick         # one shape, few rounds
    python benchmarks/bench_onnx.py --shapes 1,500,64,256 --kinds gru
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

# Untracked by default: outputs/ is in .gitignore. benchmarks/results/ holds committed runs.
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "outputs" / "bench" / "bench_onnx.json"
# (B, T, F, H): two shapes of bench_rnn.py's grid, and one sequence through a wider layer
# (serving, sampling).
SHAPES = [(8, 256, 32, 128), (64, 128, 64, 256), (1, 500, 64, 256)]
IMPLS = ("jax-jit", "onnxruntime", "onnxruntime-static")
RATIO_NOTE = "ratio = onnxruntime / jax-jit, in median ms: below 1, onnxruntime is faster"


def _shape(text: str) -> tuple[int, int, int, int]:
    parts = tuple(int(p) for p in text.split(","))
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"a shape is B,T,F,H; got {text!r}")
    return parts


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="the first shape only, at most 10 rounds")
    p.add_argument("--shapes", type=_shape, nargs="+", metavar="B,T,F,H", default=SHAPES)
    p.add_argument("--kinds", default="lstm,gru", help="comma-separated: lstm,gru")
    p.add_argument("--rounds", type=int, default=50, help="timing rounds per case, at most")
    p.add_argument("--budget", type=float, default=10.0,
                   help="seconds of timing per case before rounds stop early (3 rounds first)")
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help="JSON output path (default: outputs/bench/bench_onnx.json, untracked)")
    return p.parse_args(argv)


def build(kind: str, shape: tuple[int, int, int, int]) -> tuple[dict, dict]:
    """The calls to time for one case, ``{impl: call()}``, and what building them took."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import onnxruntime as ort
    from jax2onnx import to_onnx

    import jaxrnn as jr

    b, t, f, h = shape
    layer = (jr.LSTM if kind == "lstm" else jr.GRU)(h, return_sequences=True)
    params = layer.init(jax.random.key(0), (b, t, f))
    x = np.random.default_rng(0).normal(size=shape[:3]).astype(np.float32)
    info: dict = {}

    forward = jax.jit(layer)
    x_dev = jnp.asarray(x)
    start = time.perf_counter()
    want = np.asarray(jax.block_until_ready(forward(params, x_dev)))
    info["jax-jit"] = {"compile_s": time.perf_counter() - start}
    calls = {"jax-jit": lambda: jax.block_until_ready(forward(params, x_dev))}

    def fn(x):  # the params are baked into the model as constants
        return layer(params, x)

    sym_b, sym_t = jax.export.symbolic_shape("B, T")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Interleaved with XLA in one process: keep onnxruntime's idle workers from spinning on
    # the cores after each run, which would steal them from the next timed call.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for name, spec_shape in (("onnxruntime", (sym_b, sym_t, f)), ("onnxruntime-static", shape[:3])):
        start = time.perf_counter()
        model = to_onnx(fn, [jax.ShapeDtypeStruct(spec_shape, jnp.float32)])
        export_s = time.perf_counter() - start
        session = ort.InferenceSession(model.SerializeToString(), options)
        feed = {session.get_inputs()[0].name: x}
        (got,) = session.run(None, feed)
        err = float(np.max(np.abs(got - want)))
        if not err <= 1e-4:
            raise AssertionError(f"{name} differs from jax.jit by {err} at {kind} {shape}")
        info[name] = {"export_s": export_s, "max_abs_diff": err}
        calls[name] = lambda session=session, feed=feed: session.run(None, feed)
    return calls, info


def time_case(kind: str, shape, rounds: int, budget_s: float) -> dict:
    """Median ms of each implementation on one case, the calls alternating round by round."""
    calls, info = build(kind, shape)
    for call in calls.values():  # warm up: first runs allocate
        call()
        call()
    times: dict = {name: [] for name in calls}
    start = time.perf_counter()
    for r in range(rounds):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
        if r >= 2 and time.perf_counter() - start > budget_s:
            break
    impls = {name: {**info[name], "median_ms": 1e3 * statistics.median(ts),
                    "min_ms": 1e3 * min(ts), "rounds": len(ts)} for name, ts in times.items()}
    jit_ms = impls["jax-jit"]["median_ms"]
    return {"case": f"{kind} infer " + ",".join(map(str, shape)), "kind": kind,
            "shape": list(shape), "impls": impls,
            "ratio": impls["onnxruntime"]["median_ms"] / jit_ms,
            "ratio_static": impls["onnxruntime-static"]["median_ms"] / jit_ms}


def table(rows: list[dict]) -> str:
    """A Markdown table of median ms per implementation and the ratios."""
    lines = ["| case | " + " | ".join(f"{n} ms" for n in IMPLS)
             + " | ratio (< 1: onnxruntime faster) | ratio, static shape |",
             "|---" * (len(IMPLS) + 3) + "|"]
    for r in rows:
        ms = " | ".join(f"{r['impls'][n]['median_ms']:.2f}" for n in IMPLS)
        lines.append(f"| {r['case']} | {ms} | {r['ratio']:.2f} | {r['ratio_static']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = _parse(argv)
    from importlib.metadata import version

    import jax
    import onnxruntime as ort

    import jaxrnn as jr

    shapes = args.shapes[:1] if args.quick else args.shapes
    rounds = min(args.rounds, 10) if args.quick else args.rounds
    rows = []
    for shape in shapes:
        for kind in args.kinds.split(","):
            row = time_case(kind, shape, rounds, args.budget)
            rows.append(row)
            print(f"{row['case']:<28} " + "  ".join(
                f"{n} {row['impls'][n]['median_ms']:8.2f} ms" for n in IMPLS)
                + f"  ratio {row['ratio']:.2f} (static {row['ratio_static']:.2f})", flush=True)
    print()
    print(table(rows))
    print(RATIO_NOTE)
    meta = {"nproc": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
            "backend": jax.default_backend(),
            "versions": {"python": platform.python_version(), "jax": jax.__version__,
                         "jaxrnn": jr.__version__, "jax2onnx": version("jax2onnx"),
                         "onnxruntime": ort.__version__},
            "ort_providers": ort.get_available_providers(), "note": RATIO_NOTE}
    result = {"meta": meta, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
