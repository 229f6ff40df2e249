"""Image priors trained by gitjax: a WGAN-GP DCGAN and a style-based generator.

No pretrained weights can be downloaded, so the generative attacks (GGL,
GI-SMN) use generators that ``gitjax.train_prior`` trains on public data. A
generator is a ``Generator`` NamedTuple of pure functions (like ``Victim``):

* ``dcgan``: GGL's CelebA generator. Linear(latent -> 4*4*C) + BN + ReLU, then
  ConvTranspose(k2, s2) + BN + ReLU blocks halving the channels, a last
  ConvTranspose to RGB and tanh. ``width`` is C (GGL: 512).
* ``style``: a StyleGAN2-like generator at small scale. A mapping network
  z -> w, a learned 4x4 constant, modulated 3x3 convolutions with weight
  demodulation, one noise input per convolution (scaled by a learned
  strength) and skip toRGB outputs. Every layer takes its own w (W+), which is
  what GI-SMN optimizes.

Images come out NHWC in [-1, 1]; ``to_victim_space`` maps them to a victim's
normalized input space. Critics (``make_critic``) are plain strided CNNs
without normalization, as the WGAN gradient penalty requires.
"""

import math
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Variables = dict


class Generator(NamedTuple):
  """A generator as pure functions.

  Attributes:
    name: "dcgan" or "style".
    config: the keyword arguments that built it (JSON-able).
    latent_dim: size of z.
    image_shape: (H, W, C) of one image.
    init: ``key -> variables``.
    apply: ``(variables, z [B, latent], train=False, noise=None) ->
      (images [B, H, W, C] in [-1, 1], updated state)``; the updated state is
      the new BatchNorm statistics (train mode) or ``{}``.
    num_ws: number of per-layer styles (W+ rows); 0 for dcgan.
    w_dim: style size; 0 for dcgan.
    mapping: style only, ``(variables, z [B, latent]) -> w [B, w_dim]``.
    synthesis: style only, ``(variables, ws [B, num_ws, w_dim], noise) ->
      images``; ``noise`` is a list of [B, h, w, 1] maps or None (zeros).
    noise_shapes: style only, the [h, w, 1] shape of each noise input.
  """
  name: str
  config: dict
  latent_dim: int
  image_shape: tuple
  init: Callable[..., Variables]
  apply: Callable[..., Any]
  num_ws: int = 0
  w_dim: int = 0
  mapping: Callable[..., jax.Array] | None = None
  synthesis: Callable[..., jax.Array] | None = None
  noise_shapes: tuple = ()

  def __hash__(self):  # A static jit argument, like Victim.
    return hash((self.name, tuple(sorted(self.config.items())),
                 self.init, self.apply))


def _num_upsamplings(image_size: int) -> int:
  n = int(round(math.log2(image_size / 4)))
  if image_size < 8 or 4 * 2**n != image_size:
    raise ValueError(
        f"generator image_size must be 4 * 2**k with k >= 1 (8, 16, 32, 64, "
        f"...); got {image_size}")
  return n


# ---------------------------------------------------------------- DCGAN ----


class DCGAN(nn.Module):
  """GGL's WGAN-GP generator for 32x32 CelebA, at any 4 * 2**k size."""
  width: int = 512
  image_size: int = 32
  channels: int = 3

  @nn.compact
  def __call__(self, z, train=False):  # z: [B, latent]
    n_up = _num_upsamplings(self.image_size)
    bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)
    x = nn.Dense(4 * 4 * self.width, name="fc")(z)
    x = nn.relu(bn()(x)).reshape(z.shape[0], 4, 4, self.width)
    c = self.width
    for _ in range(n_up - 1):
      c = max(c // 2, 1)
      x = nn.ConvTranspose(c, (2, 2), (2, 2), padding="VALID")(x)
      x = nn.relu(bn()(x))
    x = nn.ConvTranspose(self.channels, (2, 2), (2, 2), padding="VALID",
                         name="to_rgb")(x)
    return jnp.tanh(x)  # [B, H, W, C]


def make_dcgan(latent_dim=128, width=512, image_size=32, channels=3):
  module = DCGAN(width, image_size, channels)
  config = dict(latent_dim=latent_dim, width=width, image_size=image_size,
                channels=channels)

  def init(key):
    return dict(module.init(key, jnp.zeros((2, latent_dim)), train=False))

  def apply(variables, z, train=False, noise=None):
    del noise
    if train:
      x, upd = module.apply(variables, z, train=True, mutable=["batch_stats"])
      return x, dict(upd)
    return module.apply(variables, z, train=False), {}

  return Generator("dcgan", config, latent_dim,
                   (image_size, image_size, channels), init, apply)


# ---------------------------------------------------------- style-based ----


def pixel_norm(x, eps=1e-8):
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), -1, keepdims=True) + eps)


class Mapping(nn.Module):
  """z -> w: pixel norm and an MLP with leaky ReLUs."""
  w_dim: int
  layers: int

  @nn.compact
  def __call__(self, z):
    x = pixel_norm(z)
    for i in range(self.layers):
      x = nn.leaky_relu(nn.Dense(self.w_dim, name=f"fc{i}")(x), 0.2)
    return x


class ModulatedConv(nn.Module):
  """StyleGAN2 modulated convolution with optional demodulation.

  Equivalent to convolving each example with weight * style scaled so each
  output channel has unit expected norm; computed as (x * s) conv w * d,
  which needs no per-example kernels.
  """
  features: int
  kernel: int = 3
  demodulate: bool = True

  @nn.compact
  def __call__(self, x, w):  # x: [B, H, W, Cin]; w: [B, w_dim]
    cin = x.shape[-1]
    s = nn.Dense(cin, bias_init=nn.initializers.ones, name="affine")(w)
    weight = self.param(
        "kernel", nn.initializers.normal(1.0),
        (self.kernel, self.kernel, cin, self.features))
    weight = weight / math.sqrt(self.kernel * self.kernel * cin)
    y = jax.lax.conv_general_dilated(
        x * s[:, None, None, :], weight, (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.demodulate:
      wsq = jnp.sum(jnp.square(weight), axis=(0, 1))  # [Cin, Cout]
      d = jax.lax.rsqrt(jnp.square(s) @ wsq + 1e-8)  # [B, Cout]
      y = y * d[:, None, None, :]
    return y


class StyleLayer(nn.Module):
  """Modulated conv + scaled noise + bias + leaky ReLU."""
  features: int

  @nn.compact
  def __call__(self, x, w, noise):
    x = ModulatedConv(self.features, name="conv")(x, w)
    strength = self.param("noise_strength", nn.initializers.zeros, ())
    x = x + strength * noise
    x = x + self.param("bias", nn.initializers.zeros, (self.features,))
    return nn.leaky_relu(x, 0.2) * math.sqrt(2.0)


class Synthesis(nn.Module):
  """Constant 4x4 input, 2 style layers per resolution, skip toRGB."""
  width: int
  image_size: int
  channels: int = 3

  @nn.compact
  def __call__(self, ws, noise):  # ws: [B, num_ws, w_dim]
    n_up = _num_upsamplings(self.image_size)
    b = ws.shape[0]
    const = self.param("const", nn.initializers.normal(1.0),
                       (4, 4, self.width))
    x = jnp.broadcast_to(const, (b, 4, 4, self.width))
    wi, ni = 0, 0
    x = StyleLayer(self.width, name="l4")(x, ws[:, wi], noise[ni])
    wi, ni = wi + 1, ni + 1
    rgb = ModulatedConv(self.channels, 1, False, name="rgb4")(x, ws[:, wi])
    wi += 1
    for k in range(n_up):
      size = 8 * 2**k
      x = jax.image.resize(x, (b, size, size, x.shape[-1]), "bilinear")
      for j in range(2):
        x = StyleLayer(self.width, name=f"l{size}_{j}")(x, ws[:, wi],
                                                        noise[ni])
        wi, ni = wi + 1, ni + 1
      rgb = jax.image.resize(rgb, (b, size, size, self.channels), "bilinear")
      rgb = rgb + ModulatedConv(self.channels, 1, False,
                                name=f"rgb{size}")(x, ws[:, wi])
      wi += 1
    return jnp.tanh(rgb)


def _style_layout(image_size):
  n_up = _num_upsamplings(image_size)
  num_ws = 2 + 3 * n_up
  noise_shapes = [(4, 4, 1)] + [
      (8 * 2**k, 8 * 2**k, 1) for k in range(n_up) for _ in range(2)]
  return num_ws, tuple(noise_shapes)


def make_style(latent_dim=64, w_dim=128, width=128, mapping_layers=4,
               image_size=32, channels=3):
  """The style-based generator; see the module docstring."""
  mapping_mod = Mapping(w_dim, mapping_layers)
  synth_mod = Synthesis(width, image_size, channels)
  num_ws, noise_shapes = _style_layout(image_size)
  config = dict(latent_dim=latent_dim, w_dim=w_dim, width=width,
                mapping_layers=mapping_layers, image_size=image_size,
                channels=channels)

  def zero_noise(b):
    return [jnp.zeros((b,) + s) for s in noise_shapes]

  def init(key):
    k1, k2 = jax.random.split(key)
    m = mapping_mod.init(k1, jnp.zeros((2, latent_dim)))
    s = synth_mod.init(k2, jnp.zeros((2, num_ws, w_dim)), zero_noise(2))
    return {"params": {"mapping": m["params"], "synthesis": s["params"]}}

  def mapping(variables, z):
    return mapping_mod.apply({"params": variables["params"]["mapping"]}, z)

  def synthesis(variables, ws, noise=None):
    if noise is None:
      noise = zero_noise(ws.shape[0])
    if len(noise) != len(noise_shapes):
      raise ValueError(f"style generator takes {len(noise_shapes)} noise "
                       f"maps; got {len(noise)}")
    return synth_mod.apply({"params": variables["params"]["synthesis"]}, ws,
                           list(noise))

  def apply(variables, z, train=False, noise=None):
    del train
    w = mapping(variables, z)
    ws = jnp.broadcast_to(w[:, None], (w.shape[0], num_ws, w_dim))
    return synthesis(variables, ws, noise), {}

  return Generator("style", config, latent_dim,
                   (image_size, image_size, channels), init, apply,
                   num_ws=num_ws, w_dim=w_dim, mapping=mapping,
                   synthesis=synthesis, noise_shapes=noise_shapes)


def sample_noise(gen: Generator, key, batch: int) -> list:
  """Fresh N(0, 1) noise maps for a style generator's noise inputs."""
  keys = jax.random.split(key, max(len(gen.noise_shapes), 1))
  return [jax.random.normal(k, (batch,) + s)
          for k, s in zip(keys, gen.noise_shapes)]


def w_average(gen: Generator, variables, key, n: int = 2048) -> jax.Array:
  """Mean of mapping(z) over n draws: the truncation centre [w_dim]."""
  if gen.mapping is None:
    raise ValueError(f"generator {gen.name!r} has no mapping network")
  z = jax.random.normal(key, (n, gen.latent_dim))
  return jnp.mean(gen.mapping(variables, z), axis=0)


# ---------------------------------------------------------------- critic ----


class Critic(nn.Module):
  """WGAN critic: 3x3 convs, leaky ReLU and 2x2 average pooling.

  No normalization, as the per-example gradient penalty requires. Pooling
  instead of strided convolutions keeps the penalty's second-order gradient
  cheap on CPU (XLA's transposed strided convolutions are slow there).
  """
  width: int = 512
  image_size: int = 32

  @nn.compact
  def __call__(self, x):  # x: [B, H, W, C] in [-1, 1]
    n_down = _num_upsamplings(self.image_size)
    c = max(self.width // 2**(n_down - 1), 1)
    for i in range(n_down):
      x = nn.leaky_relu(nn.Conv(c, (3, 3), padding=1, name=f"conv{i}")(x),
                        0.2)
      x = nn.avg_pool(x, (2, 2), (2, 2))
      c = min(c * 2, self.width)
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(1, name="out")(x)[:, 0]  # [B]


class CriticFns(NamedTuple):
  init: Callable[..., Variables]
  apply: Callable[..., jax.Array]  # (variables, x [B, H, W, C]) -> [B]


def make_critic(width=512, image_size=32, channels=3) -> CriticFns:
  module = Critic(width, image_size)

  def init(key):
    x = jnp.zeros((2, image_size, image_size, channels))
    return dict(module.init(key, x))

  return CriticFns(init, module.apply)


GENERATORS = {"dcgan": make_dcgan, "style": make_style}


def make_generator(name: str, **kwargs) -> Generator:
  """Builds a registered generator; kwargs are its config fields."""
  if name not in GENERATORS:
    raise ValueError(
        f"unknown generator {name!r}; known: {sorted(GENERATORS)}")
  try:
    return GENERATORS[name](**kwargs)
  except TypeError as e:
    raise ValueError(f"bad config for generator {name!r}: {e}") from None


def to_unit(images: jax.Array) -> jax.Array:
  """[-1, 1] generator output -> [0, 1] pixels."""
  return (images + 1.0) / 2.0


def to_victim_space(images: jax.Array, mean: Sequence[float],
                    std: Sequence[float]) -> jax.Array:
  """[-1, 1] generator output -> a victim's normalized input space."""
  return (to_unit(images) - jnp.asarray(mean)) / jnp.asarray(std)
