#!/usr/bin/env bash
# Builds the sdist and wheel with `python -m build`, installs the wheel into a fresh
# virtualenv (outside the source tree, so the checkout cannot shadow the installed package),
# and checks that it imports, has its version and type marker, and runs a layer.
#
# Usage: bash .ci/check_wheel.sh   (PYTHON=python3.12 to pick an interpreter; needs the
#                                   `build` package: pip install build)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "== python -m build"
"$PYTHON" -m build --outdir "$WORK/dist" .
ls -l "$WORK/dist"

WHEEL="$(ls "$WORK"/dist/jaxrnn-*.whl)"
echo "== wheel contents"
"$PYTHON" - "$WHEEL" <<'PY'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
for required in ("jaxrnn/__init__.py", "jaxrnn/py.typed"):
    assert required in names, f"{required} is not in the wheel: {names}"
stray = [n for n in names if n.split("/")[0] in ("tests", "examples", "benchmarks", "docs")]
assert not stray, f"the wheel should hold only the package; found {stray}"
print(len(names), "files, py.typed included")
PY

echo "== install into a clean virtualenv"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet --upgrade pip
"$WORK/venv/bin/python" -m pip install --quiet "$WHEEL"

echo "== import and run"
cd "$WORK"  # not the checkout: the import must find the installed package
"$WORK/venv/bin/python" - <<'PY'
import importlib.metadata
import pathlib

import jax
import jax.numpy as jnp

import jaxrnn as jr

assert jr.__version__ == importlib.metadata.version("jaxrnn"), jr.__version__
assert "site-packages" in jr.__file__, jr.__file__
assert (pathlib.Path(jr.__file__).parent / "py.typed").is_file()
layer = jr.LSTM(4, return_sequences=True)
params = layer.init(jax.random.key(0), (2, 3, 5))
assert layer(params, jnp.ones((2, 3, 5))).shape == (2, 3, 4)
print("jaxrnn", jr.__version__, "with jax", jax.__version__, "from", jr.__file__)
PY
echo "== wheel OK"
