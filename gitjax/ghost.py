"""Gradient distances of many trial inputs without their kernel gradients.

A population search (GGL's CMA-ES and BO) scores P trial inputs by the
distance of each trial's gradient to the leak. Vmapped per-trial gradients
materialize P copies of every kernel gradient: at ResNet-18 width 64, 50 x
11 M floats per generation, written and read back by memory-bound products
(vmapped with XLA's convolutions, 2.7x the batch's own backward pass;
BUILD_NOTES.md).

For a Dense or Conv layer the kernel gradient is a product A^T D of the
layer's input rows A [R, K] (input patches for a convolution) and the
cotangent of its output D [R, C], R = examples x output pixels. Against a
fixed kernel O [K, C]:

  <A^T D, O> = <D, A O>            (a forward product with O),
  |A^T D|^2  = <A A^T, D D^T>      (Gram matrices of R x R: Goodfellow's
                                    per-example norm trick, "ghost norms"),

neither of which writes a [K, C] matrix per trial, and the second costs
less than forming A^T D wherever R (K + C) < K C: the late layers on small
maps, which hold most of the parameters. ``squared_l2`` taps every
plain Dense and Conv layer (its input, and its output cotangent as the
gradient of a zero added to the output, with
``flax.linen.intercept_methods``) and takes those layers this way; the
others form A^T D for the trial (under vmap a batched product, where XLA's
per-example filter-gradient convolutions are slow). Biases, BatchNorm and
untapped kernels come from the ordinary gradient, whose backward pass skips
the tapped kernels. Same values as
``objectives.squared_l2(victim.batch_grad(...), observed)`` to rounding, for
one trial; vmap it over a population. ``products`` gives the per-tensor
<g, o> and |g|^2 of a cosine the same way: Inverting Gradients on one
image differentiates it (``matching.Settings.ghost``), where the gradient
of the cosine of a formed kernel gradient reads and writes kernel-sized
tensors several times a step.
"""

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gitjax import layer_trace
from gitjax import victim as victim_lib
from gitjax.models import common as models_common


class Tap(NamedTuple):
  """A Dense or Conv layer whose kernel gradient the distance reads through
  its input rows and output cotangent."""
  path: tuple  # Module path, e.g. ("stage3_block1", "conv2").
  kernel_shape: tuple
  out_shape: tuple  # One example's output.
  conv: tuple | None  # (kh, kw, stride, padding); None for Dense.
  gram: bool  # |A^T D|^2 by Gram matrices; else A^T D itself.


def _conv_geometry(conv: tuple) -> tuple | None:
  """(kh, kw, stride, padding) of a plain convolution, else None."""
  size, strides, padding, in_dil, k_dil, groups = conv
  strides = (strides,) if isinstance(strides, int) else tuple(strides or (1,))
  if (len(size) != 2 or not isinstance(padding, int)
      or len(set(strides)) != 1 or (in_dil, k_dil, groups) != (1, 1, 1)):
    return None
  return size[0], size[1], strides[0], padding


def taps(victim: victim_lib.Victim, batch: int) -> tuple[Tap, ...]:
  """Every plain Dense and Conv layer, ``gram`` where Gram matrices are
  cheaper for ``batch`` examples per trial.

  None (the plain gradient everywhere) for a victim that ``layer_trace``
  cannot trace (no Linen Dense/Conv layers, shared weights); a dilated or
  grouped convolution keeps its ordinary gradient.
  """
  try:
    layers = layer_trace.victim_layers(victim)
  except ValueError:
    return ()
  out = []
  for layer in layers:
    geometry = None
    if layer.kind == "conv":
      geometry = _conv_geometry(layer.conv)
      if geometry is None:
        continue
    k = math.prod(layer.kernel_shape[:-1])
    c = layer.kernel_shape[-1]
    r = batch * math.prod(layer.output_shape[:-1])
    out.append(Tap(layer.path, tuple(layer.kernel_shape),
                   tuple(layer.output_shape), geometry, r * (k + c) < k * c))
  return tuple(out)


def _rows(tap: Tap, x: jax.Array) -> jax.Array:
  """The layer's input as the rows A [R, K] its kernel multiplies."""
  if tap.conv is not None:
    kh, kw, stride, padding = tap.conv
    x = models_common.im2col_patches(x, kh, kw, stride, padding)
  return x.reshape(-1, math.prod(tap.kernel_shape[:-1]))


def _names(params, layers):
  """(leaf names, tree structure, leaves, tapped flags) of ``params``."""
  by_kernel = {t.path + ("kernel",) for t in layers}
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  names = [tuple(getattr(k, "key", k) for k in path) for path, _ in flat]
  leaves = [v for _, v in flat]
  return names, treedef, leaves, [n in by_kernel for n in names]


def _tapped_loss(victim, train, layers, params, state):
  """(loss(free, perturb, xs, ys) -> (value, layer inputs), free): the
  batch loss with the tapped kernels fixed and ``perturb`` added to their
  outputs; ``free`` the other parameters (leaf order)."""
  _, treedef, leaves, tapped = _names(params, layers)
  paths = {t.path for t in layers}

  def loss(free, perturb, xs, ys):
    inputs = {}

    def tap(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      path = tuple(context.module.scope.path)
      if context.method_name == "__call__" and path in paths:
        inputs[path] = args[0]
        out = out + perturb[path]
      return out

    it = iter(free)
    p = jax.tree.unflatten(treedef, [v if t else next(it)
                                     for v, t in zip(leaves, tapped)])
    with nn.intercept_methods(tap):
      value = victim_lib.batch_loss(victim, p, state, xs, ys, train)
    return value, inputs

  return loss, [v for v, t in zip(leaves, tapped) if not t]


def _parts(victim, train, layers, params, state, xs, ys):
  """(free parameters' gradients, tapped outputs' cotangents D, tapped
  layers' inputs)."""
  loss, free = _tapped_loss(victim, train, layers, params, state)
  zeros = {t.path: jnp.zeros((xs.shape[0],) + t.out_shape, xs.dtype)
           for t in layers}
  (grads, cotangents), inputs = jax.grad(loss, argnums=(0, 1), has_aux=True)(
      free, zeros, xs, ys)
  return grads, cotangents, inputs


def _terms(victim, params, state, xs, ys, observed, train, layers,
           factors=None):
  """Per tensor (leaf order): its gradient g, or (|g|^2, <g, o>) for a
  Gram layer, and the observed tensor o; ``factors`` (``leak_factors``)
  give <g, o> = <A U, D V> for o = U V^T."""
  factors = factors or {}
  if layers is None:
    layers = taps(victim, xs.shape[0])
  by_kernel = {t.path + ("kernel",): t for t in layers}
  names, _, _, tapped = _names(params, layers)
  grads, cotangents, inputs = _parts(victim, train, layers, params, state,
                                     xs, ys)
  grads = iter(grads)
  out = []
  for name, o, t in zip(names, jax.tree.leaves(observed), tapped):
    if not t:
      out.append((next(grads), o))
      continue
    tap = by_kernel[name]
    a = _rows(tap, inputs[tap.path])
    d = cotangents[tap.path].reshape(-1, tap.kernel_shape[-1])
    o2 = o.reshape(-1, tap.kernel_shape[-1])
    if tap.gram:
      if tap.path in factors:
        u, v = factors[tap.path]
        dot = jnp.vdot(a @ u, d @ v)
      else:
        dot = jnp.vdot(d, a @ o2)
      out.append(((jnp.vdot(a @ a.T, d @ d.T), dot), o2))
    else:
      out.append((a.T @ d, o2))
  return out


def squared_l2(victim: victim_lib.Victim, params, state, xs: jax.Array,
               ys: jax.Array, observed, train: bool = False,
               layers: tuple[Tap, ...] | None = None) -> jax.Array:
  """Per tensor (leaf order), |g - o|^2 for g = ``batch_grad`` on one trial.

  ``layers``: the taps (default ``taps(victim, len(xs))``); () is the plain
  gradient. Returns [T].
  """
  out = []
  for g, o in _terms(victim, params, state, xs, ys, observed, train, layers):
    if isinstance(g, tuple):
      norm2, dot = g
      out.append(norm2 - 2.0 * dot + jnp.vdot(o, o))
    else:
      out.append(jnp.vdot(g - o, g - o))
  return jnp.stack(out)


def products(victim: victim_lib.Victim, params, state, xs: jax.Array,
             ys: jax.Array, observed, train: bool = False,
             layers: tuple[Tap, ...] | None = None, factors=None):
  """Per tensor (leaf order), (<g, o>, |g|^2) for g = ``batch_grad``: what
  a cosine distance needs (``objectives.cosine_of_products``); ``layers``
  as for ``squared_l2``; ``factors``: ``leak_factors(observed)``, optional.
  Returns two lists of scalars."""
  dots, norms = [], []
  for g, o in _terms(victim, params, state, xs, ys, observed, train, layers,
                     factors):
    if isinstance(g, tuple):
      norms.append(g[0])
      dots.append(g[1])
    else:
      dots.append(jnp.vdot(g, o))
      norms.append(jnp.vdot(g, g))
  return dots, norms


def leak_factors(victim: victim_lib.Victim, observed, batch: int,
                 rank_tol: float = 1e-6, tol: float = 1e-5) -> dict:
  """{tap path: (U [K, r], V [C, r])} with o = U V^T to rounding, for each
  Gram layer's observed kernel o [K, C] that is of low rank.

  A batch's kernel gradient A^T D has rank at most R (examples x output
  pixels): ResNet-18's 4x4 stage at B = 1 has rank 16 in [4608, 512]. Then
  <g, o> = <A U, D V> reads U and V instead of o. Each o is factored on
  the host, in float64, from the eigenvectors of its smaller Gram matrix,
  to the singular values above ``rank_tol`` of the largest; kept where
  that is exact to ``tol`` (relative) and r (K + C) is under half of K C.
  A noisy leak is full rank and keeps o.
  """
  layers = {t.path + ("kernel",): t for t in taps(victim, batch) if t.gram}
  out = {}
  for path, o in jax.tree_util.tree_flatten_with_path(observed)[0]:
    name = tuple(getattr(k, "key", k) for k in path)
    if name not in layers:
      continue
    m = np.asarray(o, np.float64).reshape(-1, o.shape[-1])
    wide = m.shape[0] < m.shape[1]
    a = m.T if wide else m  # [long, short]
    if not np.all(np.isfinite(a)):
      continue
    w, vecs = np.linalg.eigh(a.T @ a)  # Ascending squared singular values.
    w, vecs = np.maximum(w[::-1], 0.0), vecs[:, ::-1]
    if not w[0] > 0:
      continue
    r = int(np.sum(w > rank_tol**2 * w[0]))
    if 2 * r * sum(m.shape) >= m.size or w[r:].sum() > tol**2 * w.sum():
      continue
    v = vecs[:, :r]
    u, v = (v, a @ v) if wide else (a @ v, v)  # o = U V^T.
    out[layers[name].path] = (jnp.asarray(u, o.dtype),
                              jnp.asarray(v, o.dtype))
  return out
