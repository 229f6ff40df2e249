"""Helpers shared by the victim definitions."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from gitjax import victim as victim_lib

ACTIVATIONS = {
    "relu": nn.relu,
    "sigmoid": nn.sigmoid,
    "tanh": jnp.tanh,
    "gelu": nn.gelu,
    "softplus": nn.softplus,
    "leaky_relu": nn.leaky_relu,
    "cubic_quadratic": lambda t: t**3 + t**2,  # Wang, Lee, Lei's sigma.
}


def activation(name: str):
  if name not in ACTIVATIONS:
    raise ValueError(
        f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]


def uniform_init(scale: float):
  """uniform(-scale, scale), the init of DLG's LeNet."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init


def from_linen(name, config, module, input_shape, num_classes,
               loss="cross_entropy"):
  """Wraps a Linen module whose __call__(x, train) returns (logits, feats)."""

  def init(key, x):
    return dict(module.init(key, x, train=False))

  def run(variables, x, train=False):
    if train and "batch_stats" in variables:
      (logits, feats), _ = module.apply(variables, x, train=True,
                                        mutable=["batch_stats"])
      return logits, feats
    return module.apply(variables, x, train=train)

  def apply(variables, x, train=False):
    return run(variables, x, train)[0]

  def features(variables, x, train=False):
    return run(variables, x, train)[1]

  return victim_lib.Victim(
      name=name, config=dict(config), init=init, apply=apply,
      features=features, loss=loss, input_shape=tuple(input_shape),
      num_classes=num_classes)
