"""Tensor attack: moments, decompositions, recovery, identifiability, errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import leak as leak_lib
from gitjax import models
from gitjax import victim as victim_lib
from gitjax.attacks import tensor
from gitjax.attacks import tensor_decomp
from gitjax.attacks import tensor_identify
from gitjax.attacks import tensor_moments
from gitjax.models import common

D, M = 12, 30_000


def _data(b, d=D, seed=0, norms=None):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(b, d))
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  if norms is not None:
    x *= np.asarray(norms)[:, None]
  return jnp.asarray(x, jnp.float32)


def _leak(x, activation="cubic_quadratic", m=M, seed=0, **kw):
  """A two-layer FedSGD leak: random-sign second layer, y = +-1."""
  victim = models.make_victim(
      "two_layer", input_shape=(x.shape[1],), width=m, activation=activation,
      second_layer="sign")
  variables = victim_lib.init_variables(victim, jax.random.key(seed))
  y = jnp.where(jnp.arange(x.shape[0]) % 2 == 0, 1.0, -1.0)
  leak, _ = leak_lib.simulate(victim, variables, x, y,
                              jax.random.key(seed + 1), **kw)
  return leak, victim, y


def test_hermite_coefficients_known_values():
  cq = tensor_moments.hermite_coefficients(
      common.activation("cubic_quadratic"), [1.0, 2.0])
  np.testing.assert_allclose(cq[0, 1:4], [3.0, 2.0, 6.0], atol=1e-5)
  # kappa_k(s) = s^k E[act^(k)(s z)]: kappa_3(2) = 6 * 8, kappa_2(2) = 2 * 4.
  np.testing.assert_allclose(cq[1, 2:4], [8.0, 48.0], rtol=1e-5)
  relu = tensor_moments.hermite_coefficients(common.activation("relu"), 1.0)
  np.testing.assert_allclose(relu[0, 1:5], [0.5, 1 / np.sqrt(2 * np.pi), 0.0,
                                            -1 / np.sqrt(2 * np.pi)],
                             atol=1e-6)
  nz = tensor_moments.nonzero_orders(relu)
  assert nz[2] and not nz[3] and nz[4]


def _hermite3(w):
  d = w.shape[0]
  eye = np.eye(d)
  corr = (np.einsum("a,bc->abc", w, eye) + np.einsum("b,ac->abc", w, eye)
          + np.einsum("c,ab->abc", w, eye))
  return np.einsum("a,b,c->abc", w, w, w) - corr


def test_projected_moments_match_full_hermite_tensor():
  d, m = 4, 50
  rng = np.random.default_rng(0)
  w = rng.normal(size=(d, m)).astype(np.float32)
  g = rng.normal(size=m).astype(np.float32)
  v = np.linalg.qr(rng.normal(size=(d, 2)))[0].astype(np.float32)
  full = sum(g[j] * _hermite3(w[:, j].astype(np.float64))
             for j in range(m)) / m
  want = np.einsum("abc,ai,bj,ck->ijk", full, v, v, v)
  got = tensor_moments.projected_moments(w, g, v, order=3, chunk=7)
  np.testing.assert_allclose(got[3], want, rtol=1e-4, atol=1e-5)
  m2 = sum(g[j] * (np.outer(w[:, j], w[:, j]) - np.eye(d))
           for j in range(m)) / m
  np.testing.assert_allclose(got[2], v.T @ m2 @ v, rtol=1e-4, atol=1e-5)
  mat, y1, _ = tensor_moments.hermite_matrix(w, g, chunk=7)
  np.testing.assert_allclose(mat, m2, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(y1, w @ g / m, rtol=1e-4, atol=1e-6)
  # Chunking does not change the result.
  whole = tensor_moments.projected_moments(w, g, v, order=4, chunk=m)
  parts = tensor_moments.projected_moments(w, g, v, order=4, chunk=9)
  np.testing.assert_allclose(whole[4], parts[4], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method,order", list(itertools.product(
    tensor_decomp.METHODS, (3, 4))))
def test_decompose_recovers_known_tensor(method, order):
  rng = np.random.default_rng(order)
  v = rng.normal(size=(3, 3))
  v /= np.linalg.norm(v, axis=0)
  w = np.array([2.0, -1.5, 1.0])
  t = sum(w[r] * tensor_decomp.outer_power(v[:, r], order) for r in range(3))
  f, wh, info = tensor_decomp.decompose(t, 3, method, restarts=2) if (
      method == "parafac") else tensor_decomp.decompose(t, 3, method)
  cos = np.abs(f.T @ v)
  assert cos.max(axis=0).min() > 1 - 1e-6
  assert info["residual"] < 1e-6
  np.testing.assert_allclose(np.sort(np.abs(wh)), np.sort(np.abs(w)),
                             rtol=1e-5)


def test_parafac_on_tensorly_jax_backend():
  v = np.eye(3)[:, :2]
  t = 2 * tensor_decomp.outer_power(v[:, 0], 3) - tensor_decomp.outer_power(
      v[:, 1], 3)
  f, _, info = tensor_decomp.decompose(t, 2, "parafac", restarts=1,
                                       backend="jax")
  assert info["tensorly_backend"] == "jax"
  assert np.abs(f.T @ v).max(axis=0).min() > 1 - 1e-4
  # TensorLy's JAX backend turns float64 on for the process when it loads;
  # the rest of the program (the next test in this worker) stays float32.
  assert not jax.config.jax_enable_x64
  assert jax.numpy.zeros(1).dtype == np.float32


@pytest.mark.parametrize("b,method", list(itertools.product(
    (2, 3), tensor_decomp.METHODS)))
def test_exact_recovery_noiseless(b, method):
  x = _data(b, seed=b)
  leak, victim, _ = _leak(x)
  rec = tensor.attack(leak, victim, {"name": "tensor", "method": method},
                      jax.random.key(0))
  assert rec.images.shape == (b, D)
  assert tensor.reconstruction_error(rec.images, x) < 1e-2
  assert rec.info["sign_identified"] and rec.info["norm_identified"]
  # Sign and norm too (the norm from a ratio of two moments is noisier).
  perm, signs, _ = tensor.align(rec.images, x)
  np.testing.assert_array_equal(signs, 1.0)
  np.testing.assert_allclose(np.linalg.norm(rec.images, axis=1)[perm], 1.0,
                             rtol=0.2)


def test_norms_labels_and_matching_are_exact():
  x = _data(2, seed=5, norms=[0.7, 1.6])
  leak, victim, y = _leak(x)
  rec = tensor.attack(leak, victim, {"match_steps": 100}, jax.random.key(0))
  perm, signs, _ = tensor.align(rec.images, x)
  np.testing.assert_array_equal(signs, 1.0)
  np.testing.assert_allclose(np.asarray(rec.images)[perm], x, atol=1e-3)
  np.testing.assert_allclose(np.asarray(rec.labels)[perm], y, atol=1e-2)
  assert rec.info["match"]["loss_end"] < 1e-8


def test_batch_size_estimated_from_spectrum():
  x = _data(3, seed=2)
  leak, victim, _ = _leak(x, tell_batch_size=False)
  assert leak.batch_size is None
  rec = tensor.attack(leak, victim, {}, jax.random.key(0))
  assert rec.info["batch_size_estimated"]
  assert rec.images.shape[0] == 3
  assert tensor.reconstruction_error(rec.images, x) < 1e-2


def test_w_grad_subspace_is_exact():
  x = _data(3, seed=3)
  leak, victim, _ = _leak(x, m=5_000, tell_batch_size=False)
  rec = tensor.attack(leak, victim, {"subspace": "w_grad"},
                      jax.random.key(0))
  assert rec.images.shape[0] == 3
  assert rec.info["subspace"]["order"] == "w_grad"
  # The span is exact: every true example lies in the recovered span ...
  q, _ = np.linalg.qr(np.asarray(rec.images, np.float64).T)  # [d, 3]
  xs = np.asarray(x, np.float64)
  inside = np.linalg.norm(xs @ q, axis=1) / np.linalg.norm(xs, axis=1)
  assert np.all(inside > 0.999), inside
  # ... while the directions within it still come from the m = 5,000
  # moments (error ~0.01, depending on the decomposition's random draws).
  assert tensor.reconstruction_error(rec.images, x) < 3e-2


def test_relu_uses_fourth_order_and_identifies_sign_not_norm():
  x = _data(2, seed=4, norms=[0.5, 2.0])
  leak, victim, _ = _leak(x, activation="relu")
  rec = tensor.attack(leak, victim, {}, jax.random.key(0))
  assert rec.info["tensor_order"] == 4
  assert rec.info["sign_identified"] and not rec.info["norm_identified"]
  assert rec.labels is None
  _, signs, cos = tensor.align(rec.images, x)
  np.testing.assert_array_equal(signs, 1.0)
  assert cos.min() > 0.99
  np.testing.assert_allclose(np.linalg.norm(rec.images, axis=1), 1.0,
                             rtol=1e-5)


def test_third_order_with_relu_is_a_clear_error():
  leak, victim, _ = _leak(_data(2), activation="relu", m=500)
  with pytest.raises(ValueError, match=r"mu_3 = E\[act\^\(3\)\(z\)\] = 0"):
    tensor.attack(leak, victim, {"order": 3}, jax.random.key(0))


def test_not_two_layer_is_a_clear_error():
  leak, _, _ = _leak(_data(2), m=500)
  mlp = models.make_victim("mlp", input_shape=(D,), num_classes=3,
                           hidden=(4,))
  with pytest.raises(ValueError, match="needs the two-layer network"):
    tensor.attack(leak, mlp, {}, jax.random.key(0))


def test_batch_larger_than_dimension_is_a_clear_error():
  leak, victim, _ = _leak(_data(5, d=4), m=500)
  with pytest.raises(ValueError, match="exceeds the input dimension d = 4"):
    tensor.attack(leak, victim, {}, jax.random.key(0))


def test_bad_settings_are_clear_errors():
  leak, victim, _ = _leak(_data(2), m=500)
  with pytest.raises(ValueError, match="unknown tensor attack settings"):
    tensor.attack(leak, victim, {"no_such": 1}, jax.random.key(0))
  with pytest.raises(ValueError, match="unknown decomposition method"):
    tensor_decomp.decompose(np.zeros((2, 2, 2)), 2, "svd")
  with pytest.raises(ValueError, match="needs the gradient dL/dw"):
    tensor.recover(leak.params["w"], leak.message["a"], "cubic_quadratic", 2,
                   {"subspace": "w_grad"})


def test_fedavg_leak_is_a_clear_error():
  leak, victim, _ = _leak(_data(2), m=500, protocol="fedavg",
                          protocol_config={"lr": 0.1, "epochs": 1})
  with pytest.raises(ValueError, match="needs a FedSGD gradient"):
    tensor.attack(leak, victim, {}, jax.random.key(0))


def test_alignment_by_permutation_and_sign():
  x = np.eye(4)[:3] * np.array([[1.0], [2.0], [3.0]])
  x_hat = np.stack([-x[2], x[0], -x[1]])
  perm, signs, cos = tensor.align(x_hat, x)
  np.testing.assert_array_equal(perm, [1, 2, 0])
  np.testing.assert_array_equal(signs, [1.0, -1.0, -1.0])
  np.testing.assert_allclose(cos, 1.0)
  np.testing.assert_allclose(tensor.aligned(x_hat, x), x)
  assert tensor.reconstruction_error(x_hat, x) == pytest.approx(0.0)
  # A missing recovery counts as a zero vector: 0.5 * |x_i / |x_i||^2.
  assert tensor.reconstruction_error(x_hat[:2], x) == pytest.approx(0.5)


@pytest.mark.parametrize("activation,config,message", [
    ("cubic_quadratic", {"order": 5}, "order must be 'auto', 3 or 4"),
    ("cubic_quadratic", {"subspace": "pca"}, "subspace must be 'auto'"),
    ("tanh", {"subspace": 2}, "gives no order-2 subspace estimate"),
])
def test_bad_orders_are_clear_errors(activation, config, message):
  w = np.zeros((3, 50), np.float32)
  with pytest.raises(ValueError, match=message):
    tensor.recover(w, np.zeros(50), activation, 2, config)


def test_bad_shapes_and_rules_are_clear_errors():
  w = np.zeros((3, 50), np.float32)
  with pytest.raises(ValueError, match=r"expected \(50,\)"):
    tensor.recover(w, np.zeros(40), "cubic_quadratic", 2)
  with pytest.raises(ValueError, match="order must be 3 or 4"):
    tensor_moments.projected_moments(w, np.zeros(50, np.float32),
                                     np.eye(3, 2, dtype=np.float32), order=5)
  kappa = tensor_moments.hermite_coefficients(
      common.activation("cubic_quadratic"))
  nz = tensor_moments.nonzero_orders(kappa)
  with pytest.raises(ValueError, match="sign must be 'auto'"):
    tensor_identify.identify(kappa, nz, 3, {3: np.ones(2)}, sign="flip")
