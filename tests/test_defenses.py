"""Each defense's defining property, on tiny messages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import client_model
from gitjax import defenses
from gitjax import models
from gitjax import victim as victim_lib


@pytest.fixture
def message(key):
  k1, k2 = jax.random.split(key)
  return {"a": {"kernel": jax.random.normal(k1, (6, 5))},
          "head": {"kernel": jax.random.normal(k2, (4, 3)),
                   "bias": jnp.arange(3.0) - 1.0}}


def test_clip_bounds_global_norm(message):
  out = jax.jit(lambda m: defenses.clip(m, max_norm=1.5))(message)
  np.testing.assert_allclose(defenses.global_norm(out), 1.5, rtol=1e-5)
  small = defenses.clip(message, max_norm=1e3)  # Below the bound: unchanged.
  jax.tree.map(np.testing.assert_allclose, small, message)


def test_clip_per_layer_bounds_each_tensor(message):
  out = defenses.clip_per_layer(message, max_norm=0.5)
  for leaf in jax.tree.leaves(out):
    assert float(jnp.linalg.norm(leaf)) <= 0.5 + 1e-5


def test_prune_sparsity(message):
  out = jax.jit(lambda m: defenses.prune(m, rate=0.5))(message)
  k = out["a"]["kernel"]
  assert int(jnp.sum(k == 0)) == 15
  # The kept entries are the largest in magnitude.
  kept = jnp.abs(message["a"]["kernel"])[k != 0]
  dropped = jnp.abs(message["a"]["kernel"])[k == 0]
  assert float(kept.min()) > float(dropped.max())
  with pytest.raises(ValueError, match="prune rate"):
    defenses.prune(message, rate=1.0)


def test_kth_smallest_equals_the_sorted_entry(key):
  """Bisection on float32 bits gives the sort's k-th entry, ties and zeros
  included, also vmapped (as GGL's attacker-side pruning is)."""
  a = jnp.abs(jax.random.normal(key, (3, 257)))
  a = a.at[:, :40].set(0.0).at[:, 40:60].set(0.5)  # Zeros and ties.
  for k in (1, 40, 41, 55, 60, 61, 200, 257):
    want = jnp.sort(a, axis=1)[:, k - 1]
    got = jax.jit(jax.vmap(lambda r, k=k: defenses.kth_smallest(r, k)))(a)
    np.testing.assert_array_equal(got, want)
  big = jnp.asarray([3e38, jnp.inf, 1e-45], jnp.float32)  # Extremes.
  np.testing.assert_array_equal(
      [defenses.kth_smallest(big, k) for k in (1, 2, 3)], big[jnp.array([2, 0, 1])])
  f64 = np.abs(np.random.default_rng(0).normal(size=9))
  assert float(defenses.kth_smallest(jnp.asarray(f64, jnp.float16), 3)) == \
      float(jnp.sort(jnp.asarray(f64, jnp.float16))[2])


def test_sign_values(message):
  out = defenses.sign(message)
  for leaf in jax.tree.leaves(out):
    assert set(np.unique(np.asarray(leaf))) <= {-1.0, 0.0, 1.0}


def test_quantize_levels(message, key):
  out = defenses.quantize(message, bits=2)
  k = out["a"]["kernel"]
  assert len(np.unique(np.asarray(k))) <= 4
  st = defenses.quantize(message, key, bits=2, stochastic=True)
  assert len(np.unique(np.asarray(st["a"]["kernel"]))) <= 4


def test_gaussian_noise_scale(key):
  zeros = {"w": jnp.zeros((200, 200))}
  out = jax.jit(lambda m, k: defenses.gaussian_noise(m, k, sigma=0.3))(
      zeros, key)
  assert abs(float(out["w"].std()) - 0.3) < 0.01
  lap = defenses.laplacian_noise(zeros, key, scale=0.3)
  # Laplace(b) has std b * sqrt(2).
  assert abs(float(lap["w"].std()) - 0.3 * np.sqrt(2)) < 0.02


def test_dp_sgd_clips_per_example_and_adds_scaled_noise(key):
  v = models.make_victim("mlp", input_shape=(4, 4, 1), num_classes=3,
                         hidden=(8,))
  variables = victim_lib.init_variables(v, key)
  params, state = victim_lib.split(variables)
  xs = jax.random.uniform(key, (4, 4, 4, 1)) * 50  # Large grads get clipped.
  ys = jnp.array([0, 1, 2, 0])
  no_noise = client_model.dp_sgd_message(v, params, state, xs, ys, key,
                                     clip_norm=0.1, noise_multiplier=0.0)
  # The mean of B vectors of norm <= C has norm <= C.
  assert float(defenses.global_norm(no_noise)) <= 0.1 + 1e-6
  noisy = client_model.dp_sgd_message(v, params, state, xs, ys, key,
                                  clip_norm=0.1, noise_multiplier=2.0)
  diff = jax.tree.map(jnp.subtract, noisy, no_noise)
  flat = jnp.concatenate([d.ravel() for d in jax.tree.leaves(diff)])
  # Noise std on the mean is noise_multiplier * C / B.
  np.testing.assert_allclose(float(flat.std()), 2.0 * 0.1 / 4, rtol=0.1)


def test_soteria_prunes_head_rows(key):
  v = models.make_victim("lenet", input_shape=(8, 8, 3), num_classes=4)
  variables = victim_lib.init_variables(v, key)
  xs = jax.random.uniform(key, (2, 8, 8, 3))
  params, state = victim_lib.split(variables)
  msg = victim_lib.batch_grad(v, params, state, xs, jnp.array([0, 1]))
  out = defenses.soteria(msg, rate=0.5, victim=v, variables=variables, xs=xs)
  rows_zero = jnp.all(out["head"]["kernel"] == 0, axis=1)
  assert int(rows_zero.sum()) == msg["head"]["kernel"].shape[0] // 2
  np.testing.assert_array_equal(out["conv0"]["kernel"],
                                msg["conv0"]["kernel"])


def test_apply_chains_and_rejects_unknown(message, key):
  spec = [dict(name="clip", max_norm=1.0), dict(name="prune", rate=0.5)]
  out = defenses.apply(spec, message, key)
  assert float(defenses.global_norm(out)) <= 1.0 + 1e-5
  with pytest.raises(ValueError, match="unknown defense 'blur'"):
    defenses.apply(dict(name="blur"), message, key)
  with pytest.raises(ValueError, match="bad settings for defense 'clip'"):
    defenses.apply(dict(name="clip", norm=1.0), message, key)
