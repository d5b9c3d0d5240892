#!/usr/bin/env bash
# The GPU check in one command (for a machine with an NVIDIA GPU and jax[cuda], torch,
# flax and equinox installed): the fast paths' tests on the GPU, then the side-by-side
# table (cuDNN rivals included) and the parallel cells' associative scan.
# Usage: OUT=some/folder bash benchmarks/gpu_check.sh   (writes logs and JSON to $OUT)
set -uo pipefail
OUT="${OUT:-outputs/gpu}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 KERAS_BACKEND=jax
PY="${PYTHON:-python3}"
"$PY" - <<'PY' 2>&1 | tee "$OUT/versions.txt"
import jax, platform
print("python", platform.python_version(), "jax", jax.__version__, jax.devices())
for m in ("torch", "flax", "equinox", "keras", "optax"):
    try:
        print(m, __import__(m).__version__)
    except ImportError as e:
        print(m, "missing", e)
PY
timeout "${TEST_S:-240}" "$PY" -m pytest -q -x -p no:cacheprovider --durations=10 \
    tests/test_fused.py tests/test_parallel.py tests/test_forward_mode.py tests/test_reset.py \
    2>&1 | tee "$OUT/tests.txt"
timeout "${BENCH_S:-260}" "$PY" benchmarks/run.py --out "$OUT" --rounds 5 --budget 1 \
    --impls jaxrnn,jaxrnn-scan,flax,equinox,pytorch-cudnn,jax-cudnn,matmul-only \
    --sweep '' --parallel-args "--seq-lens 4096 16384 --max-reps 5 --cells mingru minlstm lru" \
    2>&1 | tee "$OUT/bench.txt"
