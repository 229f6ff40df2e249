"""Gradient distances and image priors shared by the optimization attacks.

Distances take two params-shaped trees (the trial gradient first, the
observed one second) and optional per-tensor weights (a list in leaf order).
"""

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


def cosine(a, b, weights=None):
  """1 - <a, b> / (|a| |b|), one cosine over all tensors at once (IG)."""
  la, lb, ws = _pairs(a, b, weights)
  dot = sum(w * jnp.sum(x * y) for x, y, w in zip(la, lb, ws))
  na = sum(w * jnp.sum(jnp.square(x)) for x, w in zip(la, ws))
  nb = sum(w * jnp.sum(jnp.square(y)) for y, w in zip(lb, ws))
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
