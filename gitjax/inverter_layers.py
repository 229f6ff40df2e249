"""The inverter's 3x3 convolution and LayerNorm, with fast parameter
gradients on XLA:CPU.

Drop-in for ``flax.linen.Conv`` (3x3, "SAME", with bias) and
``flax.linen.LayerNorm`` (epsilon 1e-6, scale and bias, fast variance):
the same class names, so Flax names them ``Conv_i`` and ``LayerNorm_i``,
and the same parameter trees and initializers, so trained inverters load
unchanged; the function differs from Flax's by float rounding only.

What differs is the backward pass of the per-channel bias and scale: their
gradients sum over every position, a reduction to the last axis that
XLA:CPU runs as an unvectorized column reduction (2.8 ms for [32, 32, 32,
32] -> [32] on the 2-core CPU) where a product with a row of ones takes
0.65 ms. In the GIT training step these reductions were 47 of 122 ms of
operator time (2026-12-04, ``jax.profiler``; BUILD_NOTES.md, issue 13).
The layers are first-order only (``jax.custom_vjp``): training takes
gradients of them, nothing takes forward-mode derivatives.

``back_project``, the transposed convolution of error maps with each
example's leaked kernel gradient, is here for the same reason: on XLA:CPU
the transpose of a strided convolution, vmapped over per-example kernels,
is a grouped convolution with a dilated input, 4x slower than the same
map as stride-1 phases in one batched product (``back_project``'s
figures; BUILD_NOTES.md). Its derivative is a ``custom_vjp`` too.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gitjax.models import common as models_common


def sum_to_channels(g: jax.Array, per_example: bool = False) -> jax.Array:
  """``g.sum(all axes but the last)`` as a matrix product; with
  ``per_example``, all but the first and the last ([N, C])."""
  n = g.shape[0] if per_example else 1
  c = g.shape[-1]
  # The barrier keeps XLA's simplifier from turning the product with a
  # constant row of ones back into a reduction.
  ones = jax.lax.optimization_barrier(
      jnp.ones((n, 1, g.size // (n * c)), g.dtype))
  out = (ones @ g.reshape(n, -1, c))[:, 0]
  return out if per_example else out[0]


@jax.custom_vjp
def affine(y: jax.Array, scale: jax.Array | None, bias: jax.Array):
  """``y * scale + bias`` over the last axis (``scale`` None: no scale)."""
  return (y if scale is None else y * scale) + bias


def _affine_fwd(y, scale, bias):
  return affine(y, scale, bias), (y, scale)


def _affine_bwd(res, g):
  y, scale = res
  if scale is None:
    return g, None, sum_to_channels(g)
  return g * scale, sum_to_channels(g * y), sum_to_channels(g)


affine.defvjp(_affine_fwd, _affine_bwd)


@jax.custom_vjp
def add_per_example(x: jax.Array, b: jax.Array) -> jax.Array:
  """``x [N, ..., C] + b [N, C]`` (one bias vector per example)."""
  return x + b.reshape((b.shape[0],) + (1,) * (x.ndim - 2) + b.shape[-1:])


def _add_per_example_fwd(x, b):
  return add_per_example(x, b), None


def _add_per_example_bwd(_, g):
  return g, sum_to_channels(g, per_example=True)


add_per_example.defvjp(_add_per_example_fwd, _add_per_example_bwd)


class Conv(nn.Module):
  """``nn.Conv(features, (3, 3))``: "SAME", stride 1, with a bias."""
  features: int
  kernel_size: tuple = (3, 3)
  kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
  bias_init: Callable[..., Any] = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", self.kernel_init,
                        tuple(self.kernel_size) + (x.shape[-1],
                                                   self.features))
    bias = self.param("bias", self.bias_init, (self.features,))
    y = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return affine(y, None, bias)


def _channel_mean(a: jax.Array) -> jax.Array:
  """``a.mean(-1, keepdims=True)`` as a product with a column of 1 / C.

  As a reduction, YNNPACK's fused reduction takes every broadcast operand
  of its elementwise producers materialized (the LayerNorm's scale, 4 MB a
  layer at the GIT step's maps)."""
  c = a.shape[-1]
  w = jax.lax.optimization_barrier(jnp.full((c, 1), 1.0 / c, a.dtype))
  return a @ w


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def normalize(x: jax.Array, epsilon: float) -> jax.Array:
  """(x - E[x]) / sqrt(E[x^2] - E[x]^2 + epsilon) over the last axis."""
  return _normalize_fwd(x, epsilon)[0]


def _normalize_fwd(x, epsilon):
  mean = _channel_mean(x)
  var = jnp.maximum(0.0, _channel_mean(jnp.square(x)) - jnp.square(mean))
  r = jax.lax.rsqrt(var + epsilon)
  y = (x - mean) * r
  return y, (y, r)


def _normalize_bwd(epsilon, res, g):
  del epsilon
  y, r = res
  return (r * (g - _channel_mean(g) - y * _channel_mean(g * y)),)


normalize.defvjp(_normalize_fwd, _normalize_bwd)


class LayerNorm(nn.Module):
  """``nn.LayerNorm()``: over the last axis, E[x^2] - E[x]^2 variance."""
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    return affine(normalize(x, self.epsilon), scale, bias)


# ---------------------------------------------------------------------------
# Back-projection through a victim's convolution.


def conv_apply(x, kernel, conv):
  """The victim layer's convolution (no bias) with another kernel;
  ``conv`` is a ``layer_trace.LayerSpec.conv`` geometry."""
  kernel_size, strides, padding, in_dil, k_dil, _ = conv
  layer = nn.Conv(kernel.shape[-1], kernel_size, strides=strides,
                  padding=padding, input_dilation=in_dil,
                  kernel_dilation=k_dil, use_bias=False)
  return layer.apply({"params": {"kernel": kernel}}, x)


BACK_PROJECTIONS = ("auto", "conv", "phases")


def _phases_apply(conv) -> bool:
  _, strides, padding, in_dil, k_dil, _ = conv
  return (isinstance(padding, int) and isinstance(strides, int)
          and (in_dil, k_dil) == (1, 1))


def back_project(kernel_grad: jax.Array, deltas: jax.Array, layer,
                 impl: str = "auto") -> jax.Array:
  """Transposed convolution of error maps with a (per-example) kernel.

  Args:
    kernel_grad: [N, kh, kw, C_in, C_out], one kernel per example.
    deltas: [N, M, H_out, W_out, C_out], M error maps per example.
    layer: the conv layer (a ``layer_trace.LayerSpec``: geometry, shapes).
    impl: "conv", the convolution's transpose vmapped over the examples'
      kernels (XLA makes it one grouped convolution, with a dilated input
      for a strided layer); "phases", the transpose of a stride-s
      convolution as s * s stride-1 correlations in one batched matrix
      product (``_phases``; integer padding and stride, no dilation),
      whose derivative pairs the cotangent's patches with the kernels and
      the error maps; "auto", "phases" for strided layers where it
      applies, else "conv".
      At the GIT training step's CPU budget (32 examples, 4 maps each),
      forward and backward alone on the 2-core CPU (2026-12-05, medians
      of 11): LeNet's first layer (stride 2) "conv" 46.4 ms, "phases"
      11.6; second layer 11.5 and 4.0; third (stride 1) 4.0 and 6.5. The
      step: 241 -> 201 ms (BUILD_NOTES.md, issue 13).

  Returns:
    [N, M, H_in, W_in, C_in]: the conv analogue of G @ delta.
  """
  if impl not in BACK_PROJECTIONS:
    raise ValueError(f"unknown back-projection {impl!r}; known: "
                     f"{BACK_PROJECTIONS}")
  applies = _phases_apply(layer.conv)
  if impl == "auto":
    strided = layer.conv[1] not in (1, (1, 1))
    impl = "phases" if applies and strided else "conv"
  if impl == "conv":
    return _back_project_conv(kernel_grad, deltas, layer)
  if not applies:
    raise ValueError("the phases back-projection needs an integer padding "
                     "and stride and no dilation")
  return _back_project_phases(kernel_grad, deltas, layer)


def _back_project_conv(kernel_grad, deltas, layer):
  def one(kernel, d):
    x0 = jnp.zeros((d.shape[0],) + layer.input_shape, d.dtype)
    _, vjp = jax.vjp(lambda x: conv_apply(x, kernel, layer.conv), x0)
    return vjp(d)[0]
  return jax.vmap(one)(kernel_grad, deltas)


def _phases(kernel_grad, deltas, layer):
  """The transposed convolution as s * s stride-1 correlations ("phases",
  one per output offset modulo the stride s), all in one batched product
  of the error maps' patches with each example's kernel rearranged, then
  interleaved (depth to space) and cropped.

  Every output pixel is one row of the product. The adjoint of patch
  extraction, a sum of kh * kw shifted slices, was 3x slower in the GIT
  step: XLA:CPU fused the sum into each consumer of the result and
  recomputed it there; the lhs-dilated grouped convolution of "conv"
  multiplies s * s - 1 zeros for every input pixel.
  """
  (kh, kw), s, p = layer.conv[:3]
  h, w, c_in = layer.input_shape
  n, m, ho, wo, c_out = deltas.shape
  uh, uw = -(-kh // s), -(-kw // s)  # Taps per phase.
  qh, qw = -(-(h + p) // s), -(-(w + p) // s)  # Rows, columns per phase.
  # Output row s * q + r - p takes tap s * a + r at error-map row q - a:
  # taps padded to s * u, split (a, r), flipped in a (the patches' order).
  kp = jnp.pad(kernel_grad, ((0, 0), (0, s * uh - kh), (0, s * uw - kw),
                             (0, 0), (0, 0)))
  kp = kp.reshape(n, uh, s, uw, s, c_in, c_out)[:, ::-1, :, ::-1]
  kp = kp.transpose(0, 1, 3, 6, 2, 4, 5).reshape(n, uh * uw * c_out,
                                                   s * s * c_in)
  dp = jnp.pad(deltas, ((0, 0), (0, 0), (uh - 1, qh - ho),
                        (uw - 1, qw - wo), (0, 0)))
  cols = jnp.concatenate([dp[:, :, a:a + qh, b:b + qw]
                          for a in range(uh) for b in range(uw)], -1)
  out = jnp.einsum("nmhwk,nkc->nmhwc", cols, kp)
  out = out.reshape(n, m, qh, qw, s, s, c_in).transpose(0, 1, 2, 4, 3, 5, 6)
  out = out.reshape(n, m, qh * s, qw * s, c_in)
  return out[:, :, p:p + h, p:p + w]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _back_project_phases(kernel_grad, deltas, layer):
  return _phases(kernel_grad, deltas, layer)


def _back_project_phases_fwd(kernel_grad, deltas, layer):
  return _phases(kernel_grad, deltas, layer), (kernel_grad, deltas)


def _back_project_phases_bwd(layer, res, ct):
  kernel_grad, deltas = res
  # The error maps' cotangent is the layer's own (strided) convolution of
  # ct with each example's kernel, the kernels' pairs ct's patches with the
  # error maps: both from one set of ct's patches. (The vmapped convolution
  # was a grouped one, 1.2% of the GIT step; BUILD_NOTES.md, issue 13.)
  (kh, kw), stride, padding = layer.conv[:3]
  n, m = ct.shape[:2]
  patches = models_common.im2col_patches(
      ct.reshape((n * m,) + ct.shape[2:]), kh, kw, stride, padding)
  patches = patches.reshape((n, m) + patches.shape[1:])
  d_deltas = jnp.einsum("nmhwk,nko->nmhwo", patches,
                        kernel_grad.reshape(n, -1, kernel_grad.shape[-1]))
  d_kernel = jnp.einsum("nmhwk,nmhwo->nko", patches, deltas)
  return d_kernel.reshape(kernel_grad.shape), d_deltas


_back_project_phases.defvjp(_back_project_phases_fwd,
                            _back_project_phases_bwd)
