"""Gradient distances and image priors shared by the optimization attacks.

Distances take two params-shaped trees (the trial gradient first, the
observed one second) and optional per-tensor weights (a list in leaf order).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


def _pairs(a, b, weights=None):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  ws = [1.0] * len(la) if weights is None else list(weights)
  if len(ws) != len(la):
    raise ValueError(f"{len(ws)} layer weights for {len(la)} tensors")
  return la, lb, ws


def squared_l2(a, b, weights=None):
  """Sum over tensors of w * ||a - b||^2 (DLG's distance)."""
  la, lb, ws = _pairs(a, b, weights)
  return sum(w * jnp.sum(jnp.square(x - y)) for x, y, w in zip(la, lb, ws))


def l1(a, b, weights=None):
  """Sum over tensors of w * ||a - b||_1 (GI-SMN's default)."""
  la, lb, ws = _pairs(a, b, weights)
  return sum(w * jnp.sum(jnp.abs(x - y)) for x, y, w in zip(la, lb, ws))


def squares(tree) -> list:
  """Per-tensor sums of squares, in leaf order (``cosine``'s ``b_squares``)."""
  return [jnp.vdot(x, x) for x in jax.tree.leaves(tree)]


def cosine(a, b, weights=None, b_squares=None):
  """1 - <a, b> / (|a| |b|), one cosine over all tensors at once (IG).

  ``b_squares`` (``squares(b)``, optional) saves recomputing |b| when ``b``
  is a fixed leak that many steps compare against."""
  la, lb, ws = _pairs(a, b, weights)
  # vdot, not sum(x * y): XLA:CPU runs a product where the elementwise
  # form became a slow windowed reduction (IG step 4-8% faster at B = 1).
  dot = sum(w * jnp.vdot(x, y) for x, y, w in zip(la, lb, ws))
  na = sum(w * jnp.vdot(x, x) for x, w in zip(la, ws))
  if b_squares is None:
    b_squares = squares(lb)
  nb = sum(w * q for q, w in zip(b_squares, ws))
  return 1.0 - dot / (jnp.sqrt(na) * jnp.sqrt(nb) + 1e-12)


DISTANCES = {"l2": squared_l2, "l1": l1, "cosine": cosine}


def distance(name: str):
  if name not in DISTANCES:
    raise ValueError(f"unknown distance {name!r}; known: {sorted(DISTANCES)}")
  return DISTANCES[name]


def total_variation(x: jax.Array) -> jax.Array:
  """Anisotropic TV, mean |dx| + mean |dy|, summed over the batch.

  x: [B, H, W, C]. Inverting Gradients' form (no padding).
  """
  dx = jnp.mean(jnp.abs(x[:, :, 1:] - x[:, :, :-1]), axis=(1, 2, 3))
  dy = jnp.mean(jnp.abs(x[:, 1:] - x[:, :-1]), axis=(1, 2, 3))
  return jnp.sum(dx + dy)


def l2_norm(x: jax.Array) -> jax.Array:
  """Sum over the batch of ||x_i||_2 / (H W)."""
  flat = x.reshape(x.shape[0], -1)
  return jnp.sum(jnp.linalg.norm(flat, axis=1)) / (x.shape[1] * x.shape[2])


def group_distance(x: jax.Array, ref: jax.Array) -> jax.Array:
  """Sum over the batch of ||x_i - ref_i||_2 / (H W) (GI-SMN's and
  GradInversion's group terms).

  The norm is smoothed (+1e-12 under the root) so that its gradient stays
  finite where x equals ref, as it does right after a snapshot is taken.
  """
  hw = x.shape[1] * x.shape[2] if x.ndim == 4 else 1
  diff = (x - ref).reshape(x.shape[0], -1)
  return jnp.sum(jnp.sqrt(jnp.sum(jnp.square(diff), axis=1) + 1e-12)) / hw


def bn_statistics(victim, variables, xs):
  """Batch statistics at the input of every BatchNorm layer (eval forward).

  Returns:
    A list of (mean [F], var [F], running_mean [F], running_var [F]) in call
    order, computed with flax's ``nn.intercept_methods`` around
    ``victim.apply`` (no change to the victim needed).
  """
  stats = []

  def interceptor(next_fun, args, kwargs, context):
    mod = context.module
    if isinstance(mod, nn.BatchNorm) and context.method_name == "__call__":
      h = args[0]
      axes = tuple(range(h.ndim - 1))
      stats.append((jnp.mean(h, axes), jnp.var(h, axes),
                    mod.get_variable("batch_stats", "mean"),
                    mod.get_variable("batch_stats", "var")))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    victim.apply(variables, xs)
  return stats


def bn_prior(victim, variables, xs, first_scale: float = 10.0):
  """DeepInversion's prior: sum_l ||mu_l - m_l|| + ||var_l - v_l||.

  The first layer is weighted by ``first_scale`` (breaching's choice).
  """
  stats = bn_statistics(victim, variables, xs)
  total = 0.0
  for i, (mu, var, m, v) in enumerate(stats):
    w = first_scale if i == 0 else 1.0
    total += w * (jnp.linalg.norm(mu - m) + jnp.linalg.norm(var - v))
  return total
