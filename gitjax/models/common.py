"""Helpers shared by the victim definitions."""

from typing import Callable

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


INITS = ("flax", "torch", "torchvision")
CONV_IMPLS = ("auto", "xla", "im2col", "shape")


def resolve_conv(impl: str) -> str:
  """"auto" is "im2col" on the CPU backend and "xla" elsewhere."""
  if impl not in CONV_IMPLS:
    raise ValueError(f"unknown conv implementation {impl!r}; known: "
                     f"{CONV_IMPLS}")
  if impl == "auto":
    return "im2col" if jax.default_backend() == "cpu" else "xla"
  return impl


def conv_output_size(size: int, k: int, stride: int, padding: int) -> int:
  """One spatial side of a convolution's output (symmetric padding)."""
  return (size + 2 * padding - k) // stride + 1


def im2col_patches(x: jax.Array, kh: int, kw: int, stride: int,
                   padding: int) -> jax.Array:
  """The kh*kw strided slices of the zero-padded x, concatenated.

  x: [B, H, W, Cin] -> patches [B, Ho, Wo, kh*kw*Cin], ordered like a
  reshaped HWIO kernel's rows (``kernel.reshape(-1, Cout)``). Linear in x:
  its transpose (``jax.vjp``) is the adjoint of patch extraction.
  """
  p, s = padding, stride
  xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
  ho = conv_output_size(x.shape[1], kh, s, p)
  wo = conv_output_size(x.shape[2], kw, s, p)
  cols = [xp[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s, :]
          for i in range(kh) for j in range(kw)]
  return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)


def im2col_conv(x: jax.Array, kernel: jax.Array, stride: int,
                padding: int) -> jax.Array:
  """A 2-D convolution as one matrix product over shifted slices.

  x: [B, H, W, Cin]; kernel: [kh, kw, Cin, Cout] (Flax's HWIO). The kh*kw
  strided slices of the zero-padded input are concatenated into patches
  [B, Ho, Wo, kh*kw*Cin] (``im2col_patches``) and multiplied by the reshaped
  kernel. Its gradients (and their gradients, as in gradient matching) are
  matrix products, pads and slices; XLA:CPU runs them at several times the
  speed of its convolution kernels (BUILD_NOTES.md).
  """
  kh, kw, _, cout = kernel.shape
  patches = im2col_patches(x, kh, kw, stride, padding)
  return patches @ kernel.reshape(-1, cout)


class Conv(nn.Module):
  """A square-stride, symmetric-padding 2-D convolution (NHWC).

  The same parameters as ``flax.linen.Conv`` ("kernel" [kh, kw, Cin, Cout],
  "bias" [Cout]) and the same default initializers, so a victim's parameter
  tree and leaks do not depend on ``impl``: "xla" (``lax`` convolution),
  "im2col" (``im2col_conv``; faster on XLA:CPU) or "shape" (im2col when
  the product's rows, batch x output pixels, are fewer than its columns,
  the output channels, i.e. the kernel outweighs the output map; else XLA's).
  """
  features: int
  kernel_size: tuple[int, int]
  strides: int = 1
  padding: int = 0
  use_bias: bool = True
  impl: str = "xla"
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x):
    kh, kw = self.kernel_size
    kernel = self.param("kernel", self.kernel_init,
                        (kh, kw, x.shape[-1], self.features))
    x, kernel = nn.dtypes.promote_dtype(x, kernel)
    impl = self.impl
    if impl == "shape":  # im2col where the kernel outweighs the output map.
      s, p = self.strides, self.padding
      rows = (x.shape[0] * conv_output_size(x.shape[1], kh, s, p)
              * conv_output_size(x.shape[2], kw, s, p))
      impl = "im2col" if rows < self.features else "xla"
    if impl == "im2col":
      y = im2col_conv(x, kernel, self.strides, self.padding)
    elif impl == "xla":
      p = self.padding
      y = jax.lax.conv_general_dilated(
          x, kernel, (self.strides, self.strides), [(p, p), (p, p)],
          dimension_numbers=("NHWC", "HWIO", "NHWC"))
    else:
      raise ValueError(f"unknown conv implementation {self.impl!r}")
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,))
    return y


def torch_init(init_fn, conv_kernels: str = "uniform"):
  """Wraps ``init_fn`` to redraw parameters as PyTorch does.

  Every Dense and Conv kernel and its bias are redrawn from
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (``nn.Linear`` / ``nn.Conv2d``'s
  ``reset_parameters``: kaiming_uniform with a = sqrt(5)); BatchNorm and other
  parameters keep Flax's values (scale 1, offset 0, as in PyTorch). With
  ``conv_kernels="kaiming_fan_out"`` the convolution kernels are instead
  drawn from N(0, 2 / fan_out) (fan_out = kh kw out-channels), as
  torchvision's ResNet and inversefed's ResNet-18 (the victim of Inverting
  Gradients' and GGL's code) do; Dense layers keep PyTorch's default.
  Published gradient-inversion numbers are for PyTorch-initialized victims,
  and the init matters: on a random ConvNet, Inverting Gradients reaches a
  cosine loss of ~2e-4 against ~0.15 under Flax's lecun_normal kernels and
  zero biases; on a width-32 ResNet-18 the fan-out init makes the
  gradient 8-11x larger (against the same defense noise) and its
  sensitivity to a generator's latent 25-50x larger (BUILD_NOTES.md).
  """
  if conv_kernels not in ("uniform", "kaiming_fan_out"):
    raise ValueError(f"unknown conv_kernels {conv_kernels!r}; known: "
                     "uniform, kaiming_fan_out")

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
      if kernel.ndim > 2 and conv_kernels == "kaiming_fan_out":
        fan_out = kernel.size // kernel.shape[-2]  # kh kw out-channels.
        new["kernel"] = (2.0 / fan_out)**0.5 * jax.random.normal(
            kk, kernel.shape, kernel.dtype)
      else:
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
