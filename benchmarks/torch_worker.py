"""PyTorch's side of the benchmark, in a process of its own.

PyTorch's OpenMP workers and XLA's thread pool share the cores badly when both live in one
process (PyTorch ran 3-20x slower there than alone), so `bench_rnn` times PyTorch here and
alternates rounds between the two processes. Protocol: one JSON object per line on stdin,
one reply per line on stdout.

- ``{"op": "build", "kind": "lstm", "shape": [B, T, F, H], "mode": "train", "device": "cpu"}``
  builds the module and runs one step: ``{"compile_s": first step's seconds,
  "peak_mb": growth of the process's peak RSS over the build and that step}``
  (``{"skip": reason}`` if it cannot run here). The peak is Linux's VmHWM, reset before the
  build, less the RSS at that moment (None elsewhere). On a CUDA device it is instead the
  growth of PyTorch's peak of allocated GPU memory (reset before the build) over what was
  allocated then, so one worker can serve every case.
- ``{"op": "run"}`` runs one step of the last built case: ``{"t": seconds}``.
- ``{"op": "info"}``: ``{"torch": version, "threads": n}``.

Only torch and numpy are imported: nothing of JAX's runs in this process.
"""

from __future__ import annotations

import json
import sys
import time


def _status_mb(field: str) -> float | None:
    """``VmRSS`` or ``VmHWM`` (the peak since the last reset) from /proc/self/status."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak() -> float | None:
    """Resets the process's peak RSS (Linux: ``5`` to /proc/self/clear_refs) and returns
    the RSS now, or None where that cannot be done (then no memory is reported)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return None
    return _status_mb("VmRSS")


def _build(req: dict):
    import numpy as np
    import torch

    device = req.get("device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        return None, {"skip": "no CUDA device"}
    b, t, f, h = req["shape"]
    torch.manual_seed(0)
    module = (torch.nn.LSTM if req["kind"] == "lstm" else torch.nn.GRU)(
        f, h, batch_first=True).to(device)
    x = np.random.default_rng(0).normal(size=(b, t, f)).astype(np.float32)
    x = torch.from_numpy(x).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    if req["mode"] == "train":
        def step():
            module.zero_grad(set_to_none=True)
            y, _ = module(x)
            (y ** 2).sum().backward()
            sync()
    else:
        def step():
            with torch.no_grad():
                module(x)
            sync()
    return step, {}


def main() -> None:
    try:
        import torch  # noqa: F401  (its own memory is not the case's)
    except ImportError:
        pass
    step = None
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "build":
            step = None  # free the previous case first
            before = _reset_peak()
            try:
                cuda = req.get("device") == "cuda"
                if cuda:
                    import torch

                    if torch.cuda.is_available():
                        torch.cuda.reset_peak_memory_stats()
                        base = torch.cuda.memory_allocated()  # what an earlier case left
                step, reply = _build(req)
                if step is not None:
                    t0 = time.perf_counter()
                    step()
                    reply = {"compile_s": time.perf_counter() - t0,
                             "peak_mb": ((torch.cuda.max_memory_allocated() - base) / 2 ** 20
                                         if cuda
                                         else None if before is None
                                         else _status_mb("VmHWM") - before)}
            except ImportError as e:
                reply = {"skip": f"torch not installed ({e})"}
            except Exception as e:  # reported as a skipped contender, not fatal
                reply = {"skip": f"error: {type(e).__name__}: {e}"[:300]}
        elif op == "run":
            t0 = time.perf_counter()
            step()
            reply = {"t": time.perf_counter() - t0}
        elif op == "info":
            import torch

            reply = {"torch": torch.__version__, "threads": torch.get_num_threads()}
        else:
            reply = {"error": f"unknown op {op!r}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
