"""Gradient distances and image priors shared by the optimization attacks.

Distances take two params-shaped trees (the trial gradient first, the
observed one second) and optional per-tensor weights (a list in leaf order).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from gitjax import ghost


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
  return cosine_of_products([jnp.vdot(x, y) for x, y in zip(la, lb)],
                            [jnp.vdot(x, x) for x in la],
                            squares(lb) if b_squares is None else b_squares,
                            ws)


def cosine_of_products(dots, a_squares, b_squares, weights=None):
  """``cosine`` from per-tensor <a, b>, |a|^2 and |b|^2 (lists, leaf order;
  ``ghost.products`` gives the first two without forming a)."""
  ws = [1.0] * len(dots) if weights is None else list(weights)
  if not len(ws) == len(dots) == len(a_squares) == len(b_squares):
    raise ValueError(f"{len(ws)} layer weights for {len(dots)} tensors")
  dot = sum(w * d for d, w in zip(dots, ws))
  na = sum(w * q for q, w in zip(a_squares, ws))
  nb = sum(w * q for q, w in zip(b_squares, ws))
  return 1.0 - dot / (jnp.sqrt(na) * jnp.sqrt(nb) + 1e-12)


def layer_weight_list(layer_weights, message):
  """Per-leaf weights (leaf order) from Settings.layer_weights, or None."""
  if layer_weights is None:
    return None
  if not layer_weights or not isinstance(layer_weights[0], tuple):
    return list(layer_weights)
  table = dict(layer_weights)
  paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(message)[0]]
  names = [str(getattr(p[0], "key", p[0])) for p in paths]
  unknown = set(table) - set(names)
  if unknown:
    raise ValueError(f"layer_weights names unknown layers {sorted(unknown)}; "
                     f"layers: {sorted(set(names))}")
  return [table.get(n, 1.0) for n in names]


def plain_distance(name, victim, params, state, xs, ys, observed, train=False,
                   weights=None, observed_squares=None, factors=None):
  """The ``name`` ("cosine" or "l2") distance of ``batch_grad`` at (xs,
  ys) to ``observed``, the kernel terms through ``ghost`` (Gram matrices
  where cheaper than the kernel gradient; ``factors``: the observed
  kernels' ``ghost.leak_factors``), differentiated in reverse mode (over
  the backward pass)."""
  args = (victim, params, state, xs, ys, observed, train)
  if name == "cosine":
    dots, norms = ghost.products(*args, factors=factors)
    if observed_squares is None:
      observed_squares = squares(observed)
    return cosine_of_products(dots, norms, observed_squares, weights)
  if name != "l2":
    raise ValueError(f"ghost takes a cosine or l2 distance, not {name!r}")
  per = ghost.squared_l2(*args)
  return jnp.sum(per) if weights is None else jnp.dot(
      jnp.asarray(weights, per.dtype), per)


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
