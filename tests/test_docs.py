"""The documentation: reference entries for every public name, runnable code, a strict build.

- Every public name has a ``::: jaxrnn...`` entry on an API reference page (docs/api/) and
  a docstring example (``>>>``), which the test run executes as a doctest (see
  ``--doctest-modules`` in pyproject.toml).
- Every Python block (```python, or ```py) of README.md and of every page under docs/ runs,
  in order, in one namespace per file, as a reader would run them. A block that cannot run
  here (it needs several hosts, say) is marked on the line just above its fence with
  ``<!-- not run: the reason -->``: it is still compiled, so its syntax is checked, and the
  reason is required. Keep such marks rare; a fragment that only needs names from an earlier
  block runs fine, because the blocks of a file share one namespace.
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

# Fenced code blocks: the info string's first word is the language.
FENCE = re.compile(r"^```[ \t]*(?P<lang>[^\s`]*)[^\n]*\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
PYTHON = {"python", "py", "python3"}
NOT_RUN = re.compile(r"^<!--\s*not run:(?P<reason>.*?)-->$")
# Optional packages (the test extra installs them all): a block that needs a missing one is
# skipped, and so is the reference entry of an adapter whose framework is missing.
OPTIONAL = ("torch", "keras", "optax", "safetensors", "flax", "equinox", "jax2onnx",
            "onnxruntime")
# Keras's own ops broadcast by rank: a block that calls Keras runs with rank promotion
# allowed; every other block runs under the suite's "raise".
USES_KERAS = re.compile(r"\bkeras\.|^\s*import keras\b", re.M)


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
        except ModuleNotFoundError as e:
            if e.name not in OPTIONAL:  # an adapter whose framework is not installed
                pytest.fail(f"docs/api: '::: {path}' does not resolve: {e}")
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


def _markdown_files():
    """README.md and every page under docs/, as paths relative to the repository root."""
    pages = sorted(p.relative_to(ROOT).as_posix() for p in DOCS.rglob("*.md"))
    return ["README.md", *pages]


def _python_blocks(text):
    """``[(line, code, reason_not_run or None)]`` for the Python blocks of a markdown text."""
    blocks = []
    for m in FENCE.finditer(text):
        if m["lang"].lower() not in PYTHON:
            continue
        line = text.count("\n", 0, m.start()) + 1
        above = text[:m.start()].removesuffix("\n").rpartition("\n")[2].strip()
        mark = NOT_RUN.match(above)
        blocks.append((line, m["code"], mark["reason"].strip() if mark else None))
    return blocks


def _files_with_python():
    return [f for f in _markdown_files() if _python_blocks((ROOT / f).read_text())]


def test_readme_and_docs_have_python_blocks():
    files = _files_with_python()
    assert "README.md" in files and "docs/getting-started.md" in files, files


def test_not_run_marks_name_a_reason_and_sit_above_a_python_block():
    problems = []
    for name in _markdown_files():
        text = (ROOT / name).read_text()
        marked = {line for line, _, reason in _python_blocks(text) if reason is not None}
        for line, _, reason in _python_blocks(text):
            if reason == "":
                problems.append(f"{name}:{line}: '<!-- not run: -->' without a reason")
        lines = text.splitlines()
        for i, row in enumerate(lines):
            if (row.lstrip().startswith("<!-- not run")
                    and not (NOT_RUN.match(row.strip()) and i + 2 in marked)):
                problems.append(f"{name}:{i + 1}: a not-run mark must read "
                                "'<!-- not run: <reason> -->' on the line just above a "
                                "```python fence")
    assert not problems, "\n".join(problems)


def test_snippets_set_the_keras_backend_before_importing_keras():
    """The suite sets KERAS_BACKEND itself (conftest.py), so only reading can catch this: a
    reader's `import keras` without it tries TensorFlow."""
    problems = []
    for name in _markdown_files():
        code = "".join(c for _, c, _ in _python_blocks((ROOT / name).read_text()))
        first = re.search(r"^\s*(import keras|from keras)\b", code, flags=re.M)
        if first and "KERAS_BACKEND" not in code[:first.start()]:
            problems.append(name)
    assert not problems, (
        f"{problems}: set os.environ['KERAS_BACKEND'] = 'jax' in the snippet before its first "
        "`import keras` (Keras defaults to TensorFlow)")


@pytest.mark.parametrize("name", _files_with_python())
def test_python_blocks_run(name, tmp_path, monkeypatch):
    """Every Python block of the file, in order, in one namespace, from an empty folder."""
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them there
    namespace = {"__name__": f"snippets:{name}"}
    for line, code, reason in _python_blocks((ROOT / name).read_text()):
        where = f"{name}:{line}"
        # Padded with blank lines so that tracebacks give the markdown file's line numbers.
        compiled = compile("\n" * line + code, name, "exec")  # a not-run block still parses
        if reason is not None:
            continue
        promotion = "allow" if USES_KERAS.search(code) else "raise"
        try:
            with jax.numpy_rank_promotion(promotion):
                exec(compiled, namespace)
        except ModuleNotFoundError as e:
            if e.name in OPTIONAL:
                pytest.skip(f"{where} needs {e.name} (pip install -e '.[test]')")
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
