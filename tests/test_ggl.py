"""GGL: CMA-ES population calls, TuRBO, the attack (its defense model is
tested in test_client_model.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import generators as gen_lib
from gitjax import leak as leak_lib
from gitjax import models
from gitjax import victim as victim_lib
from gitjax.attacks import bo
from gitjax.attacks import engine
from gitjax.attacks import ggl
from gitjax.attacks import latent_search
from gitjax.attacks import optimizers


def _setup(defense=(), key=0):
  gen = gen_lib.make_generator("dcgan", latent_dim=4, width=8, image_size=8)
  gv = gen.init(jax.random.key(key))
  vic = models.make_victim("mlp", input_shape=(8, 8, 3), num_classes=3,
                           hidden=(32,), activation="relu")
  vv = victim_lib.init_variables(vic, jax.random.key(1))
  z = jax.random.normal(jax.random.key(2), (1, 4))
  x = gen_lib.to_unit(gen.apply(gv, z)[0])  # In the generator's range.
  lk, _ = leak_lib.simulate(vic, vv, x, jnp.array([2]), jax.random.key(3),
                            defense=list(defense))
  return gen, gv, vic, vv, x, lk


def test_cmaes_evaluates_population_in_one_call():
  calls = []
  target = jnp.arange(6.0) / 6

  @jax.jit
  def batched(zs, key):
    del key
    return jnp.sum(jnp.square(zs - target), axis=1)

  def counting(zs, key):
    calls.append(zs.shape)
    return batched(zs, key)

  res = latent_search.cmaes(counting, jnp.zeros(6), jax.random.key(0),
                            generations=15, population=12, sigma=0.5,
                            recommend="best")
  assert calls == [(12, 6)] * 15  # One call per generation, whole population.
  assert res.loss < float(jnp.sum(jnp.square(target))) / 5
  assert res.evaluations == 180
  # The distribution's mean (GGL's recommendation) is also near the target.
  mean = latent_search.cmaes(batched, jnp.zeros(6), jax.random.key(0),
                             generations=15, population=12, sigma=0.5)
  assert jnp.isnan(mean.loss)
  assert float(batched(mean.z[None], None)[0]) < float(
      jnp.sum(jnp.square(target))) / 5
  assert not jnp.array_equal(mean.z, res.z)


def test_population_map_equals_vmap():
  """lax.map (the CPU path) scores a population as vmap does, under a
  pruning model (the attacker's per-candidate k-th-smallest threshold)."""
  gen, gv, vic, _, _, lk = _setup([dict(name="prune", rate=0.5)])
  prob = ggl.make_problem(lk, vic, gen, gv, {})
  zs = jax.random.normal(jax.random.key(5), (6, prob.dim))
  key = jax.random.key(6)
  by_vmap = ggl.population(prob._replace(search_objective=prob.objective),
                           "vmap")(zs, key)
  compiled_in = ggl.population(prob._replace(search_objective=prob.objective),
                               "map", constants=True)(zs, key)
  ggl.release()
  np.testing.assert_allclose(compiled_in, by_vmap, rtol=1e-5)
  by_map = jax.jit(latent_search.population_loss(prob.loss, "map"))(zs, key)
  one = jnp.stack([prob.loss(z, key) for z in zs])
  np.testing.assert_allclose(by_map, one, rtol=1e-5)
  np.testing.assert_allclose(by_vmap, one, rtol=1e-5)


def test_turbo_beats_random_search():
  f = jax.jit(jax.vmap(lambda x: jnp.sum(jnp.square(x - 0.7))))
  res = bo.turbo(f, 4, jax.random.key(0), budget=40, n_init=10, batch=5,
                 n_candidates=64, gp_steps=10)
  rand = f(jax.random.uniform(jax.random.key(1), (40, 4), minval=-2,
                              maxval=2))
  assert res.evaluations == 40
  assert res.y < float(jnp.min(rand))
  assert res.history == sorted(res.history, reverse=True)


def test_latent_maps_keep_the_generator_input_on_its_shell():
  z = jax.random.normal(jax.random.key(0), (3, 16)) * jnp.array(
      [[0.01], [1.0], [50.0]])
  sphere = ggl.latent_input(z, "sphere")
  np.testing.assert_allclose(jnp.linalg.norm(sphere, axis=-1), 4.0,
                             rtol=1e-5)
  np.testing.assert_allclose(sphere / jnp.linalg.norm(sphere, axis=-1,
                                                      keepdims=True),
                             z / jnp.linalg.norm(z, axis=-1, keepdims=True),
                             rtol=1e-5, atol=1e-6)  # Same directions.
  np.testing.assert_array_equal(ggl.latent_input(z, "tanh"), jnp.tanh(z))
  assert ggl.latent_input(z, "free") is z
  # A sphere search renders what the mapped latent renders.
  gen, gv, vic, _, _, lk = _setup()
  prob = ggl.make_problem(lk, vic, gen, gv, dict(latent="sphere"))
  z0 = 7.0 * jax.random.normal(jax.random.key(1), (prob.dim,))
  want = ggl.latent_input(z0.reshape(1, -1), "sphere").reshape(-1)
  np.testing.assert_allclose(prob.render(z0), prob.render(want), atol=1e-5)


@pytest.mark.parametrize("optimizer,budget", [("cmaes", 12), ("bo", 40),
                                              ("adam", 40)])
def test_attack_improves_objective(optimizer, budget):
  gen, gv, vic, _, x, lk = _setup([dict(name="prune", rate=0.5)])
  cfg = dict(optimizer=optimizer, budget=budget, population=16, sigma=1.0,
             bo_n_init=10, bo_batch=5, bo_candidates=64,
             bo_gp_steps=10, log_every=0, kl_weight=0.1 * (optimizer == "adam"))
  rec = ggl.reconstruct(lk, vic, gen, gv, cfg, jax.random.key(4))
  assert rec.info["loss"] < 0.5 * rec.info["initial_loss"]
  assert rec.images.shape == x.shape
  assert int(rec.labels[0]) == 2  # iDLG on the head gradient.
  assert rec.info["defense_estimate"][0]["name"] == "prune"


def test_signed_step_adam_improves_objective():
  """GGL's CelebA Adam (inversefed): signed steps, x0.1 at 3/8, 5/8, 7/8,
  the squared distance summed over tensors."""
  gen, gv, vic, _, _, lk = _setup()
  cfg = dict(optimizer="adam", budget=40, log_every=0, kl_weight=0.1,
             schedule="step", signed=True, l2_mean=False)
  rec = ggl.reconstruct(lk, vic, gen, gv, cfg, jax.random.key(4))
  assert rec.info["loss"] < 0.5 * rec.info["initial_loss"]


def test_cmaes_restarts_keep_the_lowest_objective():
  """CMA-ES restarts: the first is the single run, the answer the lowest
  objective of all, and every search's evaluations are counted."""
  gen, gv, vic, _, _, lk = _setup()
  cfg = dict(optimizer="cmaes", budget=4, population=8, log_every=0)
  one = ggl.reconstruct(lk, vic, gen, gv, cfg, jax.random.key(4))
  three = ggl.reconstruct(lk, vic, gen, gv, dict(cfg, restarts=3),
                          jax.random.key(4))
  losses = three.info["restart_losses"]
  assert len(losses) == 3 and losses[0] == one.info["loss"]
  assert three.info["loss"] == min(losses)
  assert three.info["evaluations"] == 3 * 4 * 8
  zs = jnp.asarray(three.info["restart_latents"])
  prob = ggl.make_problem(lk, vic, gen, gv, cfg)
  np.testing.assert_allclose(
      np.asarray(three.images),
      np.asarray(prob.render(zs[int(np.argmin(losses))])), atol=1e-6)
  mean = ggl.reconstruct(
      lk, vic, gen, gv, dict(cfg, restarts=3, restart_answer="image_mean"),
      jax.random.key(4))
  assert mean.info["restart_losses"] == losses
  np.testing.assert_allclose(
      np.asarray(mean.images),
      np.mean([np.asarray(prob.render(z)) for z in zs], axis=0), atol=1e-6)


def test_ggl_ramp_fractions_reach_the_shared_optimizer():
  """GGL's ramp (lr up over the first 10%, down over the last 20% here)
  through ``optimizers.transformation``, the one ``ggl.adam`` runs."""
  sched = optimizers.schedule("ggl", 0.5, 100, ramp=(0.1, 0.2))
  np.testing.assert_allclose(
      [float(sched(t)) for t in (0, 5, 10, 50, 80, 90, 100)],
      [0.0, 0.25, 0.5, 0.5, 0.5, 0.25, 0.0], atol=1e-6)
  assert (optimizers.transformation("adam", 0.5, 100, schedule_name="ggl",
                                    ramp=(0.1, 0.2))
          is optimizers.transformation("adam", 0.5, 100, schedule_name="ggl",
                                       ramp=(0.1, 0.2)))
  loss = lambda v, k: jnp.sum((v - 3.0) ** 2)
  res = latent_search.adam(loss, jnp.zeros((2,)), jax.random.key(0),
                           steps=200, lr=0.5, rampup=0.1, rampdown=0.2)
  np.testing.assert_allclose(np.asarray(res.z), [3.0, 3.0], atol=0.05)


def test_l2_mean_averages_the_distance_over_tensors():
  gen, gv, vic, _, _, lk = _setup()
  z = jax.random.normal(jax.random.key(5), (4,))
  key = jax.random.key(0)
  mean = ggl.make_problem(lk, vic, gen, gv, dict(l2_mean=True)).loss(z, key)
  total = ggl.make_problem(lk, vic, gen, gv, dict(l2_mean=False)).loss(z, key)
  n = len(jax.tree.leaves(lk.message))
  np.testing.assert_allclose(float(total), n * float(mean), rtol=1e-5)


def test_pattern_masks_use_the_observed_zeros():
  """masks="pattern": the trial gradient keeps exactly the observed nonzero
  pattern, so the true latent's loss is the KL term alone; "rate" prunes
  the trial gradient by its own magnitudes."""
  gen, gv, vic, _, _, lk = _setup([dict(name="prune", rate=0.5)])
  z = jax.random.normal(jax.random.key(2), (1, 4)).reshape(-1)
  key = jax.random.key(0)
  for masks in ("pattern", "rate"):
    prob = ggl.make_problem(lk, vic, gen, gv, dict(masks=masks))
    assert float(prob.loss(z, key)) < 1e-8
  cfg = dict(optimizer="adam", budget=30, log_every=0, masks="pattern")
  rec = ggl.reconstruct(lk, vic, gen, gv, cfg, jax.random.key(4))
  assert rec.info["loss"] < 0.5 * rec.info["initial_loss"]


def test_adam_restarts_keep_the_lowest_loss():
  """R restarts: the first start is the single run's, and the answer is the
  trial whose kept loss is lowest (so never worse than that run)."""
  gen, gv, vic, _, _, lk = _setup()
  cfg = dict(optimizer="adam", budget=30, log_every=0, kl_weight=0.1,
             population_map="map")
  one = ggl.reconstruct(lk, vic, gen, gv, cfg, jax.random.key(4))
  three = ggl.reconstruct(lk, vic, gen, gv, dict(cfg, restarts=3),
                          jax.random.key(4))
  assert three.info["loss"] <= one.info["loss"] + 1e-6
  assert three.images.shape == one.images.shape
  for how in ("map", "vmap"):
    again = ggl.reconstruct(lk, vic, gen, gv,
                            dict(cfg, restarts=3, population_map=how),
                            jax.random.key(4))
    np.testing.assert_allclose(again.info["loss"], three.info["loss"],
                               rtol=1e-4)


def test_config_errors():
  gen, gv, vic, _, _, lk = _setup()
  bad_settings = [
      (dict(budgett=3), "unknown ggl settings .'budgett'"),
      (dict(optimizer="sgd"), "unknown ggl optimizer 'sgd'"),
      (dict(population_map="pmap"), "unknown ggl population_map 'pmap'"),
      (dict(noise_mode="fresh"), "unknown ggl noise_mode 'fresh'"),
      (dict(recommend="median"), "unknown ggl recommend 'median'"),
      (dict(latent="ball"), "unknown ggl latent 'ball'"),
      (dict(masks="topk"), "unknown ggl masks 'topk'"),
      (dict(schedule="linear"), "unknown ggl schedule 'linear'"),
      (dict(signed="yes"), "unknown ggl signed 'yes'"),
      (dict(l2_mean=None), "unknown ggl l2_mean None"),
      (dict(restarts=0), "ggl restarts=0: a count >= 1"),
      (dict(restarts=2.0), "ggl restarts=2.0: a count >= 1"),
      (dict(optimizer="bo", restarts=2), "only with optimizer='cmaes'"),
      (dict(restart_answer="median"), "unknown ggl restart_answer"),
      (dict(optimizer="adam", restart_answer="image_mean"),
       "restart_answer='image_mean' needs optimizer='cmaes'"),
  ]
  for settings, match in bad_settings:
    with pytest.raises(ValueError, match=match):
      ggl.reconstruct(lk, vic, gen, gv, settings, jax.random.key(0))
  with pytest.raises(ValueError, match="generator_dir is not set"):
    ggl.attack(lk, vic, dict(budget=1), jax.random.key(0))
  small = gen_lib.make_generator("dcgan", latent_dim=4, width=8,
                                 image_size=16)
  with pytest.raises(ValueError, match="generator makes images of shape"):
    ggl.reconstruct(lk, vic, small, small.init(jax.random.key(0)),
                    dict(budget=1), jax.random.key(0))
  with pytest.raises(ValueError, match="budget >= 2"):
    bo.turbo(lambda z: z[:, 0], 2, jax.random.key(0), budget=1)


@pytest.mark.parametrize("defense,cfg", [
    (dict(name="clip", max_norm=0.05), dict(optimizer="adam", budget=3)),
    (dict(name="soteria", rate=0.5), dict(optimizer="adam", budget=3)),
    (dict(name="gaussian", sigma=0.01),
     dict(optimizer="cmaes", budget=2, population=4, population_map="map")),
], ids=["clip", "soteria", "noise"])
def test_a_second_leak_compiles_nothing(defense, cfg):
  """The leak's arrays (and the observed norm, Soteria's rows) are traced:
  a benchmark's images share GGL's compiled programs."""
  gen, gv, vic, vv, _, _ = _setup()
  sizes, estimates = [], []
  for i in range(2):
    z = jax.random.normal(jax.random.key(10 + i), (1, 4))
    x = gen_lib.to_unit(gen.apply(gv, z)[0])
    lk, _ = leak_lib.simulate(vic, vv, x, jnp.array([i]),
                              jax.random.key(3 + i), defense=[defense])
    rec = ggl.reconstruct(lk, vic, gen, gv, dict(cfg, log_every=0),
                          jax.random.key(4))
    estimates.append(rec.info["defense_estimate"][0])
    sizes.append((engine._one_step.cache_size(), ggl._evaluate._cache_size(),
                  ggl._population._cache_size(), ggl._render._cache_size()))
    # CMA-ES compiles the leak into its population program, then frees it.
    assert ggl._population_c._cache_size() == 0
  assert sizes[1] == sizes[0]
  if defense["name"] == "clip":  # Each leak's own norm, in the run's info.
    assert estimates[0]["observed_norm"] == pytest.approx(0.05, rel=1e-4)
  if defense["name"] == "soteria":
    assert estimates[0]["keep"].endswith("/32 features")
