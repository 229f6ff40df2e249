"""GradInversion: BatchNorm prior and group consistency on the shared engine."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gitjax import attacks
from gitjax import leak as leak_lib
from gitjax import models
from gitjax import victim as victim_lib
from gitjax.attacks import engine
from gitjax.attacks import gradinversion
from gitjax.attacks import objectives


def _leak(b=2):
  v = models.make_victim("convnet", input_shape=(12, 12, 3), num_classes=4,
                         width=2, init="torch")
  variables = victim_lib.init_variables(v, jax.random.key(0))
  xs = jax.random.uniform(jax.random.key(1), (b, 12, 12, 3))
  leak, truth = leak_lib.simulate(v, variables, xs, jnp.arange(b) % 4,
                                  jax.random.key(2))
  return v, leak, truth


def _spread(images_per_restart):
  x = np.asarray(images_per_restart)
  return float(np.mean(np.std(x, axis=0)))


def test_objective_falls_box_holds_and_consensus_refreshes():
  v, leak, truth = _leak()
  cfg = dict(iterations=12, restarts=3, group_every=4, warmup=2,
             bn_prior=1e-4, progress=False)  # A fresh victim's BN stats.
  rec = attacks.get("gradinversion")(leak, v, cfg, jax.random.key(3))
  assert rec.images.shape == truth.images.shape
  assert float(rec.images.min()) >= 0.0 and float(rec.images.max()) <= 1.0
  assert rec.info["history"]["iteration"] == [4, 8, 12]  # Chunks end there.
  first = min(rec.info["history"]["loss"][0])
  assert rec.info["loss"] < first
  assert rec.info["group_every"] == 4 and rec.info["restarts"] == 3
  np.testing.assert_array_equal(np.sort(rec.labels), np.sort(truth.labels))


def test_consensus_hook_pulls_restarts_together():
  # Three restarts apart and nothing else to fit: the group term (through
  # the engine's hook, as the attack runs it) pulls them to their mean.
  spreads = {}
  for weight in (0.0, 2.0):
    penalty = gradinversion.GroupConsistency(weight)

    def loss(v, data, penalty=penalty):
      x = v["x"]
      return 0.0 * jnp.sum(x) + penalty(v, x, data["aux"])

    init = {"x": jnp.asarray([-1.0, 0.0, 1.0]).reshape(3, 1, 1, 1, 1)}
    data = {"aux": jnp.zeros((1, 1, 1, 1))}
    out, _ = engine.optimize(
        loss, init, optax.sgd(0.05), data, per_trial=False, select=False,
        on_chunk=gradinversion.consensus_hook(5),
        options=engine.Options(iterations=60, chunk=5, progress=False))
    spreads[weight] = float(jnp.ptp(out["x"]))
  assert spreads[0.0] == 2.0 and spreads[2.0] < 0.5


def test_group_term_is_zero_at_the_consensus():
  x = jax.random.uniform(jax.random.key(0), (2, 4, 4, 3))
  g = jax.grad(lambda y: objectives.group_distance(y, x))(x)
  assert bool(jnp.all(jnp.isfinite(g)))  # Finite right after a snapshot.
  assert float(objectives.group_distance(x, x)) < 1e-5
  assert float(objectives.group_distance(x, x + 1.0)) == pytest.approx(
      2 * np.sqrt(48) / 16, rel=1e-5)


def test_bad_settings_raise():
  v, leak, _ = _leak(b=1)
  with pytest.raises(ValueError, match="group_every must be >= 1"):
    gradinversion.attack(leak, v, dict(group_every=0), jax.random.key(0))
  with pytest.raises(ValueError, match="unknown attack config key"):
    gradinversion.attack(leak, v, dict(groups=1.0), jax.random.key(0))
  lenet = models.make_victim("lenet", input_shape=(12, 12, 3), num_classes=4)
  lv = victim_lib.init_variables(lenet, jax.random.key(0))
  lk, _ = leak_lib.simulate(lenet, lv, jnp.zeros((1, 12, 12, 3)),
                            jnp.zeros((1,), jnp.int32), jax.random.key(1))
  with pytest.raises(ValueError, match="bn_prior needs a victim with "
                     "BatchNorm"):
    gradinversion.attack(lk, lenet, dict(iterations=1), jax.random.key(0))
