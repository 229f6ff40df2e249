"""GI-SMN: W+ and noise refinement of a style generator by gradient matching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import generators as gen_lib
from gitjax import leak as leak_lib
from gitjax import models
from gitjax import victim as victim_lib
from gitjax.attacks import gismn


def _setup(defense=(), batch=2):
  gen = gen_lib.make_generator("style", latent_dim=4, w_dim=8, width=8,
                               mapping_layers=2, image_size=8)
  gv = gen.init(jax.random.key(0))
  vic = models.make_victim("mlp", input_shape=(8, 8, 3), num_classes=4,
                           hidden=(32,), activation="relu")
  vv = victim_lib.init_variables(vic, jax.random.key(1))
  z = jax.random.normal(jax.random.key(2), (batch, 4))
  x = gen_lib.to_unit(gen.apply(gv, z)[0])  # Reachable by the generator.
  ys = jnp.arange(batch) % 4
  lk, _ = leak_lib.simulate(vic, vv, x, ys, jax.random.key(3),
                            defense=list(defense))
  return gen, gv, vic, lk


@pytest.mark.parametrize("defense", [[], [dict(name="prune", rate=0.9)]])
def test_refinement_reduces_gradient_distance(defense):
  gen, gv, vic, lk = _setup(defense)
  cfg = dict(steps=45)
  rec = gismn.reconstruct(lk, vic, gen, gv, cfg, jax.random.key(4))
  assert rec.images.shape == (2, 8, 8, 3)
  assert rec.info["switch"] == 20 and rec.info["group_every"] == 1
  # Measured: 0.76 (no defense) and 0.67 (90% pruning) of the start.
  assert rec.info["distance"] < 0.85 * rec.info["initial_distance"]
  if not defense:
    np.testing.assert_array_equal(np.sort(rec.labels), [0, 1])
  lo, hi = leak_lib.box(lk)
  assert float(rec.images.min()) >= float(lo.min()) - 1e-5
  assert float(rec.images.max()) <= float(hi.max()) + 1e-5


def test_restarts_keep_the_lowest_final_distance():
  gen, gv, vic, lk = _setup()
  key = jax.random.key(4)
  one = gismn.reconstruct(lk, vic, gen, gv, dict(steps=9), key)
  three = gismn.reconstruct(lk, vic, gen, gv, dict(steps=9, restarts=3),
                            key)
  d = three.info["restart_distances"]
  assert len(d) == 3 and len(set(d)) == 3  # Different starts.
  # The first start is a single run's: same key, same result.
  np.testing.assert_allclose(d[0], one.info["distance"], rtol=1e-5)
  assert three.info["restart"] == int(np.argmin(d))
  assert three.info["distance"] == min(d)
  if three.info["restart"] == 0:
    np.testing.assert_allclose(three.images, one.images, atol=1e-5)


def test_refine_matches_gradients_from_gismn_images():
  from gitjax.attacks import gradient_matching
  from gitjax.attacks import matching
  gen, gv, vic, lk = _setup()
  key = jax.random.key(4)
  plain = gismn.reconstruct(lk, vic, gen, gv, dict(steps=9), key)
  rec = gismn.reconstruct(lk, vic, gen, gv,
                          dict(steps=9, refine=dict(iterations=30)), key)
  assert rec.info["distance"] == plain.info["distance"]  # GI-SMN unchanged.
  assert rec.info["refine"]["history"]["iteration"][-1] == 30
  settings, _ = gradient_matching.refine_settings(dict(iterations=30))
  assert settings.lr == 0.01 and settings.objective == "cosine"
  problem = matching.make_problem(lk, vic, settings)
  data = matching.make_data(lk, plain.labels)
  before = float(problem({"x": plain.images}, data))
  after = float(problem({"x": rec.images}, data))
  assert after < before
  np.testing.assert_array_equal(rec.labels, plain.labels)
  lo, hi = leak_lib.box(lk)
  assert float(rec.images.min()) >= float(lo.min()) - 1e-5
  assert float(rec.images.max()) <= float(hi.max()) + 1e-5
  with pytest.raises(ValueError, match=r"unknown refine config key\(s\) "
                     r"\['steps'\]"):
    gismn.reconstruct(lk, vic, gen, gv, dict(steps=9, refine=dict(steps=3)),
                      key)


@pytest.mark.parametrize("restarts", [0, 1.5, True, "2"])
def test_restarts_must_be_a_count(restarts):
  gen, gv, vic, lk = _setup()
  with pytest.raises(ValueError, match="gismn restarts must be an integer"):
    gismn.reconstruct(lk, vic, gen, gv, dict(steps=2, restarts=restarts),
                      jax.random.key(0))


def test_initial_latents_are_truncated_w_plus():
  gen, gv, _, _ = _setup()
  v = gismn.initial_latents(gen, gv, jax.random.key(0), 3, truncation=0.0)
  assert v["ws"].shape == (3, gen.num_ws, gen.w_dim)
  w_avg = gen_lib.w_average(gen, gv, jax.random.split(jax.random.key(0),
                                                      3)[1])
  np.testing.assert_allclose(v["ws"][1, 2], w_avg, atol=1e-5)
  assert [n.shape[1:] for n in v["noise"]] == list(gen.noise_shapes)


def test_errors():
  gen, gv, vic, lk = _setup()
  with pytest.raises(ValueError, match="unknown gismn settings"):
    gismn.reconstruct(lk, vic, gen, gv, dict(iterations=3),
                      jax.random.key(0))
  dc = gen_lib.make_generator("dcgan", latent_dim=4, width=8, image_size=8)
  with pytest.raises(ValueError, match="needs a style-based generator"):
    gismn.reconstruct(lk, vic, dc, dc.init(jax.random.key(0)),
                      dict(steps=2), jax.random.key(0))
  with pytest.raises(ValueError, match="generator_dir is not set"):
    gismn.attack(lk, vic, dict(steps=2), jax.random.key(0))


def test_attacks_run_through_experiments(tmp_path):
  """Train a tiny style prior, then run GI-SMN and GGL via run_attack."""
  from configs import common
  from configs import prior_style_cifar10
  from gitjax import experiments
  from gitjax import train_prior

  prior = prior_style_cifar10.get_config("smoke=True")
  prior.steps, prior.progress = 2, False
  train_prior.train_and_evaluate(prior, str(tmp_path / "prior"))
  for name in ("gismn", "ggl"):
    config = common.base_config()
    config.data.image_size = 8
    config.data.batch_size = 2 if name == "gismn" else 1
    config.victim = dict(name="mlp", hidden=(16,), activation="relu")
    config.attack = dict(name=name, generator_dir=str(tmp_path / "prior"))
    if name == "gismn":
      config.attack.steps = 3
    else:
      config.attack.update(budget=2, population=4, log_every=0)
    out = experiments.run_attack(config, str(tmp_path / name))
    assert np.isfinite(out["mean"]["psnr"])
    assert (tmp_path / name / "grid.png").exists()


@pytest.mark.parametrize("select_at", [0.25, 0.75])  # Before, after switch.
def test_finalists_resume_like_a_straight_run(select_at):
  gen, gv, vic, lk = _setup()
  key = jax.random.key(4)
  cfg = dict(steps=9, restarts=3, select_at=select_at, group_every=2)
  full = gismn.reconstruct(lk, vic, gen, gv, cfg, key)
  halved = gismn.reconstruct(lk, vic, gen, gv, dict(cfg, finalists=1), key)
  at = halved.info["selection_distances"]
  assert len(at) == 3 and full.info["selection_distances"] is None
  assert halved.info["selected_at"] == round(select_at * 9)
  kept = int(np.argmin(at))
  assert halved.info["restart"] == kept
  final = halved.info["restart_distances"]
  assert [d is None for d in final] == [i != kept for i in range(3)]
  # Paused and resumed: the same run as straight through.
  np.testing.assert_allclose(final[kept], full.info["restart_distances"][kept],
                             rtol=1e-6)
  assert halved.info["history"]["iteration"][-1] == 9


@pytest.mark.parametrize("bad", [0, 4, 1.5, True])
def test_bad_finalists_raise(bad):
  gen, gv, vic, lk = _setup()
  with pytest.raises(ValueError, match="gismn finalists must be an integer"):
    gismn.reconstruct(lk, vic, gen, gv, dict(steps=9, restarts=3,
                                             finalists=bad),
                      jax.random.key(4))


def test_attacks_with_one_prior_share_compiled_programs():
  gen, gv, _, _ = _setup()
  mean, std = (0.5,) * 3, (0.25,) * 3
  a, b = gismn.Render(gen, gv, mean, std), gismn.Render(gen, gv, mean, std)
  assert a == b and hash(a) == hash(b)  # New objects, the same program.
  other = jax.tree.map(jnp.copy, gv)
  assert a != gismn.Render(gen, other, mean, std)
  assert a != gismn.Render(gen, gv, (0.4,) * 3, std)
  assert gismn.transformation(0.1, True) is gismn.transformation(0.1, True)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5])
def test_bad_select_at_raises(bad):
  gen, gv, vic, lk = _setup()
  with pytest.raises(ValueError, match="gismn select_at must be in"):
    gismn.reconstruct(lk, vic, gen, gv, dict(steps=9, restarts=3, finalists=1,
                                             select_at=bad),
                      jax.random.key(4))
