"""The benchmark scripts: by default they write to an untracked folder, never over the
committed results in benchmarks/results/, and their tables say which way a ratio is better.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "benchmarks" / "results"


@pytest.fixture
def load(monkeypatch):
    """Imports benchmarks/<name>.py; afterwards drops the benchmark modules it imported and
    its sys.path entries (run.py puts benchmarks/ on the path to import bench_rnn)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)

    def _load(name):
        spec = importlib.util.spec_from_file_location(
            f"_jaxrnn_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # as an import does (dataclasses look it up)
        spec.loader.exec_module(module)
        return module

    yield _load
    for name in set(sys.modules) - before:
        if name.startswith(("bench_", "_jaxrnn_bench_")):
            del sys.modules[name]


def _assert_untracked(path):
    path = Path(path).resolve()
    assert COMMITTED not in path.parents and path != COMMITTED, path
    rel = path.relative_to(ROOT)
    assert rel.parts[0] == "outputs", rel
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "outputs/" in ignored, ".gitignore must keep ignoring outputs/"


def test_run_writes_to_an_untracked_folder_by_default(load):
    run = load("run")
    _assert_untracked(run.parse([]).out)
    assert Path(run.parse(["--out", "benchmarks/results"]).out) == Path("benchmarks/results")


def test_bench_parallel_writes_to_an_untracked_file_by_default(load):
    _assert_untracked(load("bench_parallel")._parse([]).out)


def test_bench_conv_writes_to_an_untracked_file_by_default(load):
    _assert_untracked(load("bench_conv")._parse([]).out)


def test_bench_lstm_variants_writes_to_an_untracked_file_by_default(load):
    _assert_untracked(load("bench_lstm_variants")._parse([]).out)


def test_bench_onnx_writes_to_an_untracked_file_by_default(load):
    bench = load("bench_onnx")
    _assert_untracked(bench._parse([]).out)
    row = {"case": "gru infer 1,2,3,4", "ratio": 2.0, "ratio_static": 1.5,
           "impls": {n: {"median_ms": 1.0} for n in bench.IMPLS}}
    assert "< 1: onnxruntime faster" in bench.table([row]).splitlines()[0]


def test_run_table_says_which_ratio_is_better(load):
    run = load("run")
    result = {"label": "lstm train 1,2,3,4", "ratio": 0.5, "best_rival": "flax",
              "impls": {"jaxrnn": {"median_ms": 1.0, "gflops": 2.0, "compile_s": 0.1},
                        "flax": {"median_ms": 2.0}}}
    header = run.table([result], ["jaxrnn", "flax"], roof=10.0).splitlines()[0]
    assert "< 1: jaxrnn faster" in header, header


def test_bench_unroll_writes_to_an_untracked_file_by_default(load):
    bench = load("bench_unroll")
    _assert_untracked(bench._parse([]).out)
    assert 1 in bench._parse([]).unrolls  # the ratios are taken against unroll=1


def test_unrolled_column_is_reported_only_when_named_and_never_a_rival(load):
    run = load("run")
    br = sys.modules["bench_rnn"]
    assert br.UNROLLED in br.IMPLEMENTATIONS and br.UNROLLED in br.NOT_RIVALS
    assert br.UNROLLED not in run.parse([]).impls.split(",")


def test_run_end_to_end_leaves_results_and_no_partial_file(load, tmp_path):
    """A tiny complete run: results.json and table.md written; results.partial.json, kept
    up to date while the cases run, is gone once the run completes."""
    run = load("run")
    assert run.main(["--shapes", "1,3,2,2", "--kinds", "gru", "--modes", "infer",
                     "--impls", "jaxrnn,jaxrnn-unroll8", "--rounds", "1", "--budget", "0",
                     "--sweep", "", "--no-parallel", "--no-plot", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "results.json").exists() and (tmp_path / "table.md").exists()
    assert not (tmp_path / "results.partial.json").exists()
    assert "jaxrnn-unroll8" in (tmp_path / "table.md").read_text()
