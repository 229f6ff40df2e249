"""Learning to Invert (Wu et al. 2023): an MLP on the (sketched) gradient.

The flattened gradient, optionally count-sketched into ``int(P *
sketch_rate)`` bins by a fixed random hash (no signs), goes through
Linear-ReLU-Linear-ReLU-Linear-Sigmoid.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gitjax import victim as victim_lib


def num_params(victim: victim_lib.Victim) -> int:
  params = jax.eval_shape(
      lambda: victim_lib.init_variables(victim, jax.random.key(0)))["params"]
  return sum(math.prod(l.shape) for l in jax.tree.leaves(params))


def sketch_bins(num: int, rate: float | None) -> int | None:
  """int(P * rate) count-sketch bins, or None without compression."""
  if rate is None:
    return None
  if not 0.0 < rate <= 1.0:
    raise ValueError(f"sketch_rate must be in (0, 1]; got {rate}")
  return max(1, int(num * rate))


def count_sketch(flat: jax.Array, bins: int, seed: int) -> jax.Array:
  """Sums the P entries of ``flat`` [N, P] into ``bins`` hashed bins (no signs).

  The hash is a fixed function of ``seed``: entry j goes to bin
  ``randint(key(seed))[j]``, the same at training and at attack time.
  """
  p = flat.shape[-1]
  index = jax.random.randint(jax.random.key(seed), (p,), 0, bins)
  return jax.vmap(lambda v: jax.ops.segment_sum(v, index, bins))(flat)


class LTI(nn.Module):
  """Learning to Invert: an MLP on the flattened (sketched) gradient."""
  image_shape: tuple
  batch_size: int = 1
  hidden: int = 3000
  sketch_bins: int | None = None
  sketch_seed: int = 0

  @nn.compact
  def __call__(self, grads, labels=None):
    leaves = jax.tree.leaves(grads)
    n = leaves[0].shape[0]
    x = jnp.concatenate([l.reshape(n, -1) for l in leaves], -1)  # [N, P]
    if self.sketch_bins is not None:
      x = count_sketch(x, self.sketch_bins, self.sketch_seed)
    if labels is not None:
      x = jnp.concatenate([x, labels.reshape(n, -1)], -1)
    x = nn.relu(nn.Dense(self.hidden)(x))
    x = nn.relu(nn.Dense(self.hidden)(x))
    x = nn.Dense(self.batch_size * math.prod(self.image_shape))(x)
    return nn.sigmoid(x).reshape((n, self.batch_size) + self.image_shape)

