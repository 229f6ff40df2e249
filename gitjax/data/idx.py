"""MNIST-format idx files (plain or gzipped), parsed with numpy.

An idx file is a 4-byte magic ``0x00 0x00 <dtype code> <ndim>``, then ``ndim``
big-endian uint32 sizes, then the array in C order.
"""

import gzip
import os

import numpy as np

from gitjax.data import dataset as dataset_lib

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
           0x0E: ">f8"}

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def parse_idx(data: bytes, path: str = "<bytes>",
              expected_ndim: int | None = None) -> np.ndarray:
  """Decodes the bytes of one idx file.

  Args:
    data: the file's (decompressed) bytes.
    path: for error messages.
    expected_ndim: when given, the magic's ndim must equal it (3 for images,
      1 for labels).

  Returns:
    The array, native byte order, of the shape the header gives.

  Raises:
    ValueError: bad magic number or a size that disagrees with the header.
  """
  if len(data) < 4:
    raise ValueError(f"{path}: {len(data)} bytes, too short for an idx file")
  zero, code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
  if zero != 0 or code not in _DTYPES:
    raise ValueError(f"{path}: bad idx magic number 0x{data[:4].hex()}")
  if expected_ndim is not None and ndim != expected_ndim:
    raise ValueError(f"{path}: idx magic 0x{data[:4].hex()} has {ndim} dims, "
                     f"expected {expected_ndim}")
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(f"{path}: truncated idx header")
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
  dtype = np.dtype(_DTYPES[code])
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(data) - header != expected:
    raise ValueError(f"{path}: header says {shape} ({expected} bytes of data) "
                     f"but the file has {len(data) - header}")
  array = np.frombuffer(data, dtype, offset=header).reshape(shape)
  return array.astype(dtype.newbyteorder("="))


def read_idx(path: str, expected_ndim: int | None = None) -> np.ndarray:
  """Reads an idx file, gunzipping it when its name ends in ``.gz``."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    return parse_idx(f.read(), path, expected_ndim)


def _find(data_dir: str, prefix: str, kind: str) -> str:
  """Path of ``{prefix}-{kind}`` (or ``.{kind}``), gzipped or not."""
  names = [f"{prefix}{sep}{kind}{ext}" for ext in (".gz", "")
           for sep in ("-", ".")]
  for name in names:
    path = os.path.join(data_dir, name)
    if os.path.exists(path):
      return path
  raise FileNotFoundError(f"idx file not found: "
                          f"{os.path.join(data_dir, names[0])} (nor "
                          f"{', '.join(names[1:])})")


def load_idx(data_dir=None, split="test", *, limit=None, image_size=None,
             center_crop=False, prefix=None, class_names=None,
             num_classes=None, name="idx") -> dataset_lib.Dataset:
  """Images and labels from a pair of idx files.

  Reads ``{prefix}-images-idx3-ubyte[.gz]`` and
  ``{prefix}-labels-idx1-ubyte[.gz]`` in ``data_dir``.

  Args:
    data_dir: folder holding the files.
    split: "test" (prefix ``t10k``) or "train" (prefix ``train``).
    limit: unused (``load`` applies it).
    image_size: unused (``load`` resizes).
    center_crop: unused.
    prefix: overrides the file prefix chosen by ``split``.
    class_names: names indexed by label.
    num_classes: default ``len(class_names)`` or ``max(label) + 1``.
    name: dataset name prefix.

  Returns:
    ``Dataset`` with images ``[N, H, W, 1]``.
  """
  del limit, image_size, center_crop
  data_dir = dataset_lib.require_path(data_dir)
  if prefix is None:
    if split not in _SPLIT_PREFIX:
      raise ValueError(f"split must be one of {sorted(_SPLIT_PREFIX)} (or "
                       f"pass prefix=...), got {split!r}")
    prefix = _SPLIT_PREFIX[split]
  images = read_idx(_find(data_dir, prefix, "images-idx3-ubyte"), 3)
  labels = read_idx(_find(data_dir, prefix, "labels-idx1-ubyte"), 1)
  if images.shape[0] != labels.shape[0]:
    raise ValueError(f"{data_dir}: {images.shape[0]} images but "
                     f"{labels.shape[0]} labels for prefix {prefix!r}")
  return dataset_lib.from_arrays(
      images, labels, class_names=class_names,
      num_classes=num_classes, name=f"{name}/{split}")


def load_mnist(data_dir=None, split="test", **kw) -> dataset_lib.Dataset:
  """MNIST from idx files: ``[N, 28, 28, 1]``, classes "0".."9"."""
  return load_idx(data_dir, split, class_names=MNIST_CLASSES, name="mnist",
                  **kw)


def load_fashion_mnist(data_dir=None, split="test",
                       **kw) -> dataset_lib.Dataset:
  """Fashion-MNIST from idx files: ``[N, 28, 28, 1]``, 10 clothing classes."""
  return load_idx(data_dir, split, class_names=FASHION_MNIST_CLASSES,
                  name="fashion_mnist", **kw)
