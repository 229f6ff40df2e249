"""Defenses applied to what a client sends, as pure functions of the message.

Each defense is ``fn(message, key, **settings) -> message`` on a params-shaped
tree. Soteria also needs the client's inputs (``victim``, ``variables``,
``xs``); DP-SGD changes how the message is computed and lives with the rest
of the client in ``gitjax.client_model``, as do the attacker's models of
these defenses. ``apply(spec, message, key, **context)`` runs a config: one
``dict(name=..., **settings)`` or a list of them, in order.
"""

import jax
import jax.numpy as jnp

from gitjax import victim as victim_lib

Params = victim_lib.Params


def global_norm(tree) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def _tree_keys(key, tree):
  leaves, treedef = jax.tree.flatten(tree)
  return jax.tree.unflatten(treedef, list(jax.random.split(key, len(leaves))))


def gaussian_noise(message, key, *, sigma: float):
  """Adds N(0, sigma^2) to every entry."""
  keys = _tree_keys(key, message)
  return jax.tree.map(lambda m, k: m + sigma * jax.random.normal(k, m.shape),
                      message, keys)


def laplacian_noise(message, key, *, scale: float):
  """Adds Laplace(0, scale) to every entry."""
  keys = _tree_keys(key, message)
  return jax.tree.map(lambda m, k: m + scale * jax.random.laplace(k, m.shape),
                      message, keys)


def clip(message, key=None, *, max_norm: float):
  """Scales the whole message to global L2 norm at most ``max_norm``."""
  del key
  factor = jnp.minimum(1.0, max_norm / (global_norm(message) + 1e-12))
  return jax.tree.map(lambda m: m * factor, message)


def clip_tensor(m: jax.Array, max_norm) -> jax.Array:
  """One tensor scaled to L2 norm at most ``max_norm``."""
  return m * jnp.minimum(1.0, max_norm / (jnp.linalg.norm(m) + 1e-12))


def clip_per_layer(message, key=None, *, max_norm: float):
  """Clips each parameter tensor to L2 norm at most ``max_norm``."""
  del key
  return jax.tree.map(lambda m: clip_tensor(m, max_norm), message)


def kth_smallest(a: jax.Array, k: int) -> jax.Array:
  """The k-th smallest (1-based) entry of a non-negative array, exactly.

  Equals ``jnp.sort(a.ravel())[k - 1]``. For float32 it bisects on the bit
  patterns (monotone for non-negative floats): 31 counting passes instead of
  a sort, which on XLA:CPU is two orders of magnitude slower for the
  millions of entries of a ResNet tensor (and worse vmapped over a CMA-ES
  population).
  """
  if a.dtype != jnp.float32:
    return jnp.sort(a.ravel())[k - 1]
  bits = jax.lax.bitcast_convert_type(a, jnp.int32)

  def halve(_, bounds):  # Invariant: the answer's bits lie in [lo, hi].
    lo, hi = bounds
    mid = lo + (hi - lo) // 2
    enough = jnp.sum(bits <= mid, dtype=jnp.int32) >= k
    return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

  bounds = (jnp.int32(0), jnp.int32(0x7F800000))  # [0, +inf].
  lo, _ = jax.lax.fori_loop(0, 31, halve, bounds)
  return jax.lax.bitcast_convert_type(lo, jnp.float32)


def prune_tensor(m: jax.Array, rate: float) -> jax.Array:
  """Zeroes the ``rate`` fraction of entries of ``m`` smallest in |m|."""
  k = int(round(rate * m.size))  # Entries to drop.
  if k == 0:
    return m
  thresh = kth_smallest(jnp.abs(m), k)
  return jnp.where(jnp.abs(m) > thresh, m, 0.0)


def prune(message, key=None, *, rate: float):
  """Magnitude pruning: zeroes the ``rate`` fraction smallest |m| per tensor."""
  del key
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"prune rate must be in [0, 1); got {rate}")
  return jax.tree.map(lambda m: prune_tensor(m, rate), message)


def sign(message, key=None):
  """signSGD: sends only the signs."""
  del key
  return jax.tree.map(jnp.sign, message)


def quantize(message, key=None, *, bits: int, stochastic: bool = False):
  """Uniform k-bit quantization per tensor on [-max|m|, max|m|].

  With ``stochastic`` the rounding is unbiased (QSGD-style) and uses ``key``.
  """
  if bits < 1:
    raise ValueError(f"quantize bits must be >= 1; got {bits}")
  levels = 2**bits - 1
  keys = _tree_keys(key, message) if stochastic else None

  def one(m, k=None):
    scale = jnp.max(jnp.abs(m)) + 1e-12
    u = (m / scale + 1.0) / 2.0 * levels  # In [0, levels].
    if k is not None:
      u = jnp.floor(u + jax.random.uniform(k, m.shape))
    else:
      u = jnp.round(u)
    return (u / levels * 2.0 - 1.0) * scale

  if stochastic:
    return jax.tree.map(one, message, keys)
  return jax.tree.map(one, message)


def soteria_mask(victim, variables, xs, rate: float) -> jax.Array:
  """Soteria (Sun et al. 2021): which last-layer input features to prune.

  For each feature f of the representation r (the input of ``head``), the
  score is |r_f| / ||dr_f/dx|| averaged over the batch; the ``rate`` fraction
  with the smallest score (the most revealing features) is pruned.

  Returns:
    [F] bool, True where the feature is kept.
  """
  if victim.features is None:
    raise ValueError(f"soteria needs a victim with features; {victim.name} "
                     "has none")
  feats_fn = lambda x: jnp.sum(victim.features(variables, x), axis=0)  # [F]
  jac = jax.jacrev(feats_fn)(xs)  # [F, B, ...]
  jac = jac.reshape(jac.shape[:2] + (-1,))
  dnorm = jnp.linalg.norm(jac, axis=-1)  # [F, B]
  r = victim.features(variables, xs).T  # [F, B]
  score = jnp.mean(jnp.abs(r) / (dnorm + 1e-12), axis=1)  # [F]
  k = int(round(rate * score.shape[0]))
  if k == 0:
    return jnp.ones(score.shape, bool)
  return score > kth_smallest(score, k)


def keep_head_rows(message, keep):
  """Zeroes the rows of the head's kernel gradient where ``keep`` is False."""
  if "head" not in message:
    raise ValueError("soteria needs a message with a 'head' layer")
  head = dict(message["head"])
  head["kernel"] = head["kernel"] * jnp.asarray(keep)[:, None]
  return {**message, "head": head}


def soteria(message, key=None, *, rate: float, victim, variables, xs):
  """Zeroes the rows of the head's kernel gradient for pruned features."""
  del key
  return keep_head_rows(message, soteria_mask(victim, variables, xs, rate))


DEFENSES = {
    "none": lambda message, key=None: message,
    "gaussian": gaussian_noise,
    "laplacian": laplacian_noise,
    "clip": clip,
    "clip_per_layer": clip_per_layer,
    "prune": prune,
    "sign": sign,
    "quantize": quantize,
    "soteria": soteria,
}
NEEDS_INPUTS = frozenset({"soteria"})
# DP-SGD is a protocol change, handled by client_model.dp_sgd_message.
ALL_NAMES = tuple(sorted(DEFENSES)) + ("dp_sgd",)


def as_list(spec) -> list[dict]:
  """Normalizes a defense config to a list of dicts (None -> [])."""
  if spec is None:
    return []
  if hasattr(spec, "to_dict"):
    spec = spec.to_dict()
  if isinstance(spec, dict):
    spec = [spec] if spec.get("name", "none") != "none" else []
  out = []
  for s in spec:
    s = dict(s.to_dict() if hasattr(s, "to_dict") else s)
    if "name" not in s:
      raise ValueError(f"defense {s} has no 'name'")
    if s["name"] not in ALL_NAMES:
      raise ValueError(
          f"unknown defense {s['name']!r}; known: {list(ALL_NAMES)}")
    if s["name"] != "none":
      out.append(s)
  return out


def apply(spec, message, key, **context):
  """Applies a defense config in order. context: victim, variables, xs."""
  for s in as_list(spec):
    name = s.pop("name")
    if name == "dp_sgd":
      continue  # Already applied when the message was computed.
    if name in NEEDS_INPUTS:
      s.update(context)
    key, sub = jax.random.split(key)
    try:
      message = DEFENSES[name](message, sub, **s)
    except TypeError as e:
      raise ValueError(f"bad settings for defense {name!r}: {e}") from None
  return message
