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
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


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


class LayerNorm(nn.Module):
  """``nn.LayerNorm()``: over the last axis, E[x^2] - E[x]^2 variance."""
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.maximum(
        0.0, jnp.mean(jnp.square(x), -1, keepdims=True) - jnp.square(mean))
    return affine((x - mean) * jax.lax.rsqrt(var + self.epsilon), scale,
                  bias)
