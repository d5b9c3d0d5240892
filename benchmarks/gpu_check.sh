#!/usr/bin/env bash
# The GPU check in one command, for a machine with an NVIDIA GPU and jax[cuda], torch, flax
# and equinox installed (keras, if present, adds the Keras oracle tests):
#   1. the test suite on the GPU, the README's selection, the fast paths' tests first;
#   2. the parallel cells' associative scan against their sequential mode;
#   3. the side-by-side table, PyTorch's cuDNN LSTM/GRU and jax.experimental.rnn among the
#      rivals.
# Each stage has its own time limit, and what a stage finished survives a timeout: the logs,
# bench_parallel.json, and the grid's results.partial.json (replaced by results.json and
# table.md when the grid completes).
# Usage: OUT=some/folder bash benchmarks/gpu_check.sh
# Settings: TEST_S, PAR_S, BENCH_S (each stage's seconds); TEST_WORKERS (pytest -n);
# TESTS=fast (the fast paths' tests only); TESTS=none (no tests). The defaults fit one
# 10-minute call: on an H200 with 16 cores the tests took 135 s (12 workers) and the grid
# 131 s without the jaxrnn-unroll8 column; with it, allow about twice that.
set -uo pipefail
OUT="${OUT:-outputs/gpu}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 KERAS_BACKEND=jax
PY="${PYTHON:-python3}"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    nproc
    "$PY" - <<'PY'
import jax, platform
print("python", platform.python_version(), "jax", jax.__version__, jax.devices())
for m in ("torch", "flax", "equinox", "keras", "optax", "safetensors"):
    try:
        print(m, __import__(m).__version__)
    except ImportError as e:
        print(m, "missing", e)
PY
} 2>&1 | tee "$OUT/versions.txt"

FAST="tests/test_fused.py tests/test_parallel.py tests/test_forward_mode.py tests/test_reset.py"
case "${TESTS:-all}" in
    none) SELECTION="" ;;
    fast) SELECTION="$FAST" ;;
    *) SELECTION="$FAST tests jaxrnn" ;;  # pytest collects a path given twice once
esac
if [ -n "$SELECTION" ]; then
    # Several pytest workers share the one GPU: none may take most of its memory up front.
    # shellcheck disable=SC2086
    XLA_PYTHON_CLIENT_PREALLOCATE=false timeout "${TEST_S:-200}" "$PY" -m pytest \
        -n "${TEST_WORKERS:-12}" -v -p no:cacheprovider --durations=15 $SELECTION \
        >"$OUT/tests.txt" 2>&1
    echo "tests: exit $?"
    grep -E "FAILED|ERROR|passed|failed" "$OUT/tests.txt" | grep -v "^\[gw" | tail -40
    grep -cE "PASSED" "$OUT/tests.txt" | sed 's/^/PASSED lines: /'
fi

timeout "${PAR_S:-70}" "$PY" benchmarks/bench_parallel.py --seq-lens 4096 16384 \
    --max-reps 5 --cells mingru minlstm lru --out "$OUT/bench_parallel.json" \
    >"$OUT/parallel.txt" 2>&1
echo "bench_parallel: exit $?"
tail -25 "$OUT/parallel.txt"

timeout "${BENCH_S:-300}" "$PY" benchmarks/run.py --out "$OUT" --rounds 5 --budget 1 \
    --impls jaxrnn,jaxrnn-scan,jaxrnn-unroll8,flax,equinox,pytorch-cudnn,jax-cudnn,matmul-only \
    --sweep '' --no-parallel --no-plot >"$OUT/bench.txt" 2>&1
echo "run.py: exit $?"
tail -60 "$OUT/bench.txt"
