"""Gradient inverters: GIT (built from the victim's layers) and LTI.

An inverter is a Linen module mapping a batch of N leaked messages (a
params-shaped tree whose leaves have a leading ``[N]`` axis) to N batches of
B images in [0, 1]: ``module.apply(variables, grads, labels) -> [N, B, H, W,
C]``. ``labels`` is ``[N, B, num_classes]`` one-hot when the client shares its
labels, else None. ``make_inverter`` builds either from a config.

**GIT (Coarse-GIT).** The victim's Dense and Conv layers, grouped by
top-level module, come from ``layer_trace.victim_groups``. The inverter
chains one block per group in reverse order; each block takes its layers'
weight and bias gradients and the previous block's estimate (of the group's
output) and returns an estimate of the group's input:

* Dense layer, kernel gradient G ``[F_in, F_out]``, bias gradient d: for one
  example G = h d^T, so h = G d / |d|^2 exactly (the backprop identity);
  the block also back-projects learned error directions, G @ M.
* Conv layer, kernel gradient ``[k, k, C_in, C_out]``: a small conv net
  predicts ``heads`` error maps delta ``[H_out, W_out, C_out]`` from the
  previous estimate and the bias gradient; the block back-projects them
  through the transposed convolution whose kernel is the leaked gradient,
  the conv analogue of G d. Together with the upsampled previous estimate and
  summaries of the kernel gradient, a residual conv stack yields the
  estimate of the layer input (``width`` channels per pixel).
* Conv layers without a bias (ResNet) use the bias gradient of the
  BatchNorm that follows them. A residual block adds a skip path from its
  output estimate to its input estimate.

Gradients are scale-normalized per tensor; the log-norms of all tensors
(and the shared labels) form a conditioning vector given to every block.

**LTI** (Wu et al. 2023) is in ``gitjax.lti``.
"""

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gitjax import inverter_layers
from gitjax import layer_trace
from gitjax import lti
from gitjax import victim as victim_lib


# ---------------------------------------------------------------------------
# Shape plumbing between blocks. A state is [N, F, c] ("vector": one c-vector
# per element of a flat victim tensor) or [N, H, W, c] ("spatial").


def fit(x: jax.Array, shape: tuple) -> jax.Array:
  """Brings a state to the geometry of a victim tensor of ``shape``.

  A flat tensor of the same size is reshaped (the victim flattens NHWC in C
  order, so this is exact); a globally pooled one is broadcast (the adjoint
  of mean pooling); spatial maps are resized; anything else is pooled and
  broadcast.
  """
  n, c = x.shape[0], x.shape[-1]
  if len(shape) == 1:
    f = shape[0]
    if x.ndim == 3 and x.shape[1] == f:
      return x
    pooled = x.reshape(n, -1, c).mean(axis=1)
    return jnp.broadcast_to(pooled[:, None, :], (n, f, c))
  h, w, ch = shape
  if x.ndim == 3:
    f = x.shape[1]
    if f == h * w * ch:
      return x.reshape(n, h, w, ch * c)
    if f == ch:  # The input of a head after global average pooling.
      return jnp.broadcast_to(x.reshape(n, 1, 1, f * c), (n, h, w, f * c))
    pooled = x.mean(axis=1)
    return jnp.broadcast_to(pooled[:, None, None, :], (n, h, w, c))
  if x.shape[1:3] == (h, w):
    return x
  return jax.image.resize(x, (n, h, w, c), "linear")


def _to_unit_norm(t: jax.Array, axes) -> tuple[jax.Array, jax.Array]:
  """t / |t| over ``axes`` (per example) and log |t|."""
  norm = jnp.sqrt(jnp.sum(jnp.square(t), axis=axes, keepdims=True))
  return t / (norm + 1e-20), jnp.log(norm + 1e-20)


def _rms_normalize(t: jax.Array) -> jax.Array:
  axes = tuple(range(1, t.ndim))
  rms = jnp.sqrt(jnp.mean(jnp.square(t), axis=axes, keepdims=True))
  return t / (rms + 1e-12)


def _get(tree, path):
  for p in path:
    tree = tree[p]
  return tree


def _conv3(features: int, **kwargs) -> nn.Module:
  """The inverter's 3x3 "same" convolution. XLA's own: at these shapes (32
  channels, 32x32 maps) it ran 10-20% faster than the im2col form the
  victims use on CPU (measured 2026-12-03); its bias gradient a matrix
  product (``inverter_layers``)."""
  return inverter_layers.Conv(features, (3, 3), **kwargs)


class ResUnit(nn.Module):
  """Pre-norm residual unit: x + conv(gelu(conv(gelu(norm(x)))))."""
  width: int

  @nn.compact
  def __call__(self, x):
    y = nn.gelu(inverter_layers.LayerNorm()(x))
    y = nn.gelu(_conv3(self.width)(y))
    return x + _conv3(self.width, kernel_init=nn.initializers.zeros)(y)


class DenseInverse(nn.Module):
  """Inverts one Dense layer: state of its output -> state of its input."""
  layer: layer_trace.LayerSpec
  heads: int
  channels: int

  @nn.compact
  def __call__(self, prev, kernel_grad, bias_grad, cond):
    g = kernel_grad  # [N, F_in, F_out]
    n, _, f_out = g.shape
    d = bias_grad if bias_grad is not None else jnp.ones((n, f_out))
    # The B=1 backprop identity h = G d / |d|^2, softly clipped for noise.
    sq = jnp.sum(jnp.square(d), axis=-1)[:, None]
    exact = jnp.einsum("nio,no->ni", g, d) / (sq + 1e-20)
    exact = 10.0 * jnp.tanh(exact / 10.0)
    g_n, g_log = _to_unit_norm(g, (1, 2))
    d_n, d_log = _to_unit_norm(d, (1,))
    dirs = self.param("directions", nn.initializers.normal(1.0),
                      (f_out, self.heads))
    deltas = d_n[:, :, None] * dirs[None]  # [N, F_out, heads]
    if prev is not None:
      prev = fit(prev, self.layer.output_shape)  # [N, F_out, c]
      deltas = deltas + nn.Dense(self.heads)(
          jnp.concatenate([prev, d_n[..., None] * math.sqrt(f_out)], -1))
    back = _rms_normalize(jnp.einsum("nio,noh->nih", g_n, deltas))
    glob = jnp.concatenate([cond, g_log.reshape(n, 1), d_log], -1)
    if prev is not None:
      glob = jnp.concatenate([glob, prev.mean(axis=1)], -1)
    glob = nn.gelu(nn.Dense(self.channels)(glob))  # [N, c]
    f_in = g.shape[1]
    x = jnp.concatenate(
        [exact[..., None], back,
         jnp.broadcast_to(glob[:, None], (n, f_in, self.channels))], -1)
    x = nn.gelu(nn.Dense(4 * self.channels)(x))
    return nn.Dense(self.channels)(x)  # [N, F_in, c]


class ConvInverse(nn.Module):
  """Inverts one Conv layer: state of its output -> state of its input."""
  layer: layer_trace.LayerSpec
  heads: int
  width: int
  depth: int
  max_dense_kernel: int

  @nn.compact
  def __call__(self, prev, kernel_grad, bias_grad, cond):
    layer = self.layer
    g = kernel_grad  # [N, k, k, C_in, C_out]
    n = g.shape[0]
    c_out = g.shape[-1]
    h_in, w_in, c_in = layer.input_shape
    h_out, w_out, _ = layer.output_shape
    d = bias_grad if bias_grad is not None else jnp.ones((n, c_out))
    g_n, g_log = _to_unit_norm(g, (1, 2, 3, 4))
    d_n, d_log = _to_unit_norm(d, (1,))
    summary = jnp.einsum("nabio,no->nabi", g_n, d_n).reshape(n, -1)
    glob = [cond, g_log.reshape(n, 1), d_log, summary]
    if g[0].size <= self.max_dense_kernel:
      glob.append(nn.gelu(nn.Dense(self.width)(g_n.reshape(n, -1))))
    glob = nn.gelu(nn.Dense(self.width)(jnp.concatenate(glob, -1)))
    # Global features enter every conv as a per-channel bias (cheaper than
    # broadcasting them as input channels).
    glob = jnp.concatenate([glob, d_n * math.sqrt(c_out)], -1)
    bias = lambda x: inverter_layers.add_per_example(
        x, nn.Dense(self.width)(glob))
    # Error maps at the layer output, from the previous estimate.
    prev = fit(prev, layer.output_shape)  # [N, H_out, W_out, c]
    x = nn.gelu(bias(_conv3(self.width)(prev)))
    deltas = _conv3(c_out * self.heads)(x)
    deltas = deltas.reshape(n, h_out, w_out, c_out, self.heads)
    deltas = deltas.transpose(0, 4, 1, 2, 3)  # [N, heads, H, W, C_out]
    # [N, heads, H_in, W_in, C_in]
    back = inverter_layers.back_project(g_n, deltas, layer)
    back = _rms_normalize(back.transpose(0, 2, 3, 1, 4).reshape(
        n, h_in, w_in, self.heads * c_in))
    up = fit(prev, layer.input_shape)
    # Named as before back_project stopped creating a Conv of its own (then
    # "Conv_2"), so inverters trained earlier still load.
    x = bias(_conv3(self.width, name="Conv_3")(
        jnp.concatenate([up, back], -1)))
    for _ in range(self.depth):
      x = ResUnit(self.width)(x)
    return x  # [N, H_in, W_in, width]


class GroupInverse(nn.Module):
  """Inverts a group (one layer, or a residual block) in reverse order."""
  group: layer_trace.GroupSpec
  heads: int
  width: int
  depth: int
  channels: int
  max_dense_kernel: int

  @nn.compact
  def __call__(self, prev, grads, cond):
    made = []  # (layer, state at the layer's input), latest first.
    for layer in reversed(self.group.layers):
      p = prev
      if layer.output_shape != self.group.output_shape:
        for other, state in made:
          if other.input_shape == layer.output_shape:
            p = state
            break
      kg = _get(grads, layer.path + ("kernel",))
      bg = _get(grads, layer.bias_path) if layer.bias_path else None
      name = "_".join(layer.path)
      if layer.kind == "dense":
        state = DenseInverse(layer, self.heads, self.channels,
                             name=name)(p, kg, bg, cond)
      else:
        if p is None:  # A classifier ending in a conv: start from zeros.
          p = jnp.zeros((kg.shape[0],) + layer.output_shape)
        state = ConvInverse(layer, self.heads, self.width, self.depth,
                            self.max_dense_kernel, name=name)(p, kg, bg, cond)
      made.insert(0, (layer, state))
    if len(self.group.layers) == 1:
      return made[0][1]
    shape = self.group.input_shape
    out = sum(s for l, s in made if l.input_shape == shape)
    if prev is not None:  # Skip connection: the block's output estimate.
      skip = fit(prev, shape)
      out = out + nn.Dense(out.shape[-1], name="skip")(skip)
    return out


class GIT(nn.Module):
  """Coarse-GIT: one block per victim group, chained in reverse order.

  Attributes:
    groups: ``layer_trace.victim_groups(victim)``.
    image_shape: (H, W, C) of one image.
    batch_size: B, images per message.
    width: channels of the spatial estimates.
    heads: error maps (directions) back-projected per layer.
    depth: residual units per conv block.
    channels: channels per element of vector (Dense-input) estimates.
    cond_dim: size of the conditioning vector (log-norms, labels).
    max_dense_kernel: kernel gradients up to this size also go through a
      Dense summary.
  """
  groups: tuple
  image_shape: tuple
  batch_size: int = 1
  width: int = 32
  heads: int = 4
  depth: int = 2
  channels: int = 8
  cond_dim: int = 64
  max_dense_kernel: int = 16384

  @nn.compact
  def __call__(self, grads, labels=None):
    leaves = jax.tree.leaves(grads)
    n = leaves[0].shape[0]
    logs = jnp.stack([
        jnp.log(jnp.sqrt(jnp.sum(jnp.square(l.reshape(n, -1)), -1)) + 1e-20)
        for l in leaves], -1)  # [N, L]
    mean_log = logs.mean(-1, keepdims=True)
    cond = [logs - mean_log, mean_log / 10.0]
    if labels is not None:
      cond.append(labels.reshape(n, -1))
    cond = nn.gelu(nn.Dense(self.cond_dim)(jnp.concatenate(cond, -1)))
    cond = nn.gelu(nn.Dense(self.cond_dim)(cond))
    state = None
    for group in reversed(self.groups):
      state = GroupInverse(group, self.heads, self.width, self.depth,
                           self.channels, self.max_dense_kernel,
                           name=group.name)(state, grads, cond)
    return self._output(state)

  def _output(self, state):
    """Maps the estimate of the first layer's input to B images in [0, 1]."""
    n = state.shape[0]
    h, w, c = self.image_shape
    b = self.batch_size
    if state.ndim == 3:  # Dense first layer on the flattened image.
      state = fit(state, (h * w * c,))
      x = nn.Dense(b, name="to_image")(state)  # [N, D, B]
      x = x.transpose(0, 2, 1).reshape(n, b, h, w, c)
    else:
      state = fit(state, self.image_shape)
      x = _conv3(b * c, name="to_image")(state)
      x = x.reshape(n, h, w, b, c).transpose(0, 3, 1, 2, 4)
    return nn.sigmoid(x)  # [N, B, H, W, C]


# ---------------------------------------------------------------------------
# Construction from a config.

INVERTERS = ("git", "lti", "flat")
_GIT_FIELDS = tuple(f.name for f in dataclasses.fields(GIT)
                    if f.name not in ("groups", "image_shape", "batch_size",
                                      "parent", "name"))
_LTI_FIELDS = ("hidden", "sketch_rate", "sketch_seed")
_FLAT_FIELDS = ("hidden", "layers", "match")
_FIELDS = dict(git=_GIT_FIELDS, lti=_LTI_FIELDS, flat=_FLAT_FIELDS)


def num_params(module: nn.Module, victim: victim_lib.Victim,
               labels_shared: bool = False) -> int:
  """Parameters of an inverter ``module`` for ``victim`` (no computation)."""
  grads = jax.eval_shape(
      lambda: victim_lib.init_variables(victim, jax.random.key(0)))["params"]
  grads = jax.tree.map(lambda s: jnp.zeros((1,) + s.shape, s.dtype), grads)
  labels = None
  if labels_shared:
    labels = jnp.zeros((1, module.batch_size, victim.num_classes))
  shapes = jax.eval_shape(module.init, jax.random.key(0), grads, labels)
  return sum(math.prod(s.shape) for s in jax.tree.leaves(shapes))


def make_inverter(config: Any, victim: victim_lib.Victim,
                  image_shape: Sequence[int], batch_size: int = 1
                  ) -> nn.Module:
  """Builds the inverter named by ``config["name"]`` for ``victim``.

  Args:
    config: ``dict(name="git", width=..., heads=..., ...)``,
      ``dict(name="lti", hidden=..., sketch_rate=None, sketch_seed=0)`` or
      ``dict(name="flat", layers=2, hidden=0, match=<a GIT config>)``
      (``hidden=0``: the widest whose parameter count is at most the GIT's
      built by ``match`` for the same victim, without shared labels).
    victim: the leaked model (GIT follows its layers).
    image_shape: (H, W, C) of one private image.
    batch_size: B, images per leaked message.
  """
  cfg = dict(config.to_dict() if hasattr(config, "to_dict") else config)
  name = cfg.pop("name", None)
  if name not in INVERTERS:
    raise ValueError(f"unknown inverter {name!r}; known: {INVERTERS}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1; got {batch_size}")
  known = _FIELDS[name]
  unknown = sorted(set(cfg) - set(known))
  if unknown:
    raise ValueError(f"unknown {name} inverter settings {unknown}; known: "
                     f"{sorted(known)}")
  image_shape = tuple(int(s) for s in image_shape)
  if name == "git":
    return GIT(groups=layer_trace.victim_groups(victim),
               image_shape=image_shape, batch_size=batch_size, **cfg)
  if name == "flat":
    layers = int(cfg.get("layers", 2))
    hidden = int(cfg.get("hidden") or 0)
    if not hidden:
      match = cfg.get("match")
      if not match or dict(match).get("name") != "git":
        raise ValueError("a flat inverter needs hidden > 0 or match=<a GIT "
                         "inverter config> (name='git')")
      target = num_params(
          make_inverter(match, victim, image_shape, batch_size), victim)
      leaves = jax.tree.leaves(jax.eval_shape(
          lambda: victim_lib.init_variables(victim, jax.random.key(0))
      )["params"])
      inputs = sum(math.prod(l.shape) for l in leaves) + len(leaves) + 1
      hidden = lti.hidden_for_params(
          inputs, batch_size * math.prod(image_shape), layers, target)
    return lti.Flat(image_shape=image_shape, batch_size=batch_size,
                    hidden=hidden, layers=layers)
  bins = lti.sketch_bins(lti.num_params(victim),
                         cfg.pop("sketch_rate", None))
  return lti.LTI(image_shape=image_shape, batch_size=batch_size,
                 sketch_bins=bins, **cfg)
