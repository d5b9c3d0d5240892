"""Smoke tests for the runnable examples, each with tiny settings (they run, and their metrics
make sense). The README's code blocks run in test_docs.py, with the docs pages'."""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_example(name):
    """Imports examples/<name>.py as a module without putting examples/ on sys.path."""
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_jaxrnn_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_lstm_runs(capsys):
    train_lstm = _load_example("train_lstm")
    argv = "--steps 5 --batch-size 4 --units 8 --seq-len 12 --eval-size 8 --log-every 2 --seed 1"
    metrics = train_lstm.main(argv.split())

    assert metrics["steps"] == 5
    for name in ("train_mse", "test_mse", "baseline_mse"):
        assert math.isfinite(metrics[name]), (name, metrics)
    out = capsys.readouterr().out
    assert "5/5" in out  # the progress bar reached the end
    assert "test MSE" in out


@pytest.mark.slow
def test_train_lstm_default_run_learns():
    """The README's main job: the default settings beat the persistence baseline clearly."""
    metrics = _load_example("train_lstm").main(["--log-every", "0"])
    assert metrics["test_mse"] < 0.25 * metrics["baseline_mse"], metrics


def test_char_lm_runs(tmp_path, capsys):
    pytest.importorskip("optax")
    pytest.importorskip("safetensors")
    char_lm = _load_example("char_lm")
    argv = (f"--steps 4 --batch-size 2 --seq-len 8 --units 8 --embed 4 --max-chars 4000 "
            f"--log-every 2 --avg-steps 2 --val-windows 3 --sample-chars 12 "
            f"--out-dir {tmp_path}")
    metrics = char_lm.main(argv.split())
    assert metrics["steps"] == 4
    for name in ("first_loss", "train_loss", "val_loss"):
        assert math.isfinite(metrics[name]), metrics
    assert metrics["first_loss"] == pytest.approx(math.log(len(char_lm.CHARS)), abs=0.2)
    assert len(metrics["sample"]) == len("Return the ") + 12
    # Sampling streams the LSTM one character at a time through one compiled step.
    assert char_lm.generate_step._cache_size() == 1
    assert Path(metrics["checkpoint"]).is_file()
    if metrics["plot"] is not None:
        assert Path(metrics["plot"]).is_file()
    # Validation before training, at every --log-every steps and at the end.
    assert [s for s, _ in metrics["val_losses"]] == [0, 2, 4]
    assert metrics["val_loss"] == metrics["val_losses"][-1][1]
    # One train loss everywhere: the mean of the last --avg-steps steps.
    assert metrics["train_loss"] == pytest.approx(sum(metrics["train_losses"][-2:]) / 2)
    out = capsys.readouterr().out
    bar = {int(s): v for s, v in re.findall(r"\] (\d+)/4 train loss (\S+) \(last \d+ steps\)", out)}
    periodic = re.findall(r"step +(\d+)  train loss (\S+)  validation loss (\S+)", out)
    summary = re.search(r"train loss (\S+) \(mean of the last 2 steps\), "
                        r"validation loss \S+ -> (\S+) nats/char", out)
    assert set(bar) == {1, 2, 3, 4} and periodic and summary, out
    assert [(int(s), t) for s, t, _ in periodic] == [(2, bar[2])]
    assert summary[1] == bar[4] == f"{metrics['train_loss']:.3f}"
    assert summary[2] == f"{metrics['val_loss']:.3f}"
    assert "--- sample" in out


def test_char_lm_refuses_held_out_text_shorter_than_a_window():
    char_lm = _load_example("char_lm")
    with pytest.raises(ValueError, match="--max-chars"):
        char_lm.validation_windows(np.zeros(5, np.int32), 3, seq_len=8)


def test_char_lm_corpus_is_deterministic():
    char_lm = _load_example("char_lm")
    a, b = char_lm.load_corpus(), char_lm.load_corpus()
    assert a == b and len(a) > 100_000
    assert set(a) <= set(char_lm.CHARS)


def test_masked_classification_runs():
    pytest.importorskip("optax")
    example = _load_example("masked_classification")
    metrics = example.main("--steps 3 --batch-size 8 --units 4 --max-len 10 --min-len 3 "
                           "--train-size 32 --test-size 16 --log-every 0".split())
    assert metrics["steps"] == 3 and math.isfinite(metrics["final_loss"])
    assert 0.0 <= metrics["test_accuracy"] <= 1.0


def test_from_pytorch_agrees():
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    metrics = _load_example("from_pytorch").main(
        "--hidden 4 --input-size 3 --seq-len 5 --batch-size 3".split())
    assert metrics["max_abs_diff"] < 1e-5
    assert metrics["masked_max_abs_diff"] < 1e-5
    assert metrics["round_trip_max_abs_diff"] < 1e-5


def test_data_parallel_runs_on_four_emulated_devices():
    """In a fresh interpreter: the example sets XLA_FLAGS itself before jax starts."""
    pytest.importorskip("optax")
    code = ("import json, runpy, sys; m = runpy.run_path(sys.argv[1]); "
            "print('METRICS=' + json.dumps(m['main'](sys.argv[2:])))")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "examples" / "data_parallel.py"),
         "--steps", "3", "--batch-size", "8", "--chunk", "4", "--units", "4", "--log-every", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("METRICS="))
    metrics = json.loads(line.removeprefix("METRICS="))
    assert metrics["devices"] == 4
    assert metrics["loss_difference"] < 1e-5 and metrics["grad_difference"] < 1e-5


def test_long_sequences_example_smoke(capsys):
    metrics = _load_example("long_sequences").main(
        "--seq-len 16 --steps 3 --batch-size 4 --units 8 --eval-size 8 --seed 1".split())
    for model in ("lstm", "mingru"):
        assert math.isfinite(metrics[model]["test_mse"]), metrics
        assert metrics[model]["train_seconds"] > 0
    out = capsys.readouterr().out
    assert "MinGRU" in out and "total wall time" in out
    assert metrics["total_seconds"] >= sum(metrics[m]["train_seconds"] for m in ("lstm", "mingru"))
