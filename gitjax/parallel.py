"""Data parallelism over a one-axis device mesh (current ``jax.sharding`` API).

Parameters are replicated (``P()``) and batches are sharded on the "data"
axis (``P("data")``); ``jax.jit`` inserts the all-reduce of the gradients.
Multi-host runs call ``jax.distributed.initialize()`` first (the launchers'
``--multihost``); every helper here then works on the global mesh, and
``put_batch``/``put_replicated`` build global arrays from each process's
local data with ``jax.make_array_from_process_local_data``.

Per-example gradients run per device under ``jax.shard_map``: with jax
0.10.2 on CPU, letting the partitioner shard ``vmap(grad)`` of a convolution
over the batch returns wrong kernel gradients for all but the first example
of each shard (``per_example_grads`` below has the minimal workaround).

The mesh axis is ``AxisType.Auto``: the inverter's per-example convolutions
(vmapped over examples with per-example kernels) and the dataset gather have
no sharding rule in Explicit mode, and data-parallel results are the same.
"""

import functools

import jax
import numpy as np

from gitjax import victim as victim_lib

DATA = "data"


def data_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh named "data" over the first ``num_devices`` devices (all)."""
  n = jax.device_count() if num_devices is None else num_devices
  if not 1 <= n <= jax.device_count():
    raise ValueError(
        f"num_devices={n} but {jax.device_count()} devices are available")
  return jax.make_mesh((n,), (DATA,),
                       axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:n])


def replicated(mesh) -> jax.NamedSharding:
  return jax.NamedSharding(mesh, jax.P())


def batch_sharding(mesh) -> jax.NamedSharding:
  return jax.NamedSharding(mesh, jax.P(DATA))


def put_replicated(mesh, tree):
  """Places a host tree (the same on every process) replicated on ``mesh``."""
  sharding = replicated(mesh)

  def put(x):
    if isinstance(x, jax.Array) and x.is_fully_addressable:
      return jax.device_put(x, sharding)
    if jax.process_count() == 1:
      return jax.device_put(np.asarray(x), sharding)
    return jax.make_array_from_process_local_data(sharding, np.asarray(x))

  return jax.tree.map(put, tree)


def put_batch(mesh, host_batch):
  """Shards a batch on the "data" axis (each process passes its own slice).

  The leading dimension of every leaf is this process's share of the global
  batch; it must divide evenly among the process's devices.
  """
  sharding = batch_sharding(mesh)
  local = jax.local_device_count() if jax.process_count() > 1 else (
      mesh.devices.size)

  def put(x):
    x = np.asarray(x)
    if x.shape[0] % local:
      raise ValueError(
          f"batch of {x.shape[0]} does not split over {local} devices")
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree.map(put, host_batch)


def check_divisible(global_batch: int, mesh) -> None:
  """Raises ValueError unless the global batch splits over the mesh."""
  n = mesh.devices.size
  if global_batch % n:
    raise ValueError(
        f"global batch {global_batch} is not a multiple of the {n} devices "
        f"of the data mesh; pick a batch size divisible by {n}")


def shard_batch(x, mesh):
  """Inside jit: constrains ``x`` to be sharded on its leading axis."""
  if mesh is None:
    return x
  return jax.lax.with_sharding_constraint(x, batch_sharding(mesh))


def per_example_grads(victim, params, state, xs, ys, chunk_size=None,
                      mesh=None):
  """``victim.per_example_grads`` with the batch split over ``mesh``.

  Each device differentiates its own examples (``jax.shard_map``); the
  parameters are cast to device-varying first, so that the gradient with
  respect to them is the device's own and not summed over devices.
  """
  fn = functools.partial(victim_lib.per_example_grads, victim,
                         chunk_size=chunk_size)
  if mesh is None:
    return fn(params, state, xs, ys)

  def local(params, state, xs, ys):
    params = jax.tree.map(
        lambda p: jax.lax.pcast(p, DATA, to="varying"), params)
    return fn(params, state, xs, ys)

  return jax.shard_map(
      local, mesh=mesh, in_specs=(jax.P(), jax.P(), jax.P(DATA), jax.P(DATA)),
      out_specs=jax.P(DATA))(params, state, xs, ys)
