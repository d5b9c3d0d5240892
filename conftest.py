"""Pytest setup shared by tests/ and the package's doctests (jaxrnn/*.py).

It sits at the repository root so that it applies to both: the docstring examples run
under the same settings as the tests.
"""

import importlib.util
import os
from pathlib import Path

# Must run before anything imports keras (test modules, doctests, pytest plugins, xdist
# workers).
os.environ.setdefault("KERAS_BACKEND", "jax")
# Compile without LLVM optimizations unless told otherwise (see below).
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax
import pytest

# Turn silent rank promotion (e.g. adding a [H] bias to a [B, T, H] array by accident)
# into an error, in the tests and the doctests alike, as Equinox does. Everything else
# keeps JAX's defaults (float32, no x64).
jax.config.update("jax_numpy_rank_promotion", "raise")
# On GPUs float32 matmuls default to TF32 (about 3 significant digits), and the equality
# tests between engines (and against PyTorch, Keras, NumPy) would compare rounding instead
# of semantics: measured on an H200, the fused GRU differed from the generic scan by 3e-4.
# Full float32 precision everywhere (CPUs compute it anyway).
jax.config.update("jax_default_matmul_precision", "highest")

# The suite's cost is almost all XLA compilation of tiny programs that then run for
# microseconds. jax_disable_most_optimizations turns off LLVM's optimization of the
# generated CPU code only (XLA's HLO passes, so fusion, buffer assignment and
# memory_analysis, are unchanged); it halves the compile time of the suite. The
# environment variable (set above, before jax is imported) also reaches the tests'
# subprocesses. Run with JAX_DISABLE_MOST_OPTIMIZATIONS=0 to test under the optimizing
# backend instead.
jax.config.update(
    "jax_disable_most_optimizations",
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"].lower() in ("1", "true", "t", "yes", "y", "on"),
)


# Doctests of the interop modules and the framework adapters need their optional libraries;
# skip them (rather than fail) where those are not installed. The test extra installs all.
_DOCTEST_NEEDS = {
    "jaxrnn._keras": ("keras",),
    "jaxrnn._torch": ("torch",),
    "jaxrnn._io": ("safetensors",),
    "jaxrnn.nnx": ("flax", "optax"),
    "jaxrnn.eqx": ("equinox", "optax"),
}
# The adapters import their framework when they are imported, so without it their doctests
# cannot even be collected.
_IMPORTS_ITS_PACKAGE = ("jaxrnn.nnx", "jaxrnn.eqx")
_ROOT = Path(__file__).resolve().parent
_missing: dict[str, bool] = {}


def _missing_packages(module):
    out = []
    for package in _DOCTEST_NEEDS[module]:
        if package not in _missing:
            _missing[package] = importlib.util.find_spec(package) is None
        if _missing[package]:
            out.append(package)
    return out


def pytest_ignore_collect(collection_path, config):
    for module in _IMPORTS_ITS_PACKAGE:
        if (Path(collection_path) == _ROOT.joinpath(*module.split(".")).with_suffix(".py")
                and _missing_packages(module)):
            return True
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if type(item).__name__ != "DoctestItem":
            continue
        for module in _DOCTEST_NEEDS:
            if item.name == module or item.name.startswith(module + "."):
                missing = _missing_packages(module)
                if missing:
                    item.add_marker(pytest.mark.skip(
                        reason=f"doctest needs {', '.join(missing)}"))


@pytest.fixture(autouse=True)
def _allow_rank_promotion_in_keras_doctests(request):
    """Keras's own ops broadcast by rank; its doctests run them with promotion allowed."""
    if type(request.node).__name__ == "DoctestItem" and request.node.name.startswith(
            "jaxrnn._keras"):
        with jax.numpy_rank_promotion("allow"):
            yield
    else:
        yield
