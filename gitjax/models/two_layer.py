"""Two-layer network f(x) = sum_j a_j act(w_j . x), the tensor attack's victim.

Parameters: ``w`` [D, M] (first layer, column j is w_j) and ``a`` [M]. The
server picks them: ``w`` ~ N(0, I) i.i.d. ("gaussian") and ``a`` fixed to
1/M ("constant") or random signs / M ("sign"). The output is a scalar and the
loss is squared, as in Wang, Lee, Lei (AISTATS 2023).
"""

import math

import jax
import jax.numpy as jnp

from gitjax import victim as victim_lib
from gitjax.models import common


def make(input_shape=(28, 28, 1), width=1000, activation="cubic_quadratic",
         second_layer="constant", num_classes=1):
  if num_classes != 1:
    raise ValueError("two_layer has a scalar output (num_classes=1)")
  if second_layer not in ("constant", "sign"):
    raise ValueError(
        f"unknown second_layer {second_layer!r}; known: constant, sign")
  act = common.activation(activation)
  d = math.prod(input_shape)

  def init(key, x):
    del x
    kw, ka = jax.random.split(key)
    w = jax.random.normal(kw, (d, width))  # [D, M]
    a = jnp.full((width,), 1.0 / width)
    if second_layer == "sign":
      a = a * jax.random.rademacher(ka, (width,)).astype(jnp.float32)
    return {"params": {"w": w, "a": a}}

  def features(variables, x, train=False):
    del train
    x = x.reshape((x.shape[0], -1))  # [B, D]
    return act(x @ variables["params"]["w"])  # [B, M]

  def apply(variables, x, train=False):
    return features(variables, x, train) @ variables["params"]["a"]  # [B]

  config = dict(width=width, activation=activation, second_layer=second_layer)
  return victim_lib.Victim(
      name="two_layer", config=config, init=init, apply=apply,
      features=features, loss="squared", input_shape=tuple(input_shape),
      num_classes=1)
