"""Analytic inversion of a fully connected first layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import attacks
from gitjax import leak as leak_lib
from gitjax import models
from gitjax import victim as victim_lib
from gitjax.attacks import analytic


def _leak(key, name="mlp", b=1, **model):
  v = models.make_victim(name, input_shape=(4, 4, 3), num_classes=3, **model)
  variables = victim_lib.init_variables(v, key)
  xs = jax.random.uniform(jax.random.fold_in(key, 1), (b, 4, 4, 3))
  mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
  xs = (xs - jnp.asarray(mean)) / jnp.asarray(std)  # Normalized inputs.
  ys = jnp.arange(b) % 3
  return v, *leak_lib.simulate(v, variables, xs, ys, key, mean=mean, std=std)


def test_exact_recovery_of_one_input(key):
  v, leak, truth = _leak(key, hidden=(16,))
  rec = attacks.get("analytic")(leak, v, dict(name="analytic"), key)
  np.testing.assert_allclose(rec.images, truth.images, rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(rec.labels, truth.labels)
  assert rec.info["layer"] == "dense0" and rec.info["method"] == "exact"


def test_batch_candidates_from_single_example_units(key):
  # ReLU units active for one example only give that example exactly.
  v, leak, truth = _leak(key, b=2, hidden=(256,), activation="relu")
  rec = analytic.attack(leak, v, {}, key)
  err = np.abs(np.asarray(rec.images)[:, None] - np.asarray(truth.images)[None])
  best = err.reshape(2, 2, -1).max(-1).min(0)  # Best candidate per truth.
  assert rec.images.shape == truth.images.shape and np.all(best < 1e-3)
  assert rec.info["method"] == "grouped_ratios"


def test_analytic_errors(key):
  v = models.make_victim("lenet", input_shape=(4, 4, 3), num_classes=3)
  msg = jax.eval_shape(lambda: victim_lib.init_variables(v, key))["params"]
  with pytest.raises(ValueError, match="layer 'conv0' is a convolution"):
    analytic.first_dense_layer(msg, (4, 4, 3))
  with pytest.raises(ValueError, match="Dense layer 'dense0' has none"):
    analytic.first_dense_layer({"dense0": {"kernel": jnp.zeros((48, 2))}},
                               (4, 4, 3))
  with pytest.raises(ValueError, match="none found among"):
    analytic.first_dense_layer({"w": jnp.zeros((48, 2))}, (4, 4, 3))
  v, leak, _ = _leak(key, hidden=(4,))
  with pytest.raises(ValueError, match=r"unknown analytic attack config "
                     r"key\(s\) \['iterations'\]"):
    analytic.attack(leak, v, dict(iterations=3), key)
