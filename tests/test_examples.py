"""Smoke tests for the runnable examples: examples/*.py and the README's code blocks."""

import importlib.util
import math
import re
from pathlib import Path

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


def test_readme_python_blocks_run():
    """Runs README.md's ```python blocks in order, in one namespace, as a reader would."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)
    assert blocks, "README.md has no ```python blocks"
    namespace = {"__name__": "readme"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md[python block {i}]", "exec"), namespace)
