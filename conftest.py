"""Pytest setup shared by tests/ and the package's doctests (jaxrnn/*.py).

It sits at the repository root so that it applies to both: the docstring examples run
under the same settings as the tests.
"""

import importlib.util
import os

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


# Doctests of the interop modules need their optional libraries; skip them (rather than
# fail) where those are not installed. The test extra installs all three.
_DOCTEST_NEEDS = {
    "jaxrnn._keras": "keras",
    "jaxrnn._torch": "torch",
    "jaxrnn._io": "safetensors",
}


def pytest_collection_modifyitems(config, items):
    missing = {}
    for item in items:
        if type(item).__name__ != "DoctestItem":
            continue
        for prefix, package in _DOCTEST_NEEDS.items():
            if item.name == prefix or item.name.startswith(prefix + "."):
                if package not in missing:
                    missing[package] = importlib.util.find_spec(package) is None
                if missing[package]:
                    item.add_marker(pytest.mark.skip(reason=f"doctest needs {package}"))


@pytest.fixture(autouse=True)
def _allow_rank_promotion_in_keras_doctests(request):
    """Keras's own ops broadcast by rank; its doctests run them with promotion allowed."""
    if type(request.node).__name__ == "DoctestItem" and request.node.name.startswith(
            "jaxrnn._keras"):
        with jax.numpy_rank_promotion("allow"):
            yield
    else:
        yield
