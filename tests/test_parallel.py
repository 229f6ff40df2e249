"""Data parallelism: the sharded inverter step equals the one-device step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import git_lenet
from gitjax import inverter_setup
from gitjax import parallel
from gitjax import train_inverter


def test_sharded_train_step_equals_single_device_step():
  config = git_lenet.get_config("budget=smoke")
  config.victim = dict(name="lenet", channels=2)
  config.inverter.update(depth=0, heads=1)  # Small graph: quick to compile.
  config.data.limit = 16
  config.leak.defense = [dict(name="gaussian", sigma=0.01)]
  setup, train, _ = train_inverter.prepare_data(config)
  n = 8
  images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
  state0 = inverter_setup.init_state(setup, 0)

  def run(mesh):
    step = train_inverter.make_train_step(setup, n, mesh)
    state, data = state0, (images, labels, setup.variables)
    if mesh is not None:
      state, data = parallel.put_replicated(mesh, (state0, data))
    order = train_inverter.EpochOrder(
        state0.rng, n, len(labels),
        None if mesh is None else parallel.replicated(mesh))
    outs = []
    for t in range(3):  # 3 steps of 8 cross the first epoch of 16.
      state, metrics = step(state, *data, order(t))
      outs.append(float(metrics["loss"]))
    return state, outs

  single, loss1 = run(None)
  mesh = parallel.data_mesh()
  assert mesh.devices.size == 8
  with jax.set_mesh(mesh):
    sharded, loss8 = run(mesh)
  assert all(p.sharding.is_fully_replicated
             for p in jax.tree.leaves(sharded.params))
  np.testing.assert_allclose(loss1, loss8, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(single.params),
                  jax.tree.leaves(sharded.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert int(sharded.step) == 3


def test_put_batch_shards_the_leading_axis():
  mesh = parallel.data_mesh(4)
  x = parallel.put_batch(mesh, np.arange(8.0).reshape(8, 1))
  assert x.sharding == parallel.batch_sharding(mesh)
  assert [s.data.shape for s in x.addressable_shards] == [(2, 1)] * 4
  np.testing.assert_array_equal(x, np.arange(8.0).reshape(8, 1))
  with pytest.raises(ValueError, match="batch of 6 does not split over 4"):
    parallel.put_batch(mesh, np.zeros((6, 1)))


def test_bad_mesh_requests():
  with pytest.raises(ValueError, match="num_devices=9 but 8 devices"):
    parallel.data_mesh(9)
  with pytest.raises(ValueError, match="not a multiple of the 2 devices"):
    parallel.check_divisible(3, parallel.data_mesh(2))
