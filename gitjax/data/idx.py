"""MNIST-format idx files (plain or gzipped), parsed with numpy.

An idx file is a 4-byte magic ``0x00 0x00 <dtype code> <ndim>``, then ``ndim``
big-endian uint32 sizes, then the array in C order.
"""

import gzip
import os
import zlib

import numpy as np

from gitjax.data import dataset as dataset_lib
from gitjax.errors import InputError

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
           0x0E: ">f8"}

_GZIP_MAGIC = b"\x1f\x8b"

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _header(data: bytes, path: str, expected_ndim: int | None):
  """``(shape, dtype, header length)`` from the first bytes of an idx file."""
  if len(data) < 4:
    size = "empty file (0 bytes)" if not data else f"{len(data)} bytes"
    raise InputError(f"{path}: {size}, too short for an idx file")
  if data[:2] == _GZIP_MAGIC:
    raise InputError(f"{path}: gzip-compressed data read as a plain idx file; "
                     "name the file .gz or gunzip it")
  zero, code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
  if zero != 0 or code not in _DTYPES:
    raise InputError(f"{path}: bad idx magic number 0x{data[:4].hex()} (not "
                     "an idx file?)")
  if expected_ndim is not None and ndim != expected_ndim:
    raise InputError(f"{path}: idx magic 0x{data[:4].hex()} has {ndim} dims, "
                     f"expected {expected_ndim}")
  header = 4 + 4 * ndim
  if len(data) < header:
    raise InputError(f"{path}: truncated idx header ({len(data)} of {header} "
                     "bytes)")
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
  return shape, np.dtype(_DTYPES[code]), header


def _check_size(path: str, shape, dtype: np.dtype, size: int) -> None:
  """The data after the header is exactly what the header promises."""
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if size != expected:
    problem = "truncated" if size < expected else "trailing bytes"
    raise InputError(f"{path}: header says {shape} ({expected} bytes of data) "
                     f"but the file has {size} ({problem})")


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
    InputError: bad magic number or a size that disagrees with the header.
  """
  shape, dtype, header = _header(data, path, expected_ndim)
  _check_size(path, shape, dtype, len(data) - header)
  array = np.frombuffer(data, dtype, offset=header).reshape(shape)
  return array.astype(dtype.newbyteorder("="))


def read_idx(path: str, expected_ndim: int | None = None) -> np.ndarray:
  """Reads an idx file, gunzipping it when its name ends in ``.gz``.

  The header is checked before the data is read (and, for a plain file,
  against the file's size), so a wrong or truncated file fails at once.

  Raises:
    DataNotFoundError: no file ``path``.
    InputError: not an idx file, not gzip data, or truncated; the message
      starts with ``path``.
  """
  path = os.fspath(path)
  gzipped = path.endswith(".gz")
  try:
    raw = open(path, "rb")  # pylint: disable=consider-using-with
  except FileNotFoundError as e:
    raise dataset_lib.DataNotFoundError(f"{path}: no such file") from e
  except OSError as e:
    raise InputError(f"{path}: cannot read ({dataset_lib.describe(e)})"
                     ) from e
  with raw:
    size = os.fstat(raw.fileno()).st_size
    if gzipped:
      magic = raw.read(2)
      if magic != _GZIP_MAGIC:
        what = ("empty file (0 bytes)" if not size else
                f"starts with 0x{magic.hex()}, not the gzip magic 0x1f8b")
        raise InputError(f"{path}: named .gz but not gzip data: {what}")
      raw.seek(0)
    stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
    try:
      head = stream.read(4)
      if len(head) == 4:
        head += stream.read(4 * head[3])
      shape, dtype, header = _header(head, path, expected_ndim)
      if not gzipped:
        _check_size(path, shape, dtype, size - header)
      body = stream.read()
    except (OSError, EOFError, zlib.error) as e:
      cause = dataset_lib.describe(e)
      problem = (f"truncated or corrupt gzip data (gzip: {cause})" if gzipped
                 else f"cannot read ({cause})")
      raise InputError(f"{path}: {problem}") from e
  _check_size(path, shape, dtype, len(body))
  array = np.frombuffer(body, dtype).reshape(shape)
  return array.astype(dtype.newbyteorder("="))


def _find(data_dir: str, prefix: str, kind: str) -> str:
  """Path of ``{prefix}-{kind}`` (or ``.{kind}``), gzipped or not."""
  names = [f"{prefix}{sep}{kind}{ext}" for ext in (".gz", "")
           for sep in ("-", ".")]
  for name in names:
    path = os.path.join(data_dir, name)
    if os.path.exists(path):
      return path
  raise dataset_lib.DataNotFoundError(
      f"{data_dir}: no idx file {names[0]} (nor {', '.join(names[1:])})")


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
  if prefix is None:
    if split not in _SPLIT_PREFIX:
      raise InputError(f"split must be one of {sorted(_SPLIT_PREFIX)} (or "
                       f"pass prefix=...), got {split!r}")
    prefix = _SPLIT_PREFIX[split]
  data_dir = dataset_lib.require_path(data_dir)
  if not os.path.isdir(data_dir):
    raise InputError(f"{data_dir}: not a folder; pass the folder holding the "
                     "idx files")
  # Both found before either is read; the small labels file first.
  image_path = _find(data_dir, prefix, "images-idx3-ubyte")
  label_path = _find(data_dir, prefix, "labels-idx1-ubyte")
  labels = read_idx(label_path, 1)
  images = read_idx(image_path, 3)
  if images.shape[0] != labels.shape[0]:
    raise InputError(f"{image_path}: {images.shape[0]} images but "
                     f"{label_path} has {labels.shape[0]} labels")
  n_classes = num_classes or (
      len(class_names) if class_names is not None else None)
  if n_classes and labels.size and (
      labels.min() < 0 or labels.max() >= n_classes):
    raise InputError(f"{label_path}: labels {labels.min()}..{labels.max()} "
                     f"outside [0, {n_classes})")
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
