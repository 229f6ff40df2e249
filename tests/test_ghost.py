"""ghost.squared_l2: the plain gradient's per-tensor distances, without the
large kernels' gradients."""

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

