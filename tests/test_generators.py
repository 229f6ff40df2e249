"""Generators, critic and the WGAN-GP training loop (tiny shapes)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import prior_dcgan_celeba
from configs import prior_style_cifar10
from gitjax import data as data_lib
from gitjax import generators as gen_lib
from gitjax import loading
from gitjax import prior_setup
from gitjax import coverage
from gitjax import train_prior
from gitjax.errors import InputError
from tests import helpers


@pytest.mark.parametrize("size", [8, 16])
def test_dcgan_shapes_and_range(key, size):
  gen = gen_lib.make_generator("dcgan", latent_dim=8, width=8,
                               image_size=size)
  v = gen.init(key)
  z = jax.random.normal(key, (3, 8))
  x, upd = gen.apply(v, z, train=True)
  assert x.shape == (3, size, size, 3)
  assert float(jnp.max(jnp.abs(x))) <= 1.0
  assert "batch_stats" in upd  # BatchNorm statistics move in train mode.
  x_eval, none = gen.apply(v, z)
  assert none == {} and x_eval.shape == x.shape


@pytest.mark.parametrize("size", [8, 16])
def test_style_shapes_w_plus_and_noise(key, size):
  gen = gen_lib.make_generator("style", latent_dim=4, w_dim=4, width=4,
                               mapping_layers=2, image_size=size)
  v = gen.init(key)
  n_up = int(np.log2(size // 4))
  assert gen.num_ws == 2 + 3 * n_up
  assert len(gen.noise_shapes) == 1 + 2 * n_up
  z = jax.random.normal(key, (2, 4))
  x, _ = gen.apply(v, z)
  assert x.shape == (2, size, size, 3)
  w = gen.mapping(v, z)
  ws = jnp.broadcast_to(w[:, None], (2, gen.num_ws, 4))
  np.testing.assert_allclose(gen.synthesis(v, ws), x, atol=1e-6)
  # Each layer has its own style: changing one W+ row changes the image.
  ws2 = ws.at[:, -1].add(1.0)
  assert float(jnp.max(jnp.abs(gen.synthesis(v, ws2) - x))) > 1e-4
  # Noise inputs matter once their learned strength is non-zero.
  v2 = jax.tree.map(lambda a: a, v)
  layer = next(k for k in v2["params"]["synthesis"] if k.startswith("l"))
  v2["params"]["synthesis"][layer]["noise_strength"] = jnp.asarray(1.0)
  noise = gen_lib.sample_noise(gen, key, 2)
  assert float(jnp.max(jnp.abs(gen.synthesis(v2, ws, noise)
                               - gen.synthesis(v2, ws)))) > 1e-4


def test_modulated_conv_demodulation_ignores_style_scale(key):
  conv = gen_lib.ModulatedConv(5)
  x = jax.random.normal(key, (2, 6, 6, 3))
  w = jax.random.normal(jax.random.fold_in(key, 1), (2, 4))
  v = conv.init(key, x, w)
  v2 = jax.tree.map(lambda a: a, v)
  aff = v2["params"]["affine"]
  v2["params"]["affine"] = {"kernel": 3.0 * aff["kernel"],
                            "bias": 3.0 * aff["bias"]}
  np.testing.assert_allclose(conv.apply(v, x, w), conv.apply(v2, x, w),
                             rtol=1e-4, atol=1e-5)


def test_bad_generator_config_errors():
  with pytest.raises(ValueError, match="unknown generator 'gan'"):
    gen_lib.make_generator("gan")
  with pytest.raises(ValueError, match="image_size must be 4"):
    gen_lib.make_generator("dcgan", image_size=12).init(jax.random.key(0))
  with pytest.raises(ValueError, match="bad config for generator 'style'"):
    gen_lib.make_generator("style", depth=3)
  with pytest.raises(ValueError, match="has no mapping network"):
    gen = gen_lib.make_generator("dcgan", image_size=8, width=4)
    gen_lib.w_average(gen, None, jax.random.key(0))


def _tiny_config(name="dcgan", steps=4):
  mod = prior_dcgan_celeba if name == "dcgan" else prior_style_cifar10
  config = mod.get_config("smoke=True")
  config.steps = steps
  config.progress = False
  config.coverage.update(every=0, final_images=0)  # Off unless a test asks.
  return config


def _pattern_dataset(n=48, size=8):
  rng = np.random.default_rng(0)
  base = np.zeros((size, size, 3), np.float32)
  base[:, : size // 2, 0] = 0.9  # Left half red, right half blue.
  base[:, size // 2:, 2] = 0.8
  imgs = np.clip(base + 0.03 * rng.standard_normal((n, size, size, 3)), 0, 1)
  return data_lib.from_arrays(imgs.astype(np.float32), np.zeros(n, np.int32))


@pytest.mark.parametrize("name", ["dcgan", "style"])
def test_training_moves_samples_toward_data(tmp_path, name):
  config = _tiny_config(name, steps=30)
  config.log_every = 30
  config.sample_every = 0
  config.checkpoint_every = 30
  config.optimizer.lr_generator = 5e-3
  config.optimizer.lr_critic = 5e-3
  config.coverage.update(every=15, images=4, steps=20, restarts=1, lr=0.1,
                         final_images=4, final_steps=20, final_restarts=1)
  ds = _pattern_dataset()
  models = prior_setup.make_models(config)
  state0 = prior_setup.create_train_state(models, jax.random.key(0))
  holdout = jnp.asarray(ds.images[-4:] * 2 - 1)
  cover0, _ = coverage.evaluate(
      models.gen, state0["gen"], holdout, jax.random.key(0),
      train_prior.coverage_settings(config, final=True)[0])
  z = jax.random.normal(jax.random.key(5), (16, models.gen.latent_dim))
  reals = jnp.asarray(ds.images[-config.holdout:] * 2 - 1)
  before = float(train_prior.coverage_mse(models.gen, state0["gen"], z,
                                          reals))
  final = train_prior.train_and_evaluate(config, str(tmp_path), ds)
  assert final["step"] == 30
  gen, gen_vars = loading.generator(str(tmp_path))
  after = float(train_prior.coverage_mse(gen, gen_vars, z, reals))
  # The samples move toward the (one-pattern) data: measured 0.84 -> 0.54
  # (dcgan) and 0.80 -> 0.06 (style) with these seeds.
  assert after < 0.8 * before, (before, after)
  assert os.path.exists(tmp_path / "samples_final.png")
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert json.loads(lines[-1])["step"] == 30
  # The best latent fit to held-out images is logged during training and
  # scored at the end; it improves on the untrained generator's.
  logged = [json.loads(l) for l in lines]
  assert [m["step"] for m in logged if "coverage_psnr_pm1" in m] == [15, 30]
  scored = json.loads((tmp_path / "coverage.json").read_text())
  assert scored == final["coverage"] and scored["count"] == 4
  assert scored["psnr_pm1"] > cover0["psnr_pm1"] + 1.0, (scored, cover0)
  for png in ("coverage.png", "coverage_fits.png"):
    assert os.path.exists(tmp_path / png)


def test_resume_is_identical(tmp_path):
  ds = _pattern_dataset()
  config = _tiny_config("dcgan", steps=4)
  train_prior.train_and_evaluate(config, str(tmp_path / "straight"), ds)
  part = train_prior.train_and_evaluate(config, str(tmp_path / "resumed"),
                                        ds, stop_at=2)
  assert part["step"] == 2
  assert not (tmp_path / "resumed" / "final.json").exists()
  train_prior.train_and_evaluate(config, str(tmp_path / "resumed"), ds)
  _, a = loading.generator(str(tmp_path / "straight"))
  _, b = loading.generator(str(tmp_path / "resumed"))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_moving_average_is_the_prior(tmp_path):
  ds = _pattern_dataset()
  config = _tiny_config("dcgan", steps=3)
  assert config.ema == 0.999  # Both prior configs keep one.
  models = prior_setup.make_models(config)
  state = prior_setup.create_train_state(models, jax.random.key(0))
  ema = jax.tree.map(np.asarray, state["gen_ema"])
  reals = jnp.asarray(ds.images[:8].reshape(2, 4, 8, 8, 3) * 2 - 1)
  for step in range(3):
    before = jax.tree.map(np.asarray, state["gen_ema"])
    state, _ = train_prior.train_step(models, state, reals,
                                      jax.random.key(step))
    d = min(0.999, (1 + step) / (10 + step))  # The warm-up ramp.
    jax.tree.map(lambda e, b, v: np.testing.assert_allclose(
        e, d * b + (1 - d) * np.asarray(v), rtol=1e-5, atol=1e-7),
        state["gen_ema"], before, state["gen"])
  assert prior_setup.prior_variables(state) is state["gen_ema"]
  moved = jax.tree.leaves(jax.tree.map(
      lambda a, b: float(np.max(np.abs(a - b))), state["gen_ema"], ema))
  assert max(moved) > 0
  # Training, loading and export use the average; without one, the weights.
  train_prior.train_and_evaluate(config, str(tmp_path / "ema"), ds)
  _, loaded = loading.generator(str(tmp_path / "ema"))
  assert jax.tree.structure(loaded) == jax.tree.structure(state["gen"])
  config.ema = 0.0
  plain = prior_setup.make_models(config)
  assert "gen_ema" not in prior_setup.create_train_state(plain,
                                                         jax.random.key(0))
  config.ema = 1.0
  with pytest.raises(ValueError, match=r"config.ema must be in \[0, 1\)"):
    prior_setup.make_models(config)


def test_batch_indices_pure_function_of_step():
  a = train_prior.batch_indices(10, 4, 0, 3, 2)
  assert a.shape == (2, 4)
  np.testing.assert_array_equal(a, train_prior.batch_indices(10, 4, 0, 3, 2))
  epoch = np.concatenate([train_prior.batch_indices(12, 4, 1, s, 1)[0]
                          for s in range(3)])
  assert sorted(epoch) == list(range(12))  # One epoch sees every example.


def test_training_input_errors(tmp_path):
  config = _tiny_config()
  with pytest.raises(ValueError, match="generator makes"):
    train_prior.train_and_evaluate(config, str(tmp_path / "a"),
                                   _pattern_dataset(size=16))
  with pytest.raises(ValueError, match="at least batch_size"):
    train_prior.train_and_evaluate(config, str(tmp_path / "b"),
                                   _pattern_dataset(n=6))
  with pytest.raises(loading.RunNotFoundError,
                     match=f"{tmp_path}/nowhere/config.json not found"):
    loading.generator(str(tmp_path / "nowhere"))
  with pytest.raises(InputError, match="generator_dir is not set"):
    loading.generator(None)


def test_finished_prior_survives_a_refused_and_a_repeated_run(tmp_path):
  ds = _pattern_dataset()
  config = _tiny_config("dcgan", steps=2)
  final = train_prior.train_and_evaluate(config, str(tmp_path), ds)
  before = helpers.snapshot(tmp_path)
  wider = _tiny_config("dcgan", steps=2)
  wider.generator.width = 16
  wider.critic.width = 16
  with pytest.raises(InputError, match="different config .*width"):
    train_prior.train_and_evaluate(wider, str(tmp_path), ds)
  assert helpers.snapshot(tmp_path) == before
  assert train_prior.train_and_evaluate(config, str(tmp_path), ds) == (
      json.loads(before["final.json"]))
  assert helpers.snapshot(tmp_path) == before
  assert final["step"] == 2
  gen, _ = loading.generator(str(tmp_path))  # Still loads.
  assert gen.image_shape == (8, 8, 3)
