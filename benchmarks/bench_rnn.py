"""Side-by-side RNN benchmarks: jaxrnn against Flax, Keras 3 (JAX), Equinox and PyTorch.

Every implementation is built for the same case (cell kind, shape, training step or
inference), then timed in interleaved rounds in one process, so that drift of a shared
machine hits all of them alike. A training step is ``jit(value_and_grad)`` of
``sum(y ** 2)`` over the outputs of every step (``return_sequences``), wrt the params
(PyTorch: forward + backward); inference is the jitted forward (PyTorch: ``no_grad``).

Used by ``benchmarks/run.py``; each builder returns ``(compile_s, call)`` where ``call()``
runs one step and waits for its result, or raises `Skip` with the reason.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable

os.environ.setdefault("KERAS_BACKEND", "jax")
# JAX and PyTorch share this process (interleaved timing): keep PyTorch's OpenMP workers
# from spinning on the cores after each op, which would steal them from XLA and vice versa.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxrnn as jr  # noqa: E402

GRID = [(8, 256, 32, 128), (64, 128, 64, 256), (32, 1000, 16, 64), (256, 64, 128, 512)]
TINY = (1, 2000, 8, 64)  # tiny per-step output: the jax#40101 regression shape
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


def _inputs(case: Case):
    b, t, f, _ = case.shape
    return np.random.default_rng(0).normal(size=(b, t, f)).astype(np.float32)


def _timed_first(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _jax_case(case: Case, apply: Callable, params) -> tuple[float, Callable]:
    """jit + first call (compile) of the train step or the forward of `apply(params, x)`."""
    x = jnp.asarray(_inputs(case))
    if case.mode == "train":
        f = jax.jit(jax.value_and_grad(lambda p, x: jnp.sum(apply(p, x) ** 2)))
    else:
        f = jax.jit(apply)

    def call():
        jax.block_until_ready(f(params, x))

    return _timed_first(call), call


# ----------------------------------------------------------------------------- jaxrnn


def jaxrnn_fused(case: Case):
    b, t, f, h = case.shape
    layer = (jr.LSTM if case.kind == "lstm" else jr.GRU)(h, return_sequences=True)
    return _jax_case(case, layer, layer.init(jax.random.key(0), (b, t, f)))


def jaxrnn_scan(case: Case):
    b, t, f, h = case.shape
    layer = (jr.LSTM if case.kind == "lstm" else jr.GRU)(h, return_sequences=True, fused=False)
    return _jax_case(case, layer, layer.init(jax.random.key(0), (b, t, f)))


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


def keras_jax(case: Case):
    try:
        import keras
    except ImportError as e:
        raise Skip(f"keras not installed ({e})") from None
    if keras.backend.backend() != "jax":
        raise Skip(f"keras backend is {keras.backend.backend()!r}, not 'jax'")
    b, t, f, h = case.shape
    layer = (keras.layers.LSTM if case.kind == "lstm" else keras.layers.GRU)(
        h, return_sequences=True)
    layer.build((b, t, f))
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def apply(tv, x):
        y, _ = layer.stateless_call(tv, non_trainable, x)
        return y

    return _jax_case(case, apply, trainable)


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


def _torch_case(case: Case, device: str):
    try:
        import torch
    except ImportError as e:
        raise Skip(f"torch not installed ({e})") from None
    if device == "cuda" and not torch.cuda.is_available():
        raise Skip("no CUDA device")
    b, t, f, h = case.shape
    torch.manual_seed(0)
    module = (torch.nn.LSTM if case.kind == "lstm" else torch.nn.GRU)(
        f, h, batch_first=True).to(device)
    x = torch.from_numpy(_inputs(case)).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    if case.mode == "train":
        def call():
            module.zero_grad(set_to_none=True)
            y, _ = module(x)
            (y ** 2).sum().backward()
            sync()
    else:
        def call():
            with torch.no_grad():
                module(x)
            sync()

    return _timed_first(call), call


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
    "flax": flax_linen,
    "keras-jax": keras_jax,
    "equinox": equinox_scan,
    "pytorch": pytorch_cpu,
    "pytorch-cudnn": pytorch_cudnn,
    "jax-cudnn": jax_experimental_rnn,
}
OURS = "jaxrnn"
BASELINE = "jaxrnn-scan"  # jaxrnn's own generic scan: reported, but not a rival


# ----------------------------------------------------------------------------- running


def matmul_roof(n: int = 1536, reps: int = 5) -> float:
    """GFLOP/s of a large float32 matmul in JAX on this machine (the best of `reps`)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(f(a, a))
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a, a))
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def run_case(case: Case, names: list[str], rounds: int, budget_s: float, log=print) -> dict:
    """Builds every implementation, then times them in interleaved rounds.

    Rounds stop early once `budget_s` seconds of timing have passed (at least 3 rounds).
    """
    calls, result = {}, {"case": dataclasses.asdict(case), "label": case.label(),
                         "flops": case.flops(), "impls": {}}
    for name in names:
        try:
            compile_s, call = IMPLEMENTATIONS[name](case)
        except Skip as e:
            result["impls"][name] = {"skipped": str(e)}
            continue
        except Exception as e:  # a rival that breaks is reported, not fatal
            result["impls"][name] = {"skipped": f"error: {type(e).__name__}: {e}"[:300]}
            log(f"  {name}: {result['impls'][name]['skipped']}")
            continue
        calls[name] = call
        result["impls"][name] = {"compile_s": compile_s, "times_s": []}
    start = time.perf_counter()
    for r in range(rounds):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            result["impls"][name]["times_s"].append(time.perf_counter() - t0)
        if r >= 2 and time.perf_counter() - start > budget_s:
            break
    for name in calls:
        info = result["impls"][name]
        info["median_ms"] = 1e3 * float(np.median(info["times_s"]))
        info["min_ms"] = 1e3 * float(np.min(info["times_s"]))
        info["gflops"] = case.flops() / (info["median_ms"] / 1e3) / 1e9
    rivals = {n: i["median_ms"] for n, i in result["impls"].items()
              if "median_ms" in i and n not in (OURS, BASELINE)}
    if rivals and "median_ms" in result["impls"].get(OURS, {}):
        best = min(rivals, key=rivals.get)
        result["best_rival"] = best
        result["ratio"] = result["impls"][OURS]["median_ms"] / rivals[best]
    return result


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
    for mod in ("flax", "equinox", "keras", "torch", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    info = {"nproc": os.cpu_count(), "cpu": model, "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()], "versions": versions}
    try:
        import torch
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info
