"""Side-by-side RNN benchmarks: jaxrnn against Flax, Keras 3 (JAX), Equinox and PyTorch.

Every implementation is built for the same case (cell kind, shape, training step or
inference), then timed in interleaved rounds, so that drift of a shared machine hits all of
them alike. A training step is ``jit(value_and_grad)`` of ``sum(y ** 2)`` over the outputs
of every step (``return_sequences``), wrt the params (PyTorch: forward + backward);
inference is the jitted forward (PyTorch: ``no_grad``). PyTorch runs in a process of its
own (`torch_worker.py`), one per case, its rounds alternating with the JAX ones.

Per contender and case: the median time, the compile time (JAX: ``lower`` + ``compile``;
PyTorch: its first step) and the peak memory of the step (JAX: XLA's ``memory_analysis``
of the compiled step, arguments + outputs + temporaries; PyTorch: the growth of its
process's peak RSS over building the case and one step). ``matmul-only`` is the roof of
the case: a `lax.scan` of T steps that does only the step's matmuls (``[B, F] x [F, G*H]``
and ``[B, H] x [H, G*H]``), timed in the same rounds; it is neither a rival nor ours.

Used by ``benchmarks/run.py``; each builder returns ``(info, call)`` where ``info`` holds
``compile_s`` and ``peak_mb`` and ``call()`` runs one step and waits for its result (it may
return the step's own measured seconds), or raises `Skip` with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxrnn as jr  # noqa: E402

GRID = [(8, 256, 32, 128), (64, 128, 64, 256), (32, 1000, 16, 64), (256, 64, 128, 512)]
TINY = (1, 2000, 8, 64)  # tiny per-step output: the jax#40101 regression shape
BATCH1 = (1, 500, 64, 256)  # serving and sampling: one sequence, a wider layer
COMPUTE_BOUND = [(64, 128, 64, 256), (256, 64, 128, 512)]


class Skip(Exception):
    """An implementation that cannot run here (not installed, no GPU, ...)."""


@dataclasses.dataclass(frozen=True)
class Case:
    kind: str  # "lstm" or "gru"
    shape: tuple[int, int, int, int]  # B, T, F, H
    mode: str  # "train" or "infer"

    @property
    def gates(self) -> int:
        return 4 if self.kind == "lstm" else 3

    def flops(self) -> float:
        """Matmul FLOPs: forward 2·T·B·(F+H)·G·H; a training step three times that."""
        b, t, f, h = self.shape
        fwd = 2.0 * t * b * (f + h) * self.gates * h
        return 3 * fwd if self.mode == "train" else fwd

    def label(self) -> str:
        return f"{self.kind} {self.mode} " + ",".join(map(str, self.shape))


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """``"B,T,F,H"`` (a command-line shape) as four ints."""
    parts = tuple(int(p) for p in text.split(","))
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"a shape is B,T,F,H; got {text!r}")
    return parts  # type: ignore[return-value]


def _inputs(case: Case):
    b, t, f, _ = case.shape
    return np.random.default_rng(0).normal(size=(b, t, f)).astype(np.float32)


def peak_mb(compiled) -> float | None:
    """XLA's estimate of a compiled program's peak memory: arguments + outputs +
    temporaries (MiB), or None where the backend does not report it."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend reports it
        return None
    if m is None:
        return None
    total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - getattr(m, "alias_size_in_bytes", 0))
    return total / 2 ** 20


def alternating_medians(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median ms of each call of `calls`, the calls alternating round by round (drift on a
    shared machine then hits them alike)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(ts) for name, ts in times.items()}


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Writes `data` to `path` as indented JSON, making its folder, and says where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    print(f"wrote {path}")


def compiled_case(fn: Callable, *args) -> tuple[dict, Callable]:
    """Lowers and compiles ``jax.jit(fn)(*args)``: its compile time, peak memory and a call."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    info = {"compile_s": time.perf_counter() - t0, "peak_mb": peak_mb(compiled)}

    def call():
        jax.block_until_ready(compiled(*args))

    call()  # the first run (allocations, page faults) is not timed
    return info, call


def _jax_case(case: Case, apply: Callable, params) -> tuple[dict, Callable]:
    """The compiled train step or forward of `apply(params, x)`."""
    x = jnp.asarray(_inputs(case))
    if case.mode == "train":
        return compiled_case(jax.value_and_grad(lambda p, x: jnp.sum(apply(p, x) ** 2)),
                             params, x)
    return compiled_case(apply, params, x)


def matmul_only(case: Case):
    """The roof of a case: T steps of only its matmuls, ``x_t @ W`` and ``h @ U``
    (``[B, F] x [F, G*H]``, ``[B, H] x [H, G*H]``), in a `lax.scan` (the carried h is a slice
    of the product, so each step depends on the last). Its GFLOP/s are what this CPU does
    for this case's matmul shapes; a training step is counted as three such passes."""
    b, t, f, h = case.shape
    g = case.gates
    w = jax.random.normal(jax.random.key(0), (f, g * h)) * 0.05
    u = jax.random.normal(jax.random.key(1), (h, g * h)) * 0.05
    xs = jnp.swapaxes(jnp.asarray(_inputs(case)), 0, 1)

    def loop(w, u, xs):
        def body(hc, x_t):
            z = x_t @ w + hc @ u
            return z[:, :h], None

        return jax.lax.scan(body, jnp.zeros((b, h), xs.dtype), xs)[0]

    return compiled_case(loop, w, u, xs)


# ----------------------------------------------------------------------------- jaxrnn


def jaxrnn_case(case: Case, **layer_kw) -> tuple[dict, Callable]:
    """The compiled step of `jaxrnn.LSTM` / `jaxrnn.GRU` for `case`, built with
    ``return_sequences=True`` and `layer_kw`."""
    b, t, f, h = case.shape
    layer = (jr.LSTM if case.kind == "lstm" else jr.GRU)(h, return_sequences=True, **layer_kw)
    return _jax_case(case, layer, layer.init(jax.random.key(0), (b, t, f)))


def jaxrnn_fused(case: Case):
    return jaxrnn_case(case)


def jaxrnn_unrolled(case: Case):
    """The default layer with ``unroll=8``: eight steps per loop iteration. On a GPU, where
    each iteration costs launches and a host round trip, it roughly halves a long loop's
    time (`bench_unroll.py`); reported beside the default, not as a rival."""
    return jaxrnn_case(case, unroll=8)


def jaxrnn_scan(case: Case):
    return jaxrnn_case(case, fused=False)


# ----------------------------------------------------------------------------- rivals


def flax_linen(case: Case):
    try:
        import flax.linen as nn
    except ImportError as e:
        raise Skip(f"flax not installed ({e})") from None
    b, t, f, h = case.shape
    cell = nn.OptimizedLSTMCell(h) if case.kind == "lstm" else nn.GRUCell(h)
    model = nn.RNN(cell)
    params = model.init(jax.random.key(0), jnp.zeros((b, t, f)))
    return _jax_case(case, model.apply, params)


def import_keras():
    """Keras 3 on the JAX backend, or `Skip` with the reason."""
    try:
        import keras
    except ImportError as e:
        raise Skip(f"keras not installed ({e})") from None
    if keras.backend.backend() != "jax":
        raise Skip(f"keras backend is {keras.backend.backend()!r}, not 'jax'")
    return keras


def keras_stateless(layer, input_shape) -> tuple[Callable, list]:
    """Builds a Keras `layer` for `input_shape`: ``(apply(trainable, x) -> y, trainable)``,
    a pure function of its trainable weights through ``stateless_call``."""
    layer.build(input_shape)
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def apply(tv, x):
        y, _ = layer.stateless_call(tv, non_trainable, x)
        return y

    return apply, trainable


def keras_jax(case: Case):
    keras = import_keras()
    b, t, f, h = case.shape
    layer = (keras.layers.LSTM if case.kind == "lstm" else keras.layers.GRU)(
        h, return_sequences=True)
    return _jax_case(case, *keras_stateless(layer, (b, t, f)))


def equinox_scan(case: Case):
    try:
        import equinox as eqx
    except ImportError as e:
        raise Skip(f"equinox not installed ({e})") from None
    b, t, f, h = case.shape
    key = jax.random.key(0)
    cell = eqx.nn.LSTMCell(f, h, key=key) if case.kind == "lstm" else eqx.nn.GRUCell(f, h,
                                                                                     key=key)
    params, static = eqx.partition(cell, eqx.is_array)

    def apply(params, x):
        c = eqx.combine(params, static)
        step = jax.vmap(c)
        zeros = jnp.zeros((b, h), x.dtype)
        init = (zeros, zeros) if case.kind == "lstm" else zeros

        def body(state, x_t):
            state = step(x_t, state)
            return state, state[0] if case.kind == "lstm" else state

        _, ys = jax.lax.scan(body, init, jnp.swapaxes(x, 0, 1))
        return jnp.swapaxes(ys, 0, 1)

    return _jax_case(case, apply, params)


class _TorchWorker:
    """One `torch_worker.py` process: one per case on the CPU (its peak RSS is a
    high-water mark), one for every case on a GPU."""

    def __init__(self):
        worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_worker.py")
        self.proc = subprocess.Popen([sys.executable, worker], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, **request) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"torch worker exited (code {self.proc.poll()})")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=30)


_CUDA_WORKER: _TorchWorker | None = None


def _torch_case(case: Case, device: str):
    # On the CPU each case gets a fresh process, since its peak RSS is a high-water mark. On
    # a GPU the worker reports PyTorch's own peak of allocated memory, which it resets per
    # case, so one process serves every case and CUDA starts once, not once per case.
    global _CUDA_WORKER
    if device == "cuda":
        if _CUDA_WORKER is None or _CUDA_WORKER.proc.poll() is not None:
            _CUDA_WORKER = _TorchWorker()
        worker, close = _CUDA_WORKER, (lambda: None)
    else:
        worker = _TorchWorker()
        close = worker.close
    reply = worker.ask(op="build", kind=case.kind, shape=list(case.shape), mode=case.mode,
                       device=device)
    if "skip" in reply:
        close()
        if device == "cuda" and reply["skip"].startswith("error:"):
            # A CUDA error can leave the process's context unusable: the next case gets a
            # fresh worker rather than the same error.
            worker.close()
            _CUDA_WORKER = None
        raise Skip(reply["skip"])

    def call() -> float:
        t = worker.ask(op="run")["t"]
        # Let the worker's OpenMP threads stop spinning before the next contender runs.
        time.sleep(0.01)
        return t

    call.close = close  # type: ignore[attr-defined]
    return {"compile_s": reply["compile_s"], "peak_mb": reply["peak_mb"]}, call


def pytorch_cpu(case: Case):
    return _torch_case(case, "cpu")


def pytorch_cudnn(case: Case):
    return _torch_case(case, "cuda")


def jax_experimental_rnn(case: Case):
    """cuDNN LSTM through `jax.experimental.rnn` (GPU only, LSTM only)."""
    if jax.default_backend() != "gpu":
        raise Skip("jax.experimental.rnn needs a GPU (cuDNN)")
    if case.kind != "lstm":
        raise Skip("jax.experimental.rnn has no GRU")
    from jax.experimental import rnn

    b, t, f, h = case.shape
    size = rnn.get_num_params_in_lstm(f, h, 1, False)
    weights = jax.random.normal(jax.random.key(0), (size,)) * 0.05
    lengths = jnp.full((b,), t, jnp.int32)
    zeros = jnp.zeros((1, b, h))

    def apply(w, x):
        y, _, _ = rnn.lstm(x, zeros, zeros, w, lengths, input_size=f, hidden_size=h,
                           num_layers=1, dropout=0.0, bidirectional=False)
        return y

    return _jax_case(case, apply, weights)


IMPLEMENTATIONS: dict[str, Callable] = {
    "jaxrnn": jaxrnn_fused,
    "jaxrnn-scan": jaxrnn_scan,
    "jaxrnn-unroll8": jaxrnn_unrolled,
    "flax": flax_linen,
    "keras-jax": keras_jax,
    "equinox": equinox_scan,
    "pytorch": pytorch_cpu,
    "pytorch-cudnn": pytorch_cudnn,
    "jax-cudnn": jax_experimental_rnn,
    "matmul-only": matmul_only,
}
OURS = "jaxrnn"
BASELINE = "jaxrnn-scan"  # jaxrnn's own generic scan: reported, but not a rival
ROOF = "matmul-only"  # the case's matmuls alone: its roof, not a rival
UNROLLED = "jaxrnn-unroll8"  # jaxrnn with unroll=8: reported, but not a rival
NOT_RIVALS = (OURS, BASELINE, UNROLLED, ROOF)


# ----------------------------------------------------------------------------- running


def run_case(case, names: list[str], rounds: int, budget_s: float, log=print,
             implementations: dict[str, Callable] | None = None,
             not_rivals: tuple[str, ...] = NOT_RIVALS) -> dict:
    """Builds every implementation, then times them in interleaved rounds.

    Rounds stop early once `budget_s` seconds of timing have passed (at least 3 rounds).
    `case` is a dataclass with ``label()`` and ``flops()`` (by default a `Case`, built by
    `IMPLEMENTATIONS`); `not_rivals` are reported but not compared with `OURS`.
    """
    implementations = IMPLEMENTATIONS if implementations is None else implementations
    calls, result = {}, {"case": dataclasses.asdict(case), "label": case.label(),
                         "flops": case.flops(), "impls": {}}
    for name in names:
        try:
            info, call = implementations[name](case)
        except Skip as e:
            result["impls"][name] = {"skipped": str(e)}
            continue
        except Exception as e:  # a rival that breaks is reported, not fatal
            result["impls"][name] = {"skipped": f"error: {type(e).__name__}: {e}"[:300]}
            log(f"  {name}: {result['impls'][name]['skipped']}")
            continue
        calls[name] = call
        result["impls"][name] = {**info, "times_s": []}
    try:
        start = time.perf_counter()
        for r in range(rounds):
            for name, call in calls.items():
                t0 = time.perf_counter()
                own = call()  # PyTorch's worker measures its own step
                dt = own if isinstance(own, float) else time.perf_counter() - t0
                result["impls"][name]["times_s"].append(dt)
            if r >= 2 and time.perf_counter() - start > budget_s:
                break
    finally:
        for call in calls.values():
            getattr(call, "close", lambda: None)()
    for name in calls:
        info = result["impls"][name]
        info["median_ms"] = 1e3 * float(np.median(info["times_s"]))
        info["min_ms"] = 1e3 * float(np.min(info["times_s"]))
        info["gflops"] = case.flops() / (info["median_ms"] / 1e3) / 1e9
    roof = result["impls"].get(ROOF, {})
    if "median_ms" in roof:
        # The roof loop does one forward's matmuls; a training step does three times that.
        roof["gflops"] = (case.flops() / (3 if case.mode == "train" else 1)
                          / (roof["median_ms"] / 1e3) / 1e9)
        result["roof_gflops"] = roof["gflops"]
    rivals = {n: i["median_ms"] for n, i in result["impls"].items()
              if "median_ms" in i and n not in not_rivals}
    if rivals and "median_ms" in result["impls"].get(OURS, {}):
        best = min(rivals, key=rivals.get)
        result["best_rival"] = best
        result["ratio"] = result["impls"][OURS]["median_ms"] / rivals[best]
    return result


def roof_size() -> int:
    """The side of `matmul_roof`'s square matmul: 1536 on a CPU; 8192 on a GPU, where a
    smaller one would time the launch rather than the arithmetic."""
    return 1536 if jax.default_backend() == "cpu" else 8192


def matmul_roof(n: int | None = None, reps: int = 5) -> float:
    """GFLOP/s of a large float32 matmul in JAX on this machine (the best of `reps`), of
    side `n` (default `roof_size()`)."""
    n = roof_size() if n is None else n
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(f(a, a))
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a, a))
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def cpu_flags() -> list[str]:
    """The CPU's vector extensions (AVX, AVX2, FMA, AVX-512 variants, AMX) from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(f for f in flags
                                  if f.startswith(("avx", "amx")) or f in ("fma", "f16c"))
    except OSError:
        pass
    return []


def machine_info() -> dict:
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "jax": jax.__version__,
                "jaxlib": getattr(jax.lib, "__version__", None) or jax.__version__,
                "jaxrnn": jr.__version__}
    for mod in ("flax", "equinox", "keras", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    info = {"nproc": os.cpu_count(), "cpu": model, "cpu_flags": cpu_flags(),
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()], "versions": versions}
    try:  # PyTorch runs in its own process; ask one what it would use
        worker = _TorchWorker()
        reply = worker.ask(op="info")
        worker.close()
        info["torch_threads"] = reply.get("threads")
        versions["torch"] = reply.get("torch")
    except Exception:
        pass
    return info
