"""ghost.squared_l2 and products: the plain gradient's per-tensor distances
without the large kernels' gradients, and gradient matching through them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import ghost
from gitjax import generators as gen_lib
from gitjax import leak as leak_lib
from gitjax import models
from gitjax import victim as victim_lib
from gitjax.attacks import ggl
from gitjax.attacks import latent_search
from gitjax.attacks import matching


def _plain(vic, p, s, xs, ys, obs, train):
  g = victim_lib.batch_grad(vic, p, s, xs, ys, train)
  return jnp.stack([jnp.sum(jnp.square(a - b)) for a, b in
                    zip(jax.tree.leaves(g), jax.tree.leaves(obs))])


@pytest.mark.parametrize("name, kwargs, batch, train", [
    # Strided convolutions, shortcuts, BatchNorm on the trial's own batch.
    ("resnet18", dict(width=4), 2, True),
    ("lenet", dict(input_shape=(16, 16, 3)), 1, False),
    ("mlp", dict(input_shape=(4, 4, 3), hidden=(64, 64)), 3, False),
])
def test_matches_the_plain_gradient(name, kwargs, batch, train):
  vic = models.make_victim(name, **kwargs)
  p, s = victim_lib.split(victim_lib.init_variables(vic, jax.random.key(0)))
  shape = (batch,) + tuple(vic.input_shape)
  xs = jax.random.normal(jax.random.key(1), shape)
  ys = jnp.arange(batch) % vic.num_classes
  obs = victim_lib.batch_grad(vic, p, s, jax.random.normal(
      jax.random.key(2), shape), ys)
  assert any(t.gram for t in ghost.taps(vic, batch))  # Exercised.
  # Vmapped over two trials, as a population search calls it.
  trials = jnp.stack([xs, 2 * xs])
  got = jax.jit(jax.vmap(lambda x: ghost.squared_l2(
      vic, p, s, x, ys, obs, train)))(trials)
  want = jax.jit(jax.vmap(lambda x: _plain(vic, p, s, x, ys, obs, train)))(
      trials)
  np.testing.assert_allclose(got, want, rtol=2e-4)


def test_no_taps_is_the_plain_gradient():
  vic = models.make_victim("mlp", input_shape=(4, 4, 3), hidden=(16,))
  p, s = victim_lib.split(victim_lib.init_variables(vic, jax.random.key(0)))
  xs = jax.random.normal(jax.random.key(1), (2, 4, 4, 3))
  ys = jnp.array([0, 1])
  obs = jax.tree.map(jnp.ones_like, p)
  np.testing.assert_allclose(
      ghost.squared_l2(vic, p, s, xs, ys, obs, layers=()),
      _plain(vic, p, s, xs, ys, obs, False), rtol=1e-5)


def test_gram_matrices_where_they_are_cheaper():
  """ResNet-18 at B = 1: the 32x32 stage by A^T D, the 4x4 stage and the
  head by Gram matrices; wider batches move layers back to A^T D."""
  vic = models.make_victim("resnet18", width=64)
  gram = {t.path: t.gram for t in ghost.taps(vic, 1)}
  assert not gram[("stage0_block0", "conv1")]
  assert gram[("stage3_block1", "conv2")] and gram[("head",)]
  wide = {t.path: t.gram for t in ghost.taps(vic, 64)}
  assert not wide[("stage3_block1", "conv2")]


def _ggl_setup(defense):
  gen = gen_lib.make_generator("dcgan", latent_dim=4, width=8, image_size=8)
  gv = gen.init(jax.random.key(0))
  vic = models.make_victim("lenet", input_shape=(8, 8, 3), num_classes=3)
  vv = victim_lib.init_variables(vic, jax.random.key(1))
  x = gen_lib.to_unit(gen.apply(gv, jax.random.normal(
      jax.random.key(2), (1, 4)))[0])
  lk, _ = leak_lib.simulate(vic, vv, x, jnp.array([2]), jax.random.key(3),
                            defense=defense)
  return gen, gv, vic, lk


def test_ggl_search_loss_is_its_loss():
  """Under noise GGL's population searches use ghost (the same values);
  where the modeled message is not the plain gradient, the loss itself."""
  gen, gv, vic, lk = _ggl_setup([dict(name="gaussian", sigma=0.1)])
  prob = ggl.make_problem(lk, vic, gen, gv, {})
  assert prob.search_loss is not prob.loss
  zs = jax.random.normal(jax.random.key(5), (5, prob.dim))
  key = jax.random.key(6)
  want = jnp.stack([prob.loss(z, key) for z in zs])
  for how in ("vmap", "map"):
    got = ggl.population(prob, how)(zs, key)
    np.testing.assert_allclose(
        jax.jit(latent_search.population_loss(prob.search_loss, how))(
            zs, key), got, rtol=1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-4)
  off = ggl.make_problem(lk, vic, gen, gv, dict(ghost=False))
  assert off.search_loss is off.loss
  for defense, cfg in (([dict(name="prune", rate=0.5)], {}),
                       ([dict(name="gaussian", sigma=0.1)],
                        dict(noise_mode="add")),
                       ([dict(name="gaussian", sigma=0.1)],
                        dict(distance="cosine"))):
    gen, gv, vic, lk = _ggl_setup(defense)
    prob = ggl.make_problem(lk, vic, gen, gv, cfg)
    assert prob.search_loss is prob.loss, (defense, cfg)
  with pytest.raises(ValueError, match="ggl ghost"):
    ggl.make_problem(lk, vic, gen, gv, dict(ghost="yes"))



@pytest.mark.parametrize("distance, weights", [
    ("cosine", None), ("cosine", {"head": 0.5}), ("l2", None)])
def test_attack_objective_through_ghost_equals_the_formed_gradient(
    distance, weights):
  """IG's objective (and DLG's l2) on one image with ``ghost="on"``: the
  same value and input gradient as with the gradient formed, whether
  that is differentiated forward-over-reverse or by double backprop."""
  vic = models.make_victim("resnet18", width=4, input_shape=(16, 16, 3))
  assert any(t.gram for t in ghost.taps(vic, 1))
  vv = victim_lib.init_variables(vic, jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (1, 16, 16, 3))
  lk, truth = leak_lib.simulate(vic, vv, x, jnp.array([3]),
                                jax.random.key(2))
  data = matching.make_data(lk, truth.labels)
  v = {"x": jax.random.uniform(jax.random.key(3), x.shape)}
  got = {}
  for ghost_on, order in (("on", "forward"), ("off", "forward"),
                          ("off", "reverse")):
    s = matching.make_settings(objective=distance, tv=1e-4, ghost=ghost_on,
                               second_order=order, layer_weights=weights)
    problem = matching.make_problem(lk, vic, s)
    assert problem.uses_ghost(v["x"]) == (ghost_on == "on")
    got[ghost_on, order] = jax.jit(jax.value_and_grad(
        lambda v: problem(v, data)))(v)
  want = got["off", "forward"]
  for k in (("on", "forward"), ("off", "reverse")):
    np.testing.assert_allclose(got[k][0], want[0], rtol=1e-5)
    np.testing.assert_allclose(got[k][1]["x"], want[1]["x"], rtol=1e-3,
                               atol=1e-6 * float(jnp.abs(want[1]["x"]).max()))


def test_ghost_auto_is_one_image_cosine_plain_gradient_on_cpu():
  """``ghost="auto"``: on a CPU for a cosine on one image of a plain
  gradient; not for two images, l2, or a modeled defense. "on" where
  ghost cannot model the message, or an unknown value, is refused."""
  vic = models.make_victim("lenet", input_shape=(8, 8, 3), num_classes=3)
  vv = victim_lib.init_variables(vic, jax.random.key(0))
  one, two = jnp.zeros((1, 8, 8, 3)), jnp.zeros((2, 8, 8, 3))
  lk, _ = leak_lib.simulate(vic, vv, one, jnp.array([1]), jax.random.key(1))
  pruned, _ = leak_lib.simulate(vic, vv, one, jnp.array([1]),
                                jax.random.key(1),
                                defense=[dict(name="prune", rate=0.5)])
  cpu = jax.default_backend() == "cpu"
  auto = matching.make_settings()
  assert matching.make_problem(lk, vic, auto).uses_ghost(one) == cpu
  assert not matching.make_problem(lk, vic, auto).uses_ghost(two)
  assert not matching.make_problem(
      lk, vic, auto._replace(objective="l2")).uses_ghost(one)
  assert not matching.make_problem(pruned, vic, auto).uses_ghost(one)
  assert not matching.make_problem(
      lk, vic, auto._replace(ghost="off")).uses_ghost(one)
  with pytest.raises(ValueError, match="ghost='on' needs a cosine or l2"):
    matching.make_problem(pruned, vic, auto._replace(ghost="on"))
  with pytest.raises(ValueError, match="ghost='on' needs a cosine or l2"):
    matching.make_problem(lk, vic, auto._replace(ghost="on", objective="l1"))
  with pytest.raises(ValueError, match="unknown ghost 'yes'"):
    matching.make_settings(ghost="yes")


def test_low_rank_leak_factors_give_the_same_objective():
  """A one-image leak's late kernels are of low rank (at most the output
  pixels): the cosine reads their factors, with the same value and input
  gradient; a noisy leak is full rank and keeps its kernels."""
  vic = models.make_victim("resnet18", width=4, input_shape=(16, 16, 3))
  vv = victim_lib.init_variables(vic, jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (1, 16, 16, 3))
  lk, truth = leak_lib.simulate(vic, vv, x, jnp.array([3]),
                                jax.random.key(2))
  factors = ghost.leak_factors(vic, lk.message, 1)
  gram = [t for t in ghost.taps(vic, 1) if t.gram]
  assert factors and set(factors) <= {t.path for t in gram}
  for path, (u, v) in factors.items():
    o = lk.message
    for k in path + ("kernel",):
      o = o[k]
    o2 = o.reshape(-1, o.shape[-1])
    assert u.shape[1] == v.shape[1] < min(o2.shape)
    np.testing.assert_allclose(u @ v.T, o2, atol=1e-5 * float(
        jnp.abs(o2).max()))
  s = matching.make_settings(tv=1e-4, ghost="on")
  problem = matching.make_problem(lk, vic, s)
  data = matching.make_data(lk, truth.labels)
  with_f = problem.with_factors(data, x)
  assert with_f["factors"].keys() == factors.keys()
  v = {"x": jax.random.uniform(jax.random.key(3), x.shape)}
  f = jax.jit(jax.value_and_grad(lambda v, d: problem(v, d)))
  (a, ga), (b, gb) = f(v, data), f(v, with_f)
  np.testing.assert_allclose(a, b, rtol=1e-5)
  np.testing.assert_allclose(ga["x"], gb["x"], rtol=1e-3,
                             atol=1e-5 * float(jnp.abs(ga["x"]).max()))
  noisy, _ = leak_lib.simulate(vic, vv, x, jnp.array([3]), jax.random.key(2),
                               defense=[dict(name="gaussian", sigma=0.01)])
  assert ghost.leak_factors(vic, noisy.message, 1) == {}
  # With ghost off, no factors are made.
  assert "factors" not in problem._replace(ghost="off").with_factors(data, x)
