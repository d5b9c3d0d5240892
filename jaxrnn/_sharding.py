"""Data-parallel training with `jax.sharding`: the batch split over devices, params replicated.

jaxrnn's layers are pure functions, so data parallelism needs no wrapper around them: put
the params on every device, split each batch along its batch axis, and `jax.jit` the
training step as usual; XLA runs every device on its slice and all-reduces the gradients.

    mesh = data_mesh()                                # 1-D Mesh over all devices, axis "data"
    params, opt_state = replicate((params, opt_state), mesh)
    for x, y in batches:
        x, y = shard_batch((x, y), mesh)              # [B, ...] split along B
        params, opt_state, loss = train_step(params, opt_state, x, y)   # a jitted step

The helpers add checks with clear messages (a batch that does not split evenly), the
batch axis of time-major sequences (``axis=1``) and multi-host input. A stateful layer's
state is [B, H] per array: ``shard_batch(state, mesh)`` keeps each sample's state on the
device that holds the sample, and the jitted step returns it sharded the same way.

Multi-host: call ``jax.distributed.initialize()`` first in every process; `data_mesh`
then spans every process's devices and `shard_batch` takes each process's local part of
the batch (``jax.make_array_from_process_local_data``), so the global batch is the
processes' batches stacked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def data_mesh(devices: Sequence[Any] | None = None, axis_name: str = "data") -> Mesh:
    """A 1-D `Mesh` over `devices` (default: all of them, every process's) named `axis_name`.

    Example:
      >>> mesh = data_mesh()
      >>> mesh.axis_names
      ('data',)
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("data_mesh: devices is empty; pass None for all devices.")
    return Mesh(np.asarray(devices), (axis_name,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Puts every array of `tree` (params, optimizer state) whole on every device of `mesh`.

    Example:
      >>> import jax, jaxrnn as jr
      >>> mesh = jr.data_mesh()
      >>> params = jr.replicate(jr.LSTM(4).init(jax.random.key(0), (None, None, 3)), mesh)
      >>> params["kernel"].sharding.is_fully_replicated
      True
    """
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda a: jax.device_put(a, sharding), tree)


def shard_batch(tree: Any, mesh: Mesh, axis: int = 0, axis_name: str | None = None) -> Any:
    """Splits every array of `tree` along its batch axis over the devices of `mesh`.

    Args:
      tree: arrays sharing the batch size B on `axis`: sequences [B, T, F], masks [B, T],
        targets [B, ...], a stateful layer's states [B, H].
      mesh: from `data_mesh`.
      axis: the batch axis (1 for time-major sequences [T, B, F]).
      axis_name: the mesh axis to split over; default the mesh's first.

    Returns:
      the same tree, each array a global `jax.Array` sharded along `axis`. With several
      processes, each passes its local part and gets the global array.

    Raises:
      ValueError: an array has no `axis`, or its batch size does not split evenly over the
        devices.

    Example:
      >>> import jax.numpy as jnp, jaxrnn as jr
      >>> mesh = jr.data_mesh()
      >>> x, mask = jr.shard_batch((jnp.ones((8, 5, 3)), jnp.ones((8, 5), bool)), mesh)
      >>> x.shape, x.sharding.spec[0]  # the global [B, T, F] array, split along B
      ((8, 5, 3), 'data')
    """
    name = axis_name or mesh.axis_names[0]
    n = mesh.shape[name]
    processes = jax.process_count()

    def put(a):
        shape = np.shape(a)
        if not -len(shape) <= axis < len(shape):
            raise ValueError(
                f"shard_batch: an array of shape {shape} has no batch axis {axis}; every array "
                "in the tree must have one (pass axis=1 for time-major [T, B, F] sequences)."
            )
        spec: list[str | None] = [None] * len(shape)
        spec[axis] = name
        sharding = NamedSharding(mesh, PartitionSpec(*spec))
        local = n // processes if processes > 1 else n
        if shape[axis] % local:
            raise ValueError(
                f"shard_batch: batch size {shape[axis]} (axis {axis} of shape {shape}) does not "
                f"split evenly over {local} devices; use a batch size divisible by {local} (pad "
                "the batch and mask the padding, or drop the remainder)."
            )
        if processes > 1:
            return jax.make_array_from_process_local_data(sharding, np.asarray(a))
        return jax.device_put(a, sharding)

    return jax.tree.map(put, tree)
