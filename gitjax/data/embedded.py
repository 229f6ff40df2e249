"""Data that ships with installed packages: never downloads anything.

``embedded``: crops of the CC0 photographs bundled with scikit-image, one class
per photo. ``digits``: scikit-learn's 8x8 handwritten digits.
"""

import functools

import numpy as np
from PIL import Image

from gitjax.data import dataset as dataset_lib
from gitjax.data import transforms

# Photos bundled inside scikit-image's wheel (no pooch download), in label
# order. Any that an installed version lacks are skipped.
PHOTOS = ("astronaut", "camera", "chelsea", "clock", "coffee", "coins",
          "hubble_deep_field", "immunohistochemistry", "retina", "rocket")

# Short side of the downscaled photo, as a multiple of the crop size: at 1.125
# a crop shows nearly the whole photo, at 2 about a quarter of it.
_SCALES = (1.125, 1.375, 1.625, 2.0)
_GRID = 3  # _GRID x _GRID crop positions per scale.


def _photo(name: str) -> np.ndarray | None:
  """uint8 ``[H, W, 3]`` photo, or None when not available offline."""
  import skimage.data  # pylint: disable=g-import-not-at-top  # Slow import.
  try:
    image = np.asarray(getattr(skimage.data, name)())
  except (AttributeError, ImportError, OSError, ValueError):
    return None
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def _crops(photo: np.ndarray, size: int) -> list[np.ndarray]:
  """``len(_SCALES) * _GRID**2`` crops ``[size, size, 3]`` of one photo."""
  height, width = photo.shape[:2]
  pil = Image.fromarray(photo)
  out = []
  for scale in _SCALES:
    short = max(round(size * scale), size + 2)
    h = max(short, round(height * short / min(height, width)))
    w = max(short, round(width * short / min(height, width)))
    small = np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR))
    for top in np.linspace(0, h - size, _GRID).round().astype(int):
      for left in np.linspace(0, w - size, _GRID).round().astype(int):
        out.append(small[top:top + size, left:left + size])
  return out


@functools.lru_cache(maxsize=4)
def _embedded_arrays(size: int):
  """All crops, photo by photo.

  Returns:
    uint8 images ``[N, size, size, 3]``, int32 labels ``[N]``, int32 crop
    numbers within their photo ``[N]``, and the photo names.
  """
  images, labels, crop, names = [], [], [], []
  for name in PHOTOS:
    photo = _photo(name)
    if photo is None:
      continue
    crops = _crops(photo, size)
    images += crops
    labels += [len(names)] * len(crops)
    crop += range(len(crops))
    names.append(name)
  if len(names) < 2:
    raise RuntimeError("scikit-image ships fewer than 2 of the photos "
                       f"{PHOTOS}; reinstall scikit-image")
  arrays = np.stack(images), np.asarray(labels, np.int32), np.asarray(
      crop, np.int32)
  for a in arrays:
    a.setflags(write=False)  # Cached: callers get copies or views.
  return (*arrays, tuple(names))


def load_embedded(data_dir=None, split="test", *, limit=None, image_size=None,
                  center_crop=False) -> dataset_lib.Dataset:
  """Crops of scikit-image's sample photos; label = photo.

  Each photo gives 36 crops (4 scales x 3 x 3 positions), so about 10 classes
  and 360 images. Crops alternate between the splits: "train" has the even
  crops of every photo, "test" the odd ones, "all" both. The order is
  round-robin over photos (crop k of every photo, then crop k + 1), so any
  prefix (``limit``) is balanced.

  Args:
    data_dir: ignored (the photos ship with scikit-image).
    split: "train", "test" or "all".
    limit: unused here (``load`` applies it).
    image_size: crop size ``s`` (default 32); crops are cut at this size, not
      resized, so content stays recognisable at any size.
    center_crop: unused (crops are square).

  Returns:
    ``Dataset`` with images ``[N, s, s, 3]``.
  """
  del data_dir, limit, center_crop
  dataset_lib.halves(0, split)  # A bad split fails before the photos load.
  size = 32 if image_size is None else max(transforms.as_size(image_size))
  images, labels, crop, names = _embedded_arrays(size)
  keep = np.flatnonzero(np.isin(crop, dataset_lib.halves(crop.max() + 1,
                                                         split)))
  keep = keep[np.lexsort((labels[keep], crop[keep]))]  # Round-robin.
  return dataset_lib.from_arrays(images[keep], labels[keep], class_names=names,
                                 name=f"embedded/{split}")


@functools.lru_cache(maxsize=1)
def _digits_arrays():
  import sklearn.datasets  # pylint: disable=g-import-not-at-top  # Slow import.
  bunch = sklearn.datasets.load_digits()
  images = (bunch.images / 16.0).astype(np.float32)  # [1797, 8, 8] in [0, 1]
  return images, bunch.target.astype(np.int32)


def load_digits(data_dir=None, split="test", *, limit=None, image_size=None,
                center_crop=False) -> dataset_lib.Dataset:
  """scikit-learn's 1,797 handwritten digits, ``[N, 8, 8, 1]``, 10 classes.

  "train" holds the even-numbered examples, "test" the odd ones, "all" both.
  ``load`` resizes them when ``image_size`` is given.
  """
  del data_dir, limit, image_size, center_crop
  dataset_lib.halves(0, split)  # A bad split fails before the data loads.
  images, labels = _digits_arrays()
  keep = dataset_lib.halves(len(labels), split)
  return dataset_lib.from_arrays(images[keep], labels[keep], num_classes=10,
                                 name=f"digits/{split}")
