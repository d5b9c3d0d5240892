"""Configs that name their class: ``{"class_name": ..., "config": {...}}``.

Every jaxrnn cell and layer registers itself here, so a nested config (an `RNN`
over a `StackedRNNCells` of user-defined cells, say) can be rebuilt from JSON.
User-defined classes register with :func:`register`, or are passed to
``from_config(..., custom_objects={"Name": cls})`` as in Keras.
"""

from __future__ import annotations

from typing import Any

_REGISTRY: dict[str, type] = {}


def register(cls: type | None = None, *, name: str | None = None):
    """Registers a cell or layer class so that configs can name it.

    Usable as ``@jr.register`` or ``@jr.register(name="MyCell")``. The class needs
    ``get_config()`` and a classmethod ``from_config(config)`` (or a constructor
    that accepts the config's keys).

    Example:
      >>> import dataclasses, jaxrnn as jr
      >>> @jr.register
      ... @dataclasses.dataclass(frozen=True)
      ... class ScaledLSTMCell(jr.LSTMCell):
      ...     scale: float = 1.0
      >>> layer = jr.RNN(ScaledLSTMCell(8, scale=0.5))
      >>> jr.RNN.from_config(layer.get_config()) == layer
      True
    """

    def add(c: type) -> type:
        _REGISTRY[name or c.__name__] = c
        return c

    return add if cls is None else add(cls)


def serialize(obj: Any) -> dict:
    """Returns ``{"class_name": ..., "config": obj.get_config()}``.

    Example:
      >>> import jaxrnn as jr
      >>> serialized = jr.serialize(jr.GRUCell(4))
      >>> serialized["class_name"]
      'GRUCell'
      >>> cell_config = serialized["config"]
      >>> cell_config["units"]
      4
    """
    get_config = getattr(obj, "get_config", None)
    if get_config is None:
        raise TypeError(
            f"cannot serialize {type(obj).__name__}: it has no get_config(). Give it a "
            "get_config() that returns its constructor arguments as a dict."
        )
    registered = [n for n, c in _REGISTRY.items() if c is type(obj)]
    return {"class_name": registered[0] if registered else type(obj).__name__,
            "config": get_config()}


def deserialize(config: dict, custom_objects: dict[str, type] | None = None) -> Any:
    """Rebuilds an object from the output of :func:`serialize`.

    Example:
      >>> import jaxrnn as jr
      >>> jr.deserialize({"class_name": "LSTMCell", "config": {"units": 8}}) == jr.LSTMCell(8)
      True
    """
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        raise ValueError(
            "expected a config of the form {'class_name': ..., 'config': {...}}; "
            f"got {config!r}."
        )
    name = config["class_name"]
    cls = (custom_objects or {}).get(name) or _REGISTRY.get(name)
    if cls is None:
        raise ValueError(
            f"unknown class {name!r} in config. Known classes: {sorted(_REGISTRY)}. "
            "Register a user-defined class with @jaxrnn.register, or pass "
            f"custom_objects={{{name!r}: {name}}}."
        )
    from_config = getattr(cls, "from_config", None)
    if from_config is None:
        return cls(**config["config"])
    try:
        return from_config(config["config"], custom_objects=custom_objects)
    except TypeError as e:
        if "custom_objects" not in str(e):
            raise
        return from_config(config["config"])
