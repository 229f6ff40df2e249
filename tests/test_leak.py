"""Protocols and leak simulation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import leak as leak_lib
from gitjax import models
from gitjax import protocols
from gitjax import victim as victim_lib


def _setup(key, b=4):
  v = models.make_victim("lenet", input_shape=(8, 8, 3), num_classes=4)
  variables = victim_lib.init_variables(v, key)
  xs = jax.random.uniform(jax.random.fold_in(key, 1), (b, 8, 8, 3))
  ys = jnp.arange(b) % 4
  return v, variables, xs, ys


def test_fedavg_one_step_is_minus_lr_fedsgd(key):
  v, variables, xs, ys = _setup(key)
  params, state = victim_lib.split(variables)
  g = protocols.fedsgd_message(v, params, state, xs, ys)
  upd = jax.jit(lambda p: protocols.fedavg_update(
      v, p, state, xs, ys, lr=0.1))(params)
  jax.tree.map(lambda u, gg: np.testing.assert_allclose(
      u, -0.1 * gg, rtol=1e-4, atol=1e-7), upd, g)


def test_fedavg_several_steps_equals_python_loop(key):
  v, variables, xs, ys = _setup(key)
  params, state = victim_lib.split(variables)
  upd = protocols.fedavg_update(v, params, state, xs, ys, lr=0.05, epochs=2,
                                local_batch_size=2)
  p = params
  for _ in range(2):
    for j in range(2):
      g = victim_lib.batch_grad(v, p, state, xs[2 * j:2 * j + 2],
                                ys[2 * j:2 * j + 2])
      p = jax.tree.map(lambda a, d: a - 0.05 * d, p, g)
  want = jax.tree.map(jnp.subtract, p, params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-6), upd, want)
  with pytest.raises(ValueError, match="must divide"):
    protocols.fedavg_update(v, params, state, xs, ys, lr=0.1,
                            local_batch_size=3)


def test_simulate_separates_leak_from_truth(key):
  v, variables, xs, ys = _setup(key)
  leak, truth = leak_lib.simulate(v, variables, xs, ys, key,
                                  defense=dict(name="gaussian", sigma=0.0))
  assert leak.labels is None and leak.batch_size == 4
  assert not hasattr(leak, "images")
  np.testing.assert_array_equal(truth.images, xs)
  g = victim_lib.batch_grad(v, variables["params"], {}, xs, ys)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-7),
               leak.message, g)
  leak_lib.validate(leak, v)


def test_rounds_of_one_setting_compile_once(key):
  """A benchmark plays hundreds of rounds: the client's program is compiled
  for the first and reused (it was recompiled every round, 3 s each)."""
  v, variables, xs, ys = _setup(key)
  defense = [dict(name="gaussian", sigma=0.1)]

  def play(i, config):
    return leak_lib.simulate(v, variables, xs + i, ys, jax.random.key(i),
                             defense=[dict(d) for d in config])[0]

  play(0, defense)
  size = leak_lib._send._cache_size()
  for i in range(1, 4):
    play(i, defense)  # Equal settings (new dicts), new data: no compile.
  assert leak_lib._send._cache_size() == size
  play(4, [dict(name="gaussian", sigma=0.2)])  # Another setting compiles.
  assert leak_lib._send._cache_size() == size + 1
  a, b = play(1, defense), play(1, defense)
  jax.tree.map(np.testing.assert_array_equal, a.message, b.message)


def test_multi_client_mean(key):
  v, variables, xs, ys = _setup(key)
  leak, _ = leak_lib.simulate(v, variables, xs, ys, key, num_clients=2,
                              labels_shared=True)
  g1 = victim_lib.batch_grad(v, variables["params"], {}, xs[:2], ys[:2])
  g2 = victim_lib.batch_grad(v, variables["params"], {}, xs[2:], ys[2:])
  jax.tree.map(lambda a, b, c: np.testing.assert_allclose(
      a, (b + c) / 2, rtol=1e-5, atol=1e-7), leak.message, g1, g2)
  assert leak.batch_size == 2 and leak.labels.shape == (4,)


def test_discrepancy_changes_client_params_only(key):
  v, variables, xs, ys = _setup(key)
  leak, truth = leak_lib.simulate(
      v, variables, xs, ys, key, discrepancy=dict(kind="stale", steps=2))
  assert not np.allclose(truth.client_variables["params"]["head"]["kernel"],
                         leak.params["head"]["kernel"])
  np.testing.assert_array_equal(leak.params["head"]["kernel"],
                                variables["params"]["head"]["kernel"])
  with pytest.raises(ValueError, match="unknown discrepancy kind"):
    leak_lib.simulate(v, variables, xs, ys, key, discrepancy=dict(kind="x"))


def test_bad_inputs_have_clear_errors(key):
  v, variables, xs, ys = _setup(key)
  with pytest.raises(ValueError, match="expects"):
    leak_lib.simulate(v, variables, xs[..., :1], ys, key)
  with pytest.raises(ValueError, match="unknown protocol"):
    leak_lib.simulate(v, variables, xs, ys, key, protocol="fedprox")
  leak, _ = leak_lib.simulate(v, variables, xs, ys, key)
  bad = dict(leak.message)
  bad["head"] = {"kernel": bad["head"]["kernel"][:3], "bias": bad["head"]["bias"]}
  import dataclasses
  with pytest.raises(ValueError, match=r"shape \(3, 4\) at \['head'\]"):
    leak_lib.validate(dataclasses.replace(leak, message=bad), v)
  nan = jax.tree.map(lambda m: m * jnp.nan, leak.message)
  with pytest.raises(ValueError, match="NaN or Inf"):
    leak_lib.validate(dataclasses.replace(leak, message=nan), v)
  missing = {k: m for k, m in leak.message.items() if k != "head"}
  with pytest.raises(ValueError, match="missing"):
    leak_lib.validate(dataclasses.replace(leak, message=missing), v)


def test_sharded_clients_equal_mean_of_clients(key):
  v, variables, _, _ = _setup(key)
  n = jax.device_count()
  assert n == 8  # conftest asks for 8 virtual CPU devices.
  xs = jax.random.uniform(key, (n, 2, 8, 8, 3))  # [K, B, ...]
  ys = jnp.arange(2 * n).reshape(n, 2) % 4
  params, state = victim_lib.split(variables)
  mesh = jax.make_mesh((n,), ("data",))
  cfg = dict(lr=0.1)
  got = protocols.sharded_multi_client_message(
      v, params, state, xs, ys, "fedavg", cfg, mesh)
  want = protocols.multi_client_message(v, params, state, xs, ys, "fedavg",
                                        cfg)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-7), got, want)
  with pytest.raises(ValueError, match="do not split over 8 devices"):
    protocols.sharded_multi_client_message(v, params, state, xs[:3], ys[:3],
                                           "fedavg", cfg, mesh)


def test_freeze_hashes_settings_by_value():
  from gitjax import client_model
  a = client_model.freeze([dict(name="prune", rate=np.float32(0.5),
                                rates=np.array([0.1, 0.2]))])
  b = client_model.freeze([dict(rates=np.array([0.1, 0.2]), rate=0.5,
                                name="prune")])
  assert a == b and hash(a) == hash(b)
  assert a != client_model.freeze([dict(name="prune", rate=0.5,
                                        rates=np.array([0.1, 0.3]))])
