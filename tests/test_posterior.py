"""Gaussian image prior and the posterior (Gauss-Newton) step after GIT."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from gitjax import experiments
from gitjax import gaussian_prior
from gitjax import pretrained
from gitjax.attacks import posterior
from gitjax.errors import InputError
from launch import export_weights
from tests import test_pretrained


def _images(n=64, shape=(4, 4, 2), seed=0):
  rng = np.random.default_rng(seed)
  base = rng.uniform(0.2, 0.8, (n, 1, 1, shape[-1]))
  return np.clip(base + 0.1 * rng.normal(size=(n,) + shape), 0, 1)


def test_precision_inverts_covariance_and_matches_the_sample_covariance():
  x = _images()
  prior = gaussian_prior.fit(x, rank=31)  # D = 32: all but one direction.
  d = x[0].size
  eye = jnp.eye(d)
  cov = np.asarray(prior.covariance(eye))
  np.testing.assert_allclose(np.asarray(prior.precision(prior.covariance(
      eye))), np.eye(d), atol=2e-3)
  sample = np.cov(x.reshape(len(x), -1), rowvar=False)
  np.testing.assert_allclose(cov, sample, atol=2e-4)
  np.testing.assert_allclose(prior.mean, x.mean(0), atol=1e-6)
  low = gaussian_prior.fit(x, rank=4)  # Same trace, rank-4 structure.
  assert np.trace(np.asarray(low.covariance(eye))) == pytest.approx(
      np.trace(sample), rel=1e-4)


@pytest.mark.parametrize("images,rank,match", [
    (np.zeros((1, 2, 2, 1)), 1, "N >= 2"),
    (np.full((4, 2, 2, 1), 2.0), 1, "on \\[0, 1\\]"),
    (np.zeros((4, 2, 2, 1)), 4, "rank must be in \\[1, 3\\]"),
])
def test_bad_fit_input(images, rank, match):
  with pytest.raises(InputError, match=match):
    gaussian_prior.fit(images, rank)


def test_save_load_round_trip_and_refusals(tmp_path):
  prior = gaussian_prior.fit(_images(), rank=3)
  path = str(tmp_path / "p.npz")
  gaussian_prior.save(prior, path)
  before = os.path.getmtime(path)
  back = gaussian_prior.load(path)
  assert gaussian_prior.load(path) is back  # Cached until the file changes.
  for a, b in zip(prior, back):  # The basis re-orthonormalized: ~ equal.
    np.testing.assert_allclose(a, b, atol=1e-5)
  with pytest.raises(InputError, match="exists; not overwritten"):
    gaussian_prior.save(prior, path)
  assert os.path.getmtime(path) == before
  with pytest.raises(InputError, match="no such file"):
    gaussian_prior.load(str(tmp_path / "missing.npz"))
  with pytest.raises(InputError, match="unknown pretrained weights"):
    gaussian_prior.load("no_such_prior")


def test_step_equals_the_dense_gauss_newton_solution(key):
  """CG with Jacobian products gives the step a dense solve gives."""
  x = _images(n=40, shape=(2, 2, 2))
  prior = gaussian_prior.fit(x, rank=3)
  a = jax.random.normal(key, (12, 8))
  message = lambda v: {"w": jnp.tanh(v.reshape(1, -1) @ a.T)}
  truth = jnp.asarray(x[:1], jnp.float32)
  sigma = 0.05
  observed = jax.tree.map(
      lambda m: m + sigma * jax.random.normal(jax.random.key(1), m.shape),
      message(truth))
  x0 = jnp.full_like(truth, 0.5)
  got, info = posterior.step(message, x0, observed, sigma, prior,
                             iterations=100, tol=1e-10)
  flat = lambda v: message(v.reshape(truth.shape))["w"].ravel()
  v0 = x0.ravel()
  j = jax.jacfwd(flat)(v0)
  p = prior.precision(jnp.eye(8))
  lhs = j.T @ j / sigma**2 + p
  rhs = (j.T @ (observed["w"].ravel() - flat(v0)) / sigma**2
         - p @ (v0 - prior.mean.ravel()))
  want = v0 + jnp.linalg.solve(lhs, rhs)
  np.testing.assert_allclose(np.asarray(got).ravel(), want, atol=1e-4)
  assert float(info["residual"]) < 1e-4
  err = lambda v: float(jnp.mean((v - truth) ** 2))
  assert err(got) < err(x0)
  with pytest.raises(ValueError, match="the prior is for"):
    posterior.step(message, jnp.zeros((1, 8)), observed, sigma, prior)


def _case(config_sigma=0.1):
  config = common.base_config()
  config.data.update(image_size=8, batch_size=1)
  config.victim = dict(name="mlp", hidden=(4,))
  config.leak.defense = ([dict(name="gaussian", sigma=config_sigma)]
                         if config_sigma else [])
  return experiments.make_case(config)


def test_git_posterior_attack_by_names(weights, tmp_path, key):
  """A shipped inverter and a shipped prior, both by name; the step moves
  GIT's output and keeps it in the box; sigma comes from the leak."""
  trained = str(tmp_path / "trained")
  from gitjax import train_inverter
  assert train_inverter.train_and_evaluate(test_pretrained._config(),
                                           trained)["finished"]
  test_pretrained._export(trained)
  export_weights.export_gaussian  # The launcher's path, below.
  gaussian_prior.export("prior8", _images(n=32, shape=(8, 8, 3)), 8,
                        data="test images", command="test")
  assert pretrained.entry("prior8")["kind"] == "gaussian_prior"
  case = _case()
  block = dict(name="git_posterior", inverter_dir="tiny", prior="prior8")
  rec = experiments.attack_case(case, block, key)
  start = experiments.attack_case(case, dict(name="git", inverter_dir="tiny"),
                                  key)
  assert rec.info["sigma"] == 0.1 and rec.info["prior"] == "prior8"
  assert not np.allclose(rec.images, start.images)
  assert np.all(np.asarray(rec.images) >= -1e-6)
  assert np.all(np.asarray(rec.images) <= 1 + 1e-6)
  with pytest.raises(ValueError, match="set attack.sigma"):
    experiments.attack_case(_case(0), block, key)
  rec0 = experiments.attack_case(_case(0), dict(block, sigma=0.1), key)
  assert np.all(np.isfinite(rec0.images))
  rec1 = experiments.attack_case(_case(0), dict(block, sigma_clean=0.05),
                                 key)
  assert rec1.info["sigma"] == 0.05 and rec.info["label_source"] == "search"
  off = experiments.attack_case(case, dict(block, label_search=False), key)
  assert off.info["label_source"] == "idlg"
  with pytest.raises(ValueError, match="sigma must be 'auto' or > 0"):
    experiments.attack_case(case, dict(block, sigma=-1.0), key)
  with pytest.raises(ValueError, match="needs attack.prior"):
    experiments.attack_case(case, dict(block, prior=None), key)
  with pytest.raises(InputError, match="of kind 'inverter', not "
                     "'gaussian_prior'"):
    experiments.attack_case(case, dict(block, prior="tiny"), key)


@pytest.fixture
def weights(tmp_path, monkeypatch):
  path = str(tmp_path / "weights")
  monkeypatch.setattr(pretrained, "WEIGHTS_DIR", path)
  return path


def test_shipped_prior_loads_by_name_and_inverts():
  prior = gaussian_prior.load("gaussian_cifar10")
  assert gaussian_prior.load("gaussian_cifar10") is prior  # Cached.
  assert prior.image_shape == (32, 32, 3) and prior.basis.shape[1] == 512
  v = jax.random.normal(jax.random.key(0), (2, 3072))
  np.testing.assert_allclose(prior.precision(prior.covariance(v)), v,
                             rtol=1e-3, atol=5e-3)  # float16 before: 0.37.
  entry = pretrained.entry("gaussian_cifar10")
  assert entry["kind"] == "gaussian_prior"
  assert entry["metrics"]["variance_in_basis"] > 0.95


def test_export_launcher_bad_input_is_one_line(tmp_path):
  import subprocess
  import sys
  r = subprocess.run(
      [sys.executable, "-m", "launch.export_weights",
       "--kind=gaussian_prior", "--name=x"], capture_output=True, text=True,
      cwd=test_pretrained.ROOT, check=False)
  assert r.returncode == 2
  assert r.stderr.strip().count("\n") == 0
  assert "needs --dataset and --data_dir" in r.stderr
