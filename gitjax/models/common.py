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


INITS = ("flax", "torch")


def torch_init(init_fn):
  """Wraps ``init_fn`` to redraw parameters as PyTorch's defaults do.

  Every Dense and Conv kernel and its bias are redrawn from
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (``nn.Linear`` / ``nn.Conv2d``'s
  ``reset_parameters``: kaiming_uniform with a = sqrt(5)); BatchNorm and other
  parameters keep Flax's values (scale 1, offset 0, as in PyTorch). Published
  gradient-inversion numbers are for PyTorch-initialized victims, and the
  init matters: on a random ConvNet, Inverting Gradients reaches a cosine
  loss of ~2e-4 against ~0.15 under Flax's lecun_normal kernels and zero
  biases (BUILD_NOTES.md).
  """

  def redraw(tree, key):
    if not isinstance(tree, dict):
      return tree
    kernel = tree.get("kernel")
    if kernel is not None and getattr(kernel, "ndim", 0) >= 2:
      fan_in = 1
      for n in kernel.shape[:-1]:
        fan_in *= n
      bound = 1.0 / fan_in**0.5
      kk, kb = jax.random.split(key)
      new = dict(tree)
      new["kernel"] = jax.random.uniform(kk, kernel.shape, kernel.dtype,
                                         -bound, bound)
      if "bias" in tree:
        new["bias"] = jax.random.uniform(kb, tree["bias"].shape,
                                         tree["bias"].dtype, -bound, bound)
      return new
    return {name: redraw(sub, jax.random.fold_in(key, i))
            for i, (name, sub) in enumerate(sorted(tree.items()))}

  def init(key, x):
    variables = dict(init_fn(key, x))
    variables["params"] = redraw(variables["params"],
                                 jax.random.fold_in(key, 0x7070))
    return variables

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
