"""Checkpoints: a layer and its params in one safetensors file.

``save(path, layer, params)`` writes every params array under a readable key (the path in
the params pytree: ``"forward/0/kernel"``) and puts into the file's metadata, as JSON, the
layer's config (`jaxrnn.serialize`), the params' structure (which containers are dicts,
lists or tuples, and each array's key and dtype) and a format version. ``load(path)``
rebuilds both, bit for bit. safetensors is imported lazily.

Metadata keys (all strings, as safetensors requires):

- ``"format"``: ``"jaxrnn"``; ``"format_version"``: ``"1"``; ``"jaxrnn_version"``.
- ``"layer"``: ``json.dumps(jaxrnn.serialize(layer))``.
- ``"structure"``: the params' skeleton. A dict is a JSON object, a list a JSON array, a
  tuple ``{"__tuple__": [...]}``, ``None`` null, and an array ``{"__array__": key,
  "dtype": name}``.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _registry

FORMAT = "jaxrnn"
FORMAT_VERSION = 1


def _safetensors():
    try:
        import safetensors
        import safetensors.numpy
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("jaxrnn.save/load need safetensors: pip install safetensors") from e
    return safetensors


def _escape(key: str) -> str:
    return key.replace("%", "%25").replace("/", "%2F")


def _flatten(tree: Any, prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    """Fills `arrays` with the leaves of `tree`; returns the JSON skeleton."""
    if isinstance(tree, dict):
        skeleton = {}
        for k, v in tree.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"jaxrnn.save: params dict keys must be strings; got {k!r} at "
                    f"{prefix or '<root>'}."
                )
            skeleton[k] = _flatten(v, f"{prefix}/{_escape(k)}" if prefix else _escape(k),
                                   arrays)
        return skeleton
    if isinstance(tree, (list, tuple)):
        if hasattr(tree, "_fields"):  # NamedTuple: its fields are rebuilt as a plain tuple
            tree = tuple(tree)
        items = [_flatten(v, f"{prefix}/{i}" if prefix else str(i), arrays)
                 for i, v in enumerate(tree)]
        return {"__tuple__": items} if isinstance(tree, tuple) else items
    if tree is None:
        return None
    if not hasattr(tree, "dtype") or not hasattr(tree, "shape"):
        raise TypeError(
            f"jaxrnn.save: params leaves must be arrays; got {type(tree).__name__} at "
            f"{prefix or '<root>'}."
        )
    key = prefix or "params"
    arrays[key] = np.ascontiguousarray(np.asarray(jax.device_get(tree)))
    return {"__array__": key, "dtype": arrays[key].dtype.name}


def save(path: str | os.PathLike, layer: Any, params: Any) -> None:
    """Writes `layer` (its config) and `params` (every array) to one safetensors file.

    The file is written to a temporary name beside `path` and renamed, so an interrupted
    save never leaves a half-written checkpoint.

    Args:
      path: the file to write (conventionally ``*.safetensors``).
      layer: any jaxrnn layer or cell (`RNN`, `Bidirectional`, `Sequential`, a cell), or a
        user-defined one that `jaxrnn.serialize` accepts.
      params: its params pytree: nested dicts (string keys), lists and tuples of arrays.

    Raises:
      TypeError: the layer has no config, or params hold something other than arrays.
      ValueError, TypeError: the params do not fit the layer (the error the layer's call
        would give), so that a bad checkpoint is never written.

    Example:
      >>> import os, tempfile, jax, jaxrnn as jr
      >>> layer = jr.LSTM(8, return_sequences=True)
      >>> params = layer.init(jax.random.key(0), (None, None, 3))
      >>> path = os.path.join(tempfile.mkdtemp(), "lstm.safetensors")
      >>> jr.save(path, layer, params)
      >>> loaded_layer, loaded_params = jr.load(path)
      >>> loaded_layer == layer, bool((loaded_params["kernel"] == params["kernel"]).all())
      (True, True)
    """
    st = _safetensors()
    config = json.dumps(_registry.serialize(layer))
    arrays: dict[str, np.ndarray] = {}
    structure = _flatten(params, "", arrays)
    check = getattr(layer, "check_params", None)
    if check is not None:
        try:
            check(params)
        except (ValueError, TypeError) as e:
            if type(e) not in (ValueError, TypeError):
                raise
            raise type(e)(f"jaxrnn.save: the params do not fit {type(layer).__name__}: {e} "
                          "Nothing was written.") from None
    from jaxrnn import __version__

    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                "jaxrnn_version": __version__, "layer": config,
                "structure": json.dumps(structure)}
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".jaxrnn-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        st.numpy.save_file(arrays, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _unflatten(skeleton: Any, tensors: dict[str, np.ndarray], path: str) -> Any:
    if isinstance(skeleton, list):
        return [_unflatten(v, tensors, path) for v in skeleton]
    if skeleton is None:
        return None
    if not isinstance(skeleton, dict):
        raise ValueError(f"jaxrnn.load: {path}: malformed params structure in the metadata.")
    if "__tuple__" in skeleton:
        return tuple(_unflatten(v, tensors, path) for v in skeleton["__tuple__"])
    if "__array__" in skeleton:
        key = skeleton["__array__"]
        if key not in tensors:
            raise ValueError(f"jaxrnn.load: {path}: the metadata names the array {key!r} but "
                             "the file has no such tensor; the file is damaged.")
        a = tensors[key]
        want = np.dtype(skeleton.get("dtype", a.dtype.name))
        if a.dtype != want:
            if a.dtype.itemsize != want.itemsize:
                raise ValueError(f"jaxrnn.load: {path}: array {key!r} is {a.dtype}, the "
                                 f"metadata says {want}; the file is damaged.")
            a = a.view(want)
        # jax arrays, unless their dtype needs jax_enable_x64 and it is off (then numpy,
        # so that no bit is lost).
        if jnp.dtype(jax.dtypes.canonicalize_dtype(a.dtype)) != a.dtype:
            return a
        return jnp.asarray(a)
    return {k: _unflatten(v, tensors, path) for k, v in skeleton.items()}


def load(path: str | os.PathLike, custom_objects: dict[str, type] | None = None
         ) -> tuple[Any, Any]:
    """Reads a file written by `save`: ``(layer, params)``, equal to what was saved.

    Arrays come back as jax arrays with their saved dtype (bfloat16 included) and bits;
    64-bit arrays come back as numpy arrays when ``jax_enable_x64`` is off.

    Args:
      path: the file.
      custom_objects: ``{"ClassName": cls}`` for user-defined cells or layers in the
        config that are not registered with `jaxrnn.register`.

    Returns:
      ``(layer, params)``.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: the file is not a safetensors file, is damaged, or was not written by
        `jaxrnn.save` (or by a newer format version); the message says which.

    Example:
      >>> import os, tempfile, jax, jaxrnn as jr
      >>> path = os.path.join(tempfile.mkdtemp(), "gru.safetensors")
      >>> jr.save(path, jr.GRU(4), jr.GRU(4).init(jax.random.key(0), (None, None, 2)))
      >>> layer, params = jr.load(path)
      >>> layer == jr.GRU(4), params["kernel"].shape  # [F, 3H]
      (True, (2, 12))
    """
    st = _safetensors()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"jaxrnn.load: no file at {path!r}.")
    try:
        with st.safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError, or OSError
        raise ValueError(
            f"jaxrnn.load: {path!r} is not a readable safetensors file ({type(e).__name__}: "
            f"{e}); it may be truncated or corrupted."
        ) from None
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"jaxrnn.load: {path!r} is a safetensors file without jaxrnn metadata (it was not "
            "written by jaxrnn.save), so it holds no layer config. Load its arrays with "
            "safetensors.numpy.load_file and build the layer yourself."
        )
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        version = -1
    if version < 1 or version > FORMAT_VERSION:
        raise ValueError(
            f"jaxrnn.load: {path!r} has format_version {metadata.get('format_version')!r}; this "
            f"jaxrnn reads versions 1 to {FORMAT_VERSION}. Upgrade jaxrnn to read it."
        )
    try:
        config = json.loads(metadata["layer"])
        structure = json.loads(metadata["structure"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"jaxrnn.load: {path!r}: damaged jaxrnn metadata ({e}).") from None
    layer = _registry.deserialize(config, custom_objects)
    params = _unflatten(structure, tensors, repr(path))
    return layer, params
