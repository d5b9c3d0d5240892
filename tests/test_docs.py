"""The documentation: reference entries for every public name, runnable code, a strict build.

- Every public name has a ``::: jaxrnn...`` entry on an API reference page (docs/api/) and
  a docstring example (``>>>``), which the test run executes as a doctest (see
  ``--doctest-modules`` in pyproject.toml).
- The ```python blocks of every docs page run, in order, in one namespace per page, as a
  reader would run them (```py blocks are illustrations and do not run).
- ``mkdocs build --strict`` passes, where mkdocs and its plugins are installed (the docs
  extra); .ci/run and the GitHub workflow build the site as well.
"""

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import jaxrnn as jr

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

PUBLIC = sorted(name for name in jr.__all__ if name != "__version__")

KERAS_PAGES = {"guides/coming-from-keras.md"}


def _directives():
    """``{object path: page}`` for every ``::: path`` line of docs/api/*.md."""
    found = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        for path in re.findall(r"^:::\s+(\S+)\s*$", page.read_text(), flags=re.M):
            found[path] = page.name
    return found


def _resolve(path):
    module, _, attr = path.rpartition(".")
    obj = __import__(module, fromlist=[attr])
    return getattr(obj, attr)


def test_every_public_name_has_a_reference_entry():
    entries = {}
    for path in _directives():
        try:
            entries.setdefault(id(_resolve(path)), path)
        except (ImportError, AttributeError) as e:
            pytest.fail(f"docs/api: '::: {path}' does not resolve: {e}")
    missing = [n for n in PUBLIC if id(getattr(jr, n)) not in entries]
    assert not missing, (
        f"public names without an API reference entry: {missing}. Add '::: jaxrnn.<name>' "
        "to a page under docs/api/."
    )
    # Exported names are documented under their public path, jaxrnn.<name>.
    private = [entries[id(getattr(jr, n))] for n in PUBLIC
               if entries[id(getattr(jr, n))] != f"jaxrnn.{n}"]
    assert not private, f"document exported names as '::: jaxrnn.<name>'; found {private}"


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_has_an_example(name):
    doc = inspect.getdoc(getattr(jr, name)) or ""
    assert ">>>" in doc, f"jaxrnn.{name}'s docstring needs an Example: block with >>> lines"


def _pages():
    return sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))


@pytest.mark.parametrize("page", _pages())
def test_docs_code_blocks_run(page):
    text = (DOCS / page).read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)
    if not blocks:
        pytest.skip("no ```python blocks")
    namespace = {"__name__": f"docs/{page}"}
    # Keras's own ops broadcast by rank: its page runs with rank promotion allowed.
    promotion = "allow" if page in KERAS_PAGES else "raise"
    with jax.numpy_rank_promotion(promotion):
        _run_blocks(page, blocks, namespace)


def _run_blocks(page, blocks, namespace):
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"docs/{page}[python block {i}]", "exec"), namespace)
        except ModuleNotFoundError as e:
            if e.name in ("torch", "keras", "optax", "safetensors"):
                pytest.skip(f"needs {e.name}")
            raise


def test_mkdocs_build_strict(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="the docs extra is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
