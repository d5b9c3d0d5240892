"""Runs the side-by-side RNN benchmark: ``python benchmarks/run.py [--quick]``.

Prints a table of median milliseconds per implementation, the ratio jaxrnn / best rival
(below 1: jaxrnn is faster; jaxrnn's own generic scan, ``jaxrnn-scan``, is shown as a
baseline, not a rival), compile times and achieved GFLOP/s against a measured matmul roof;
writes ``results.json``, ``table.md`` and ``results.png`` to ``--out``: by default
``outputs/bench/`` (git ignores ``outputs/``), so that a run never overwrites the committed
results in ``benchmarks/results/``; pass ``--out benchmarks/results`` to replace them on
purpose. Rivals that are not installed are skipped with a note. If
``benchmarks/bench_parallel.py`` exists, its ``main(argv)`` runs afterwards and writes its
JSON to the same folder.

Examples:
  python benchmarks/run.py --quick
  python benchmarks/run.py --shapes 8,256,32,128 64,128,64,256 --kinds lstm --modes train
  python benchmarks/run.py --out benchmarks/results     # refresh the committed results
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Untracked by default: outputs/ is in .gitignore. benchmarks/results/ holds committed runs.
DEFAULT_OUT = HERE.parent / "outputs" / "bench"
RATIO_NOTE = "ratio = {ours} / best rival, in median ms: below 1, {ours} is faster"
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # run from a checkout without installing jaxrnn

import bench_rnn as br  # noqa: E402


def _shape(text: str) -> tuple[int, int, int, int]:
    parts = tuple(int(p) for p in text.split(","))
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"a shape is B,T,F,H; got {text!r}")
    return parts


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="two shapes, LSTM and GRU training steps only, few rounds (< 2 min)")
    p.add_argument("--shapes", type=_shape, nargs="+", metavar="B,T,F,H",
                   help="shapes to run (default: the grid plus the tiny-output shape)")
    p.add_argument("--kinds", default="lstm,gru", help="comma-separated: lstm,gru")
    p.add_argument("--modes", default=None, help="comma-separated: train,infer")
    p.add_argument("--impls", default=",".join(br.IMPLEMENTATIONS),
                   help="comma-separated implementations")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds per case")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timing per case before rounds stop early")
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help="output folder (default: outputs/bench, untracked; "
                        "'benchmarks/results' replaces the committed results)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--parallel-args", default=None,
                   help="arguments for benchmarks/bench_parallel.py's main (a quoted string); "
                        "default: its own defaults (--quick: two short sequence lengths)")
    p.add_argument("--no-parallel", action="store_true",
                   help="do not run benchmarks/bench_parallel.py")
    return p.parse_args(argv)


def _fmt(x, spec="7.1f"):
    return format(x, spec) if isinstance(x, (int, float)) else f"{x:>7}"


def table(results: list[dict], impls: list[str], roof: float) -> str:
    """A Markdown table: median ms per implementation, ratio, GFLOP/s and roof fraction."""
    shown = [n for n in impls if any("median_ms" in r["impls"].get(n, {}) for r in results)]
    head = ["case"] + shown + [f"ratio (best rival; < 1: {br.OURS} faster)",
                               f"{br.OURS} GFLOP/s (% roof)",
                               f"{br.OURS} compile s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = [r["label"]]
        for n in shown:
            info = r["impls"].get(n, {})
            row.append(f"{info['median_ms']:.1f}" if "median_ms" in info else "skip")
        ours = r["impls"].get(br.OURS, {})
        ratio = r.get("ratio")
        row.append(f"{ratio:.2f} ({r['best_rival']})" if ratio is not None else "-")
        if "gflops" in ours:
            row.append(f"{ours['gflops']:.1f} ({100 * ours['gflops'] / roof:.0f}%)")
            row.append(f"{ours['compile_s']:.2f}")
        else:
            row += ["-", "-"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["label"] for r in results]
    impls = [n for n in br.IMPLEMENTATIONS
             if any("median_ms" in r["impls"].get(n, {}) for r in results)]
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(labels) + 3), 5))
    width = 0.8 / max(1, len(impls))
    for k, name in enumerate(impls):
        ys = []
        for r in results:
            ours = r["impls"].get(br.OURS, {}).get("median_ms")
            mine = r["impls"].get(name, {}).get("median_ms")
            ys.append(mine / ours if ours and mine else float("nan"))
        ax.bar([i + k * width for i in range(len(labels))], ys, width, label=name)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel(f"time / {br.OURS} time (higher = slower than {br.OURS})")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))])
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    kinds = args.kinds.split(",")
    if args.quick:
        shapes = args.shapes or [br.GRID[0], br.TINY]
        modes = (args.modes or "train").split(",")
        rounds, budget = args.rounds or 5, args.budget or 2.0
    else:
        shapes = args.shapes or [*br.GRID, br.TINY]
        modes = (args.modes or "train,infer").split(",")
        rounds, budget = args.rounds or 9, args.budget or 6.0
    impls = [n for n in args.impls.split(",") if n]
    unknown = sorted(set(impls) - set(br.IMPLEMENTATIONS))
    if unknown:
        raise SystemExit(f"unknown implementations {unknown}; known: {list(br.IMPLEMENTATIONS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    info = br.machine_info()
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, backend {info['backend']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    t_start = time.perf_counter()
    roofs = [br.matmul_roof()]
    print(f"matmul roof: {roofs[0]:.1f} GFLOP/s (float32 1536^3 in JAX, best of 5)")

    print(RATIO_NOTE.format(ours=br.OURS))
    results = []
    for mode in modes:
        for kind in kinds:
            for shape in shapes:
                case = br.Case(kind, tuple(shape), mode)
                r = br.run_case(case, impls, rounds, budget)
                results.append(r)
                cells = ", ".join(f"{n} {i['median_ms']:.1f}" for n, i in r["impls"].items()
                                  if "median_ms" in i)
                ratio = f" -> ratio {r['ratio']:.2f} vs {r['best_rival']}" if "ratio" in r else ""
                print(f"{case.label():32s} {cells}{ratio}", flush=True)
    roofs.append(br.matmul_roof())
    roof = max(roofs)
    skipped = sorted({f"{n}: {i['skipped']}" for r in results for n, i in r["impls"].items()
                      if "skipped" in i})

    md = table(results, impls, roof)
    print()
    print(f"median ms; matmul roof {roof:.1f} GFLOP/s (best of start/end: "
          f"{', '.join(f'{x:.1f}' for x in roofs)}); {RATIO_NOTE.format(ours=br.OURS)}")
    print(md)
    for s in skipped:
        print(f"skipped {s}")
    elapsed = time.perf_counter() - t_start
    print(f"total {elapsed:.0f} s")

    payload = {"machine": info, "roof_gflops": roof, "roofs_gflops": roofs,
               "elapsed_s": elapsed, "argv": sys.argv[1:] if argv is None else list(argv),
               "results": results, "skipped": skipped, "table_md": md}
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    (out / "table.md").write_text(md + "\n")
    if not args.no_plot:
        try:
            plot(results, out / "results.png")
        except ImportError as e:
            print(f"no plot: matplotlib not installed ({e})")
    print(f"wrote {out / 'results.json'}")

    parallel = HERE / "bench_parallel.py"
    if parallel.exists() and not args.no_parallel:
        if args.parallel_args is not None:
            pargv = shlex.split(args.parallel_args)
        else:
            pargv = ["--seq-lens", "256", "1024", "--max-reps", "5"] if args.quick else []
        pargv += ["--out", str(out / "bench_parallel.json")]
        print(f"\nbenchmarks/bench_parallel.py {' '.join(pargv)}")
        spec = importlib.util.spec_from_file_location("bench_parallel", parallel)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.main(pargv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
