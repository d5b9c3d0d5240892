"""Benchmark: ConvLSTM2D in jaxrnn against Keras 3 (JAX backend) and Flax's ConvLSTMCell.

One case, a ConvLSTM2D over a sequence of feature maps ([B, T, H, W, C] -> filters, 3x3
kernels, "same" padding, every step's output), as a training step (``jit(value_and_grad)``
of ``sum(y ** 2)`` wrt the params) and as inference (the jitted forward). Every
implementation is built first, then all are timed in interleaved rounds in one process, as
in ``bench_rnn.py``, so that drift of a shared machine hits them alike. The ratio is jaxrnn
/ the best rival in median ms: below 1, jaxrnn is faster.

The rivals compute the same thing: Keras's ``ConvLSTM2D`` through ``stateless_call`` (four
convolutions per input and per state, one per gate) and ``flax.linen.RNN`` over
``flax.linen.ConvLSTMCell`` (one input and one hidden convolution of 4*filters channels,
two biases). jaxrnn computes the four gates in one convolution per input and per state:
on CPU by default as im2col matmuls (``conv_impl=None``); ``jaxrnn-conv`` is jaxrnn with
XLA's convolution (``conv_impl="conv"``), shown as a baseline, not a rival.

Results go to ``outputs/bench/bench_conv.json`` (untracked: git ignores ``outputs/``).

Run:
    python benchmarks/bench_conv.py                      # B,T,H,W,C,filters = 8,16,32,32,8,32
    python benchmarks/bench_conv.py --shape 4,8,16,16,4,16 --modes train --rounds 5
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # run from a checkout without installing jaxrnn
os.environ.setdefault("KERAS_BACKEND", "jax")

import bench_rnn as br  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxrnn as jr  # noqa: E402

# Untracked by default: outputs/ is in .gitignore. benchmarks/results/ holds committed runs.
DEFAULT_OUT = HERE.parent / "outputs" / "bench" / "bench_conv.json"
OURS = "jaxrnn"
KERNEL = 3


@dataclasses.dataclass(frozen=True)
class Case:
    shape: tuple[int, int, int, int, int, int]  # B, T, H, W, C, filters
    mode: str  # "train" or "infer"

    def flops(self) -> float:
        """Convolution FLOPs: forward 2·B·T·H·W·k²·(C+filters)·4·filters (input and
        recurrent convolutions, "same" padding); a training step three times that."""
        b, t, h, w, c, f = self.shape
        fwd = 2.0 * b * t * h * w * KERNEL * KERNEL * (c + f) * 4 * f
        return 3 * fwd if self.mode == "train" else fwd

    def label(self) -> str:
        return f"convlstm2d {self.mode} " + ",".join(map(str, self.shape))


def _inputs(case: Case) -> jax.Array:
    b, t, h, w, c, _ = case.shape
    return jnp.asarray(np.random.default_rng(0).normal(size=(b, t, h, w, c)), jnp.float32)


def _jax_case(case: Case, apply: Callable, params) -> tuple[dict, Callable]:
    """The compiled train step or forward of `apply(params, x)` (see `bench_rnn`)."""
    x = _inputs(case)
    if case.mode == "train":
        return br.compiled_case(jax.value_and_grad(lambda p, x: jnp.sum(apply(p, x) ** 2)),
                                params, x)
    return br.compiled_case(apply, params, x)


def _jaxrnn(case: Case, conv_impl: str | None):
    b, t, h, w, c, f = case.shape
    layer = jr.ConvLSTM2D(f, KERNEL, padding="same", return_sequences=True,
                          conv_impl=conv_impl)
    return _jax_case(case, layer, layer.init(jax.random.key(0), (b, t, h, w, c)))


def jaxrnn_conv(case: Case):
    return _jaxrnn(case, None)


def jaxrnn_xla_conv(case: Case):
    return _jaxrnn(case, "conv")


def keras_conv(case: Case):
    keras = br.import_keras()
    b, t, h, w, c, f = case.shape
    layer = keras.layers.ConvLSTM2D(f, KERNEL, padding="same", return_sequences=True)
    return _jax_case(case, *br.keras_stateless(layer, (b, t, h, w, c)))


def flax_conv(case: Case):
    try:
        import flax.linen as nn
    except ImportError as e:
        raise br.Skip(f"flax not installed ({e})") from None
    b, t, h, w, c, f = case.shape
    model = nn.RNN(nn.ConvLSTMCell(f, (KERNEL, KERNEL)))
    params = model.init(jax.random.key(0), jnp.zeros((b, t, h, w, c)))
    return _jax_case(case, model.apply, params)


IMPLEMENTATIONS: dict[str, Callable] = {"jaxrnn": jaxrnn_conv, "jaxrnn-conv": jaxrnn_xla_conv,
                                        "keras-jax": keras_conv, "flax": flax_conv}
BASELINE = "jaxrnn-conv"  # jaxrnn with conv_impl="conv": reported, but not a rival


def _shape(text: str) -> tuple[int, int, int, int, int, int]:
    parts = tuple(int(p) for p in text.split(","))
    if len(parts) != 6:
        raise argparse.ArgumentTypeError(f"a shape is B,T,H,W,C,filters; got {text!r}")
    return parts  # type: ignore[return-value]


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=_shape, default=(8, 16, 32, 32, 8, 32),
                   metavar="B,T,H,W,C,filters")
    p.add_argument("--modes", default="train,infer", help="comma-separated: train,infer")
    p.add_argument("--impls", default=",".join(IMPLEMENTATIONS))
    p.add_argument("--rounds", type=int, default=9, help="timing rounds per case, at most")
    p.add_argument("--budget", type=float, default=20.0,
                   help="seconds of timing per case before rounds stop early")
    p.add_argument("--out", type=str, default=str(DEFAULT_OUT),
                   help="JSON output path (default: outputs/bench/bench_conv.json, untracked; "
                        "'' to skip writing)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = _parse(sys.argv[1:] if argv is None else argv)
    names = [n for n in args.impls.split(",") if n]
    unknown = sorted(set(names) - set(IMPLEMENTATIONS))
    if unknown:
        raise SystemExit(f"unknown implementations {unknown}; known: {list(IMPLEMENTATIONS)}")
    results = []
    for mode in args.modes.split(","):
        case = Case(args.shape, mode)
        print(f"{case.label()}:", flush=True)
        r = br.run_case(case, names, args.rounds, args.budget,
                        implementations=IMPLEMENTATIONS, not_rivals=(OURS, BASELINE))
        for name, info in r["impls"].items():
            if "median_ms" in info:
                print(f"  {name:10s} {info['median_ms']:9.1f} ms (min {info['min_ms']:.1f}, "
                      f"{len(info['times_s'])} rounds, compile {info['compile_s']:.1f} s, "
                      f"{info['gflops']:.1f} GFLOP/s)")
            else:
                print(f"  {name:10s} skipped: {info['skipped']}")
        if "ratio" in r:
            print(f"  ratio {OURS} / {r['best_rival']} = {r['ratio']:.2f} (below 1: {OURS} "
                  "faster)")
        results.append(r)
    out = {"machine": br.machine_info(), "results": results,
           "note": f"ratio = {OURS} / best rival, in median ms: below 1, {OURS} is faster"}
    if args.out:
        br.write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
