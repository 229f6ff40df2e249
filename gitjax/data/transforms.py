"""Pure array transforms on image batches ``[N, H, W, C]``.

``resize``, ``to_channels`` and ``center_crop`` return numpy float32.
``normalize`` and ``denormalize`` also accept jax arrays (attacks denormalize
their reconstructions) and keep the array type they are given.
"""

import jax
import numpy as np

from gitjax.errors import InputError

# Per-channel statistics of the usual training sets, for ``normalize``.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ITU-R BT.601 luma weights, as PIL's "L" conversion uses.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def as_size(size) -> tuple[int, int]:
  """``32`` or ``(32, 32)`` -> ``(height, width)``, both >= 1.

  Raises:
    InputError: not an int or a pair, or not positive.
  """
  if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
    pair = (int(size), int(size))
  else:
    try:
      if isinstance(size, (str, bytes)):
        raise TypeError("a string")
      height, width = size
      if any(isinstance(s, (str, bytes, bool)) for s in (height, width)):
        raise TypeError("strings or bools")
      pair = (int(height), int(width))
    except (TypeError, ValueError) as e:
      raise InputError(f"image_size must be an int or (height, width), got "
                       f"{size!r}") from e
  if min(pair) < 1:
    raise InputError(f"image_size must be positive, got {size!r}")
  return pair


def resize(images, size, method: str = "linear") -> np.ndarray:
  """Antialiased resize.

  Args:
    images: ``[N, H, W, C]``.
    size: ``h`` or ``(h, w)``.
    method: a ``jax.image.resize`` method; "linear" (the default) never
      leaves the input's value range.

  Returns:
    float32 ``[N, h, w, C]``.
  """
  images = np.asarray(images, np.float32)
  height, width = as_size(size)
  if images.shape[1:3] == (height, width):
    return images
  shape = (images.shape[0], height, width, images.shape[3])
  out = jax.image.resize(images, shape, method=method, antialias=True)
  return np.asarray(out, np.float32)


def center_crop(images, size=None) -> np.ndarray:
  """Central ``[N, h, w, C]`` window; default the largest central square."""
  images = np.asarray(images)
  height, width = images.shape[1:3]
  if size is None:
    h = w = min(height, width)
  else:
    h, w = as_size(size)
  if h > height or w > width:
    raise ValueError(f"crop {(h, w)} larger than images {(height, width)}")
  top, left = (height - h) // 2, (width - w) // 2
  return images[:, top:top + h, left:left + w]


def to_channels(images, channels: int) -> np.ndarray:
  """Gray ``[N, H, W, 1]`` <-> RGB ``[N, H, W, 3]`` (RGB->gray by BT.601 luma).

  Args:
    images: ``[N, H, W, C]`` with C in {1, 3} (an alpha channel, C = 4, is
      dropped).
    channels: 1 or 3.

  Returns:
    ``[N, H, W, channels]``, same dtype.
  """
  images = np.asarray(images)
  have = images.shape[-1]
  if have == 4:
    images, have = images[..., :3], 3
  if have == channels:
    return images
  if have == 1 and channels == 3:
    return np.repeat(images, 3, axis=-1)
  if have == 3 and channels == 1:
    gray = np.tensordot(images.astype(np.float32), _LUMA, axes=([-1], [0]))
    return gray[..., None].astype(images.dtype)
  raise ValueError(f"cannot convert {have} channels to {channels}")


def _per_channel(values, images, what):
  """``values`` [C] as float32 broadcastable against ``images`` [..., C]."""
  values = np.asarray(values, np.float32).reshape(-1)
  if values.shape[0] not in (1, images.shape[-1]):
    raise ValueError(f"{what} has {values.shape[0]} entries for "
                     f"{images.shape[-1]} channels")
  values = np.broadcast_to(values, (images.shape[-1],))
  # Full rank, so strict jax rank promotion accepts it.
  return values.reshape((1,) * (images.ndim - 1) + (-1,))


def normalize(images, mean, std):
  """``(images - mean) / std`` per channel.

  Args:
    images: numpy or jax ``[..., C]``.
    mean: ``C`` (or 1) per-channel means.
    std: ``C`` (or 1) per-channel standard deviations.

  Returns:
    Same shape and array type as ``images``.
  """
  return ((images - _per_channel(mean, images, "mean"))
          / _per_channel(std, images, "std"))


def denormalize(images, mean, std):
  """Inverse of ``normalize``: ``images * std + mean`` per channel."""
  return (images * _per_channel(std, images, "std")
          + _per_channel(mean, images, "mean"))


def channel_stats(images) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel ``(mean [C], std [C])`` of ``images [N, H, W, C]``."""
  images = np.asarray(images, np.float64)
  axes = tuple(range(images.ndim - 1))
  return (images.mean(axis=axes).astype(np.float32),
          images.std(axis=axes).astype(np.float32))
