"""Coverage: the best latent fit of a generator to held-out images."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import coverage
from gitjax import generators as gen_lib

TINY = {"dcgan": dict(latent_dim=8, width=8, image_size=8, channels=3),
        "style": dict(latent_dim=8, w_dim=8, width=8, mapping_layers=2,
                      image_size=8, channels=3)}


def _gen(name):
  gen = gen_lib.make_generator(name, **TINY[name])
  return gen, gen.init(jax.random.key(0))


def _samples(gen, gen_vars, n, key):
  z = jax.random.normal(key, (n, gen.latent_dim))
  noise = gen_lib.sample_noise(gen, key, n) if gen.name == "style" else None
  return gen.apply(gen_vars, z, noise=noise)[0]


@pytest.mark.parametrize("name", ["dcgan", "style"])
def test_fit_reaches_the_generators_own_images(name):
  # Targets the generator can make exactly: the search must get much closer
  # to them than its random starts are, and report each image's best restart.
  gen, gen_vars = _gen(name)
  targets = _samples(gen, gen_vars, 3, jax.random.key(5))
  s = coverage.Settings(steps=60, restarts=2, lr=0.1, chunk=30)
  start = coverage.init_vars(gen, gen_vars, 3, 2, jax.random.key(1), True)
  render = coverage._Render(gen, gen.name == "style")
  mse0, _ = coverage._per_image_mse(render, start, gen_vars, targets)
  fits, info = coverage.fit(gen, gen_vars, targets, jax.random.key(1), s)
  assert fits.shape == targets.shape
  mse = np.mean(np.square(np.asarray(fits) - np.asarray(targets)),
                axis=(1, 2, 3))
  np.testing.assert_allclose(mse, info["mse"], rtol=1e-5, atol=1e-8)
  assert np.all(info["mse"] < 0.5 * np.min(np.asarray(mse0), axis=0))
  assert set(info["restart"].tolist()) <= {0, 1}


def test_scores_on_both_scales_and_best_restart_kept():
  gen, gen_vars = _gen("dcgan")
  targets = jax.random.uniform(jax.random.key(2), (2, 8, 8, 3), minval=-1.0)
  s = coverage.Settings(steps=4, restarts=3, lr=0.05, chunk=2)
  scores, fits = coverage.evaluate(gen, gen_vars, targets, jax.random.key(3),
                                   s)
  mse = np.mean(np.square(np.asarray(fits) - np.asarray(targets)),
                axis=(1, 2, 3))
  np.testing.assert_allclose(scores["psnr_pm1"],
                             np.mean(-10 * np.log10(mse)), rtol=1e-5)
  assert scores["psnr_01"] == pytest.approx(scores["psnr_pm1"] + 6.0206,
                                            abs=1e-3)
  assert scores["count"] == 2 and scores["settings"]["restarts"] == 3
  _, info = coverage.fit(gen, gen_vars, targets, jax.random.key(3), s)
  np.testing.assert_allclose(info["mse"], info["restart_mse"].min(axis=0))
  assert info["restart_mse"].shape == (3, 2)


def test_style_fit_without_noise_leaves_noise_out():
  gen, gen_vars = _gen("style")
  v = coverage.init_vars(gen, gen_vars, 2, 3, jax.random.key(0), noise=False)
  assert set(v) == {"ws"} and v["ws"].shape == (3, 2, gen.num_ws, gen.w_dim)
  v = coverage.init_vars(gen, gen_vars, 2, 3, jax.random.key(0), noise=True)
  assert [m.shape[:2] for m in v["noise"]] == [(3, 2)] * len(gen.noise_shapes)


def test_bad_inputs_are_clear_errors():
  gen, gen_vars = _gen("dcgan")
  with pytest.raises(ValueError, match=r"targets have shape \(4, 4, 3\) but "
                     r"the generator makes \(8, 8, 3\)"):
    coverage.fit(gen, gen_vars, jnp.zeros((1, 4, 4, 3)), jax.random.key(0))
  for field, value in (("steps", 0), ("restarts", 0), ("chunk", 0)):
    with pytest.raises(ValueError, match=f"coverage {field} must be >= 1"):
      coverage.check_settings(coverage.Settings(**{field: value}))
  with pytest.raises(ValueError, match="coverage lr must be > 0"):
    coverage.check_settings(coverage.Settings(lr=0.0))
