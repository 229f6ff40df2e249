"""Inverters that see the gradient as one flat vector.

**LTI** (Learning to Invert, Wu et al. 2023): the flattened gradient,
optionally count-sketched into ``int(P * sketch_rate)`` bins by a fixed
random hash (no signs), goes through Linear-ReLU-Linear-ReLU-Linear-Sigmoid.

**Flat** (the ablation GIT's reviewers asked for: is GIT's gain its
topology, or just feeding it the gradient?): GIT's own inputs, each gradient
tensor scaled to unit RMS plus the log-norms of all tensors (GIT's
conditioning), concatenated into one vector and mapped by an MLP whose
hidden width is chosen so that its parameter count matches a given GIT's
(``hidden_for_params``).
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



def flat_inputs(grads, labels=None) -> jax.Array:
  """GIT's inputs as one vector [N, P + L + 1 (+ B * classes)].

  Each tensor at unit RMS, then GIT's conditioning: the log-norms of all L
  tensors about their mean, and that mean / 10; shared labels last.
  """
  leaves = jax.tree.leaves(grads)
  n = leaves[0].shape[0]
  flat = [l.reshape(n, -1) for l in leaves]
  norms = [jnp.sqrt(jnp.sum(jnp.square(f), -1, keepdims=True)) for f in flat]
  blocks = [f * math.sqrt(f.shape[-1]) / (r + 1e-20)
            for f, r in zip(flat, norms)]
  logs = jnp.log(jnp.concatenate(norms, -1) + 1e-20)  # [N, L]
  mean_log = logs.mean(-1, keepdims=True)
  parts = blocks + [logs - mean_log, mean_log / 10.0]
  if labels is not None:
    parts.append(labels.reshape(n, -1))
  return jnp.concatenate(parts, -1)


def hidden_for_params(inputs: int, outputs: int, layers: int,
                      target: int) -> int:
  """The largest hidden width h whose MLP (``layers`` hidden layers of h,
  biases included) has at most ``target`` parameters."""
  if layers < 1:
    raise ValueError(f"layers must be >= 1; got {layers}")

  def count(h):
    return (inputs + 1) * h + (layers - 1) * (h + 1) * h + (h + 1) * outputs

  if count(1) > target:
    raise ValueError(f"an MLP from {inputs} inputs to {outputs} outputs has "
                     f"more than {target} parameters at any hidden width")
  lo, hi = 1, 2
  while count(hi) <= target:
    lo, hi = hi, hi * 2
  while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (mid, hi) if count(mid) <= target else (lo, mid)
  return lo


class Flat(nn.Module):
  """An MLP (GELU) on GIT's inputs flattened (``flat_inputs``)."""
  image_shape: tuple
  batch_size: int = 1
  hidden: int = 64
  layers: int = 2

  @nn.compact
  def __call__(self, grads, labels=None):
    x = flat_inputs(grads, labels)
    n = x.shape[0]
    for _ in range(self.layers):
      x = nn.gelu(nn.Dense(self.hidden)(x))
    x = nn.Dense(self.batch_size * math.prod(self.image_shape))(x)
    return nn.sigmoid(x).reshape((n, self.batch_size) + self.image_shape)
