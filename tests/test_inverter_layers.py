"""The inverter's Conv and LayerNorm equal Flax's, with fast gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import inverter_layers as il


@pytest.mark.parametrize("ours, theirs", [
    (il.Conv(5), nn.Conv(5, (3, 3))),
    (il.Conv(5, kernel_init=nn.initializers.zeros),
     nn.Conv(5, (3, 3), kernel_init=nn.initializers.zeros)),
    (il.LayerNorm(), nn.LayerNorm()),
])
def test_same_parameters_function_and_gradients_as_flax(key, ours, theirs):
  x = jax.random.normal(key, (2, 6, 6, 4))
  v_ours = ours.init(jax.random.key(1), x)
  v_theirs = theirs.init(jax.random.key(1), x)
  assert (jax.tree.map(jnp.shape, v_ours)
          == jax.tree.map(jnp.shape, v_theirs))
  jax.tree.map(np.testing.assert_array_equal, v_ours, v_theirs)
  # Nonzero scale and bias: their gradients then matter.
  v = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(key, a.shape),
                   v_theirs)
  w = jax.random.normal(jax.random.key(2), (2, 6, 6, ours.features
                                            if hasattr(ours, "features")
                                            else 4))
  loss = lambda m: lambda p, x: jnp.sum(jnp.tanh(m.apply(p, x)) * w)
  np.testing.assert_allclose(ours.apply(v, x), theirs.apply(v, x),
                             rtol=1e-5, atol=1e-6)
  g_ours = jax.grad(loss(ours), argnums=(0, 1))(v, x)
  g_theirs = jax.grad(loss(theirs), argnums=(0, 1))(v, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-5),
               g_ours, g_theirs)


def test_auto_names_match_flax_inside_a_module(key):
  class Block(nn.Module):
    mine: bool

    @nn.compact
    def __call__(self, x):
      conv, norm = ((il.Conv, il.LayerNorm) if self.mine else
                    (lambda f: nn.Conv(f, (3, 3)), nn.LayerNorm))
      return conv(3)(norm()(conv(3)(x)))

  x = jnp.ones((1, 4, 4, 2))
  names = lambda m: jax.tree_util.tree_structure(m.init(key, x))
  assert names(Block(True)) == names(Block(False))


def test_sum_to_channels():
  g = jnp.arange(24.0).reshape(2, 3, 4)
  np.testing.assert_allclose(il.sum_to_channels(g), g.sum((0, 1)))
  np.testing.assert_allclose(il.sum_to_channels(g, per_example=True),
                             g.sum(1))


def test_add_per_example_and_its_gradient(key):
  x = jax.random.normal(key, (3, 4, 5, 2))
  b = jax.random.normal(jax.random.key(1), (3, 2))
  w = jax.random.normal(jax.random.key(2), x.shape)
  ref = lambda x, b: jnp.sum(jnp.tanh(x + b[:, None, None, :]) * w)
  ours = lambda x, b: jnp.sum(jnp.tanh(il.add_per_example(x, b)) * w)
  np.testing.assert_allclose(ours(x, b), ref(x, b), rtol=1e-6)
  jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-5,
                                                       atol=1e-6),
               jax.grad(ours, (0, 1))(x, b), jax.grad(ref, (0, 1))(x, b))
