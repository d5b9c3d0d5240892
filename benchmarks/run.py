"""Runs the side-by-side RNN benchmark: ``python benchmarks/run.py [--quick]``.

Prints a table of median milliseconds per implementation, the ratio jaxrnn / best rival
(below 1: jaxrnn is faster; jaxrnn's own generic scan, ``jaxrnn-scan``, is shown as a
baseline, not a rival) and jaxrnn's GFLOP/s as a share of the case's own roof (``matmul-only``:
the case's matmuls alone, timed in the same rounds) and of a large square matmul; then
tables of every contender's peak memory and compile time. A full run also sweeps T (64 to
16,384) and H (32 to 1024) for the LSTM training step and plots time against each.
Writes ``results.json``, ``table.md``, ``results.png``, ``sweep_t.png`` and ``sweep_h.png``
to ``--out``: by default
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
import os
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


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="two shapes, LSTM and GRU training steps only, few rounds (< 2 min)")
    p.add_argument("--shapes", type=br.parse_shape, nargs="+", metavar="B,T,F,H",
                   help="shapes to run (default: the grid plus the tiny-output shape)")
    p.add_argument("--kinds", default="lstm,gru", help="comma-separated: lstm,gru")
    p.add_argument("--modes", default=None, help="comma-separated: train,infer")
    p.add_argument("--impls", default=",".join(n for n in br.IMPLEMENTATIONS
                                               if n != br.UNROLLED),
                   help=f"comma-separated implementations (known: "
                        f"{','.join(br.IMPLEMENTATIONS)}; {br.UNROLLED} only when named)")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds per case")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timing per case before rounds stop early")
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help="output folder (default: outputs/bench, untracked; "
                        "'benchmarks/results' replaces the committed results)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--sweep", default=None,
                   help="comma-separated: T,H (step time against T and against H, plotted); "
                        "default: both on a full run, none with --quick; '' for none")
    p.add_argument("--parallel-args", default=None,
                   help="arguments for benchmarks/bench_parallel.py's main (a quoted string); "
                        "default: its own defaults (--quick: two short sequence lengths)")
    p.add_argument("--no-parallel", action="store_true",
                   help="do not run benchmarks/bench_parallel.py")
    return p.parse_args(argv)


def _fmt(x, spec="7.1f"):
    return format(x, spec) if isinstance(x, (int, float)) else f"{x:>7}"


def _ratio_cell(r: dict, key: str) -> str:
    """jaxrnn's value of `key` over the best rival's, and who that rival is."""
    ours = r["impls"].get(br.OURS, {}).get(key)
    rivals = {n: i[key] for n, i in r["impls"].items()
              if i.get(key) is not None and n not in br.NOT_RIVALS}
    if ours is None or not rivals:
        return "-"
    best = min(rivals, key=rivals.get)
    return f"{ours / rivals[best]:.2f} ({best})" if rivals[best] > 0 else "-"


def _shown(results: list[dict], impls: list[str], key: str) -> list[str]:
    return [n for n in impls if any(r["impls"].get(n, {}).get(key) is not None
                                    for r in results)]


def table(results: list[dict], impls: list[str], roof: float) -> str:
    """A Markdown table: median ms per implementation, ratio, GFLOP/s against the case's
    roof (``matmul-only``) and against the large square matmul's `roof`."""
    shown = _shown(results, impls, "median_ms")
    head = ["case"] + shown + [f"ratio (best rival; < 1: {br.OURS} faster)",
                               f"{br.OURS} GFLOP/s",
                               "% of case roof", "% of square roof"]
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
            row.append(f"{ours['gflops']:.1f}")
            case_roof = r.get("roof_gflops")
            row.append(f"{100 * ours['gflops'] / case_roof:.0f}%" if case_roof else "-")
            row.append(f"{100 * ours['gflops'] / roof:.0f}%")
        else:
            row += ["-", "-", "-"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def side_table(results: list[dict], impls: list[str], key: str, spec: str) -> str:
    """A Markdown table of one more quantity per contender (peak MB, compile s), with
    jaxrnn's ratio to the best rival (below 1: jaxrnn uses less)."""
    shown = [n for n in _shown(results, impls, key) if n != br.ROOF]
    head = ["case"] + shown + [f"ratio (best rival; < 1: {br.OURS} less)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = [r["label"]]
        for n in shown:
            v = r["impls"].get(n, {}).get(key)
            row.append(format(v, spec) if v is not None else "-")
        row.append(_ratio_cell(r, key))
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


def plot_sweep(results: list[dict], axis: str, path: Path) -> None:
    """Step time against T or H (log-log): every contender that ran, the roof dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = {"T": 1, "H": 3}[axis]
    xs = [r["case"]["shape"][index] for r in results]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in br.IMPLEMENTATIONS:
        ys = [r["impls"].get(name, {}).get("median_ms", float("nan")) for r in results]
        if all(y != y for y in ys):  # never ran
            continue
        style = {"lw": 2.5} if name == br.OURS else {"ls": "--", "color": "k"} \
            if name == br.ROOF else {"lw": 1}
        ax.plot(xs, ys, marker="o", label=name, **style)
    case = results[0]["case"]
    fixed = ", ".join(f"{k}={v}" for k, v in zip("BTFH", case["shape"]) if k != axis)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(axis)
    ax.set_ylabel("median ms per step")
    ax.set_title(f"{case['kind'].upper()} {case['mode']} step against {axis} ({fixed})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


SWEEP_T = [64, 256, 1024, 4096, 16384]  # B=8, F=32, H=128
SWEEP_H = [32, 64, 128, 256, 512, 1024]  # B=8, T=256, F=32


def sweep_cases(axis: str) -> list:
    if axis == "T":
        return [br.Case("lstm", (8, t, 32, 128), "train") for t in SWEEP_T]
    return [br.Case("lstm", (8, 256, 32, h), "train") for h in SWEEP_H]


def _run(cases, impls, rounds, budget, save=None) -> list[dict]:
    results = []
    for case in cases:
        r = br.run_case(case, impls, rounds, budget)
        results.append(r)
        if save is not None:
            save(results)
        cells = ", ".join(f"{n} {i['median_ms']:.1f}" for n, i in r["impls"].items()
                          if "median_ms" in i)
        ratio = f" -> ratio {r['ratio']:.2f} vs {r['best_rival']}" if "ratio" in r else ""
        print(f"{case.label():32s} {cells}{ratio}", flush=True)
    return results


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    kinds = args.kinds.split(",")
    if args.quick:
        shapes = args.shapes or [br.GRID[0], br.TINY]
        modes = (args.modes or "train").split(",")
        rounds = 5 if args.rounds is None else args.rounds
        budget = 2.0 if args.budget is None else args.budget
        sweeps = args.sweep or ""
    else:
        shapes = args.shapes or [*br.GRID, br.TINY, br.BATCH1]
        modes = (args.modes or "train,infer").split(",")
        rounds = 9 if args.rounds is None else args.rounds
        budget = 6.0 if args.budget is None else args.budget
        sweeps = "T,H" if args.sweep is None else args.sweep
    if rounds < 1 or budget < 0:
        raise SystemExit(f"--rounds must be at least 1 and --budget at least 0; got "
                         f"{rounds} and {budget}")
    impls = [n for n in args.impls.split(",") if n]
    unknown = sorted(set(impls) - set(br.IMPLEMENTATIONS))
    if unknown:
        raise SystemExit(f"unknown implementations {unknown}; known: {list(br.IMPLEMENTATIONS)}")
    axes = [a.strip().upper() for a in sweeps.split(",") if a.strip()]
    if set(axes) - {"T", "H"}:
        raise SystemExit(f"--sweep takes T and/or H; got {sweeps!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    info = br.machine_info()
    print(f"machine: {info['nproc']} CPUs, {info['cpu']} ({' '.join(info['cpu_flags'])}), "
          f"backend {info['backend']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    t_start = time.perf_counter()
    roofs = [br.matmul_roof()]
    n = br.roof_size()
    print(f"square matmul roof: {roofs[0]:.1f} GFLOP/s (float32 {n}^3 in JAX, best of 5)")

    print(RATIO_NOTE.format(ours=br.OURS))
    cases = [br.Case(kind, tuple(shape), mode)
             for mode in modes for kind in kinds for shape in shapes]
    # A run stopped early (a timeout on a lent machine, say) keeps every case it finished.
    partial = out / "results.partial.json"
    done: dict = {"machine": info, "results": [], "sweeps": {}}

    def save(rs: list[dict], axis: str | None = None) -> None:
        if axis is None:
            done["results"] = rs
        else:
            done["sweeps"][axis] = rs
        # Written whole, then renamed: a timeout mid-write leaves the previous file intact.
        tmp = partial.with_suffix(".tmp")
        tmp.write_text(json.dumps(done, indent=1))
        os.replace(tmp, partial)

    results = _run(cases, impls, rounds, budget, save)
    sweep_results = {}
    for axis in axes:
        print(f"\nsweep over {axis}:")
        sweep_results[axis] = _run(sweep_cases(axis), impls, min(rounds, 5), budget,
                                   lambda rs, a=axis: save(rs, a))
    roofs.append(br.matmul_roof())
    roof = max(roofs)
    every = results + [r for rs in sweep_results.values() for r in rs]
    skipped = sorted({f"{n}: {i['skipped']}" for r in every for n, i in r["impls"].items()
                      if "skipped" in i})

    md = table(results, impls, roof)
    memory = side_table(results, impls, "peak_mb", ".1f")
    compile_s = side_table(results, impls, "compile_s", ".2f")
    sweeps_md = {axis: table(rs, impls, roof) for axis, rs in sweep_results.items()}
    print()
    print(f"median ms; square matmul roof {roof:.1f} GFLOP/s (best of start/end: "
          f"{', '.join(f'{x:.1f}' for x in roofs)}); {RATIO_NOTE.format(ours=br.OURS)}")
    print(md)
    print("\npeak memory of the step, MiB (JAX: XLA's memory analysis; PyTorch: its "
          "process's peak RSS growth)")
    print(memory)
    print("\ncompile time, s (JAX: lower + compile; PyTorch: its first step)")
    print(compile_s)
    for axis, text in sweeps_md.items():
        print(f"\nsweep over {axis}\n{text}")
    for s in skipped:
        print(f"skipped {s}")
    elapsed = time.perf_counter() - t_start
    print(f"total {elapsed:.0f} s")

    payload = {"machine": info, "roof_gflops": roof, "roofs_gflops": roofs,
               "elapsed_s": elapsed, "argv": sys.argv[1:] if argv is None else list(argv),
               "results": results, "sweeps": sweep_results, "skipped": skipped,
               "table_md": md, "memory_md": memory, "compile_md": compile_s,
               "sweeps_md": sweeps_md}
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    partial.unlink(missing_ok=True)
    text = [md, "", "Peak memory (MiB)", "", memory, "", "Compile time (s)", "", compile_s]
    for axis, t in sweeps_md.items():
        text += ["", f"Sweep over {axis}", "", t]
    (out / "table.md").write_text("\n".join(text) + "\n")
    if not args.no_plot:
        try:
            plot(results, out / "results.png")
            for axis, rs in sweep_results.items():
                plot_sweep(rs, axis, out / f"sweep_{axis.lower()}.png")
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
