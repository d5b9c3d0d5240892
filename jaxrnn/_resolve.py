"""Activations and initializers by Keras's names, or as callables.

Names resolve to functions from :mod:`jax.nn` and :mod:`jax.nn.initializers`,
with Keras's default arguments where the two libraries disagree (``gelu`` is
exact in Keras, ``leaky_relu`` has slope 0.2, ``random_uniform`` is symmetric).
A callable that is not one of the named functions is kept as is and serialized
as ``"module:qualname"``, which :func:`activation` and :func:`initializer`
import back.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit


def _linear(x):
    return x


def _gelu(x):
    return jax.nn.gelu(x, approximate=False)  # Keras's gelu is the exact one


def _leaky_relu(x):
    return jax.nn.leaky_relu(x, negative_slope=0.2)  # Keras's default slope


def _exponential(x):
    return jnp.exp(x)


def _softmax(x):
    return jax.nn.softmax(x, axis=-1)


ACTIVATIONS: dict[str, Callable] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": jax.nn.hard_sigmoid,  # relu6(x + 3) / 6, as in Keras 3
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "linear": _linear,
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "gelu": _gelu,
    "softplus": jax.nn.softplus,
    "softsign": jax.nn.soft_sign,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "hard_silu": jax.nn.hard_silu,
    "hard_swish": jax.nn.hard_silu,
    "mish": jax.nn.mish,
    "leaky_relu": _leaky_relu,
    "log_sigmoid": jax.nn.log_sigmoid,
    "exponential": _exponential,
    "softmax": _softmax,
}


def _random_uniform(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, minval=-0.05, maxval=0.05)


def _identity(key, shape, dtype=jnp.float32):
    del key
    if len(shape) != 2:
        raise ValueError(f"identity initializer needs a 2-D shape; got {shape}.")
    rows, cols = shape
    return jnp.eye(rows, cols, dtype=dtype)


INITIALIZERS: dict[str, Callable] = {
    "glorot_uniform": jinit.glorot_uniform(),
    "glorot_normal": jinit.glorot_normal(),  # truncated, as in Keras
    "he_uniform": jinit.he_uniform(),
    "he_normal": jinit.he_normal(),
    "lecun_uniform": jinit.lecun_uniform(),
    "lecun_normal": jinit.lecun_normal(),
    "orthogonal": jinit.orthogonal(),
    "zeros": jinit.zeros,
    "ones": jinit.ones,
    "random_normal": jinit.normal(0.05),
    "truncated_normal": jinit.truncated_normal(0.05),
    "random_uniform": _random_uniform,
    "identity": _identity,
}

_ALIASES = {"glorot_uniform": ("GlorotUniform",), "orthogonal": ("Orthogonal",),
            "zeros": ("Zeros", "zero"), "ones": ("Ones", "one")}


def _lookup(table: dict[str, Callable], name: str, what: str, arg: str) -> Callable:
    key = name
    for canonical, aliases in _ALIASES.items():
        if name in aliases:
            key = canonical
    if key in table:
        return table[key]
    if ":" in name:  # "module:qualname", as written by `serialize`
        module, _, qualname = name.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            raise ValueError(
                f"{arg}: cannot import the {what} {name!r} ({e}). Make sure its module is "
                "importable, or pass the function itself."
            ) from None
        if not callable(obj):
            raise TypeError(f"{arg}: {name!r} is not callable; got {type(obj).__name__}.")
        return obj
    raise ValueError(
        f"{arg}: unknown {what} {name!r}. Expected one of {sorted(table)}, "
        "or a callable."
    )


def activation(spec: str | Callable | None, arg: str = "activation") -> Callable:
    """Returns the activation function named (or given) by `spec`."""
    if spec is None:
        return _linear
    if isinstance(spec, str):
        return _lookup(ACTIVATIONS, spec, "activation", arg)
    if callable(spec):
        return spec
    raise TypeError(
        f"{arg} must be an activation name such as 'tanh' or a callable; "
        f"got {type(spec).__name__} {spec!r}."
    )


def initializer(spec: str | Callable, arg: str = "initializer") -> Callable:
    """Returns the initializer `(key, shape, dtype) -> array` named (or given) by `spec`."""
    if isinstance(spec, str):
        return _lookup(INITIALIZERS, spec, "initializer", arg)
    if callable(spec):
        return spec
    raise TypeError(
        f"{arg} must be an initializer name such as 'glorot_uniform' or a callable "
        f"(key, shape, dtype) -> array; got {type(spec).__name__} {spec!r}."
    )


@functools.cache
def _names_by_function() -> dict[int, str]:
    names: dict[int, str] = {}
    for table in (ACTIVATIONS, INITIALIZERS):
        for name, fn in table.items():
            names.setdefault(id(fn), name)
    return names


def serialize(spec: str | Callable | None, arg: str) -> str | None:
    """Returns a JSON-friendly name for an activation or initializer."""
    if spec is None or isinstance(spec, str):
        return spec
    name = _names_by_function().get(id(spec))
    if name is not None:
        return name
    module = getattr(spec, "__module__", None)
    qualname = getattr(spec, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise ValueError(
            f"{arg}: cannot serialize {spec!r}: only named module-level functions can be "
            "written to a config. Define it with `def` at module level, or pass a name."
        )
    return f"{module}:{qualname}"
