"""CIFAR-10/100 batch files: the "python version" and the binary version.

The python batches are pickles. Unpickling data from outside the package can
run arbitrary code, so they are read with ``SafeUnpickler``, which resolves
only the few globals a CIFAR batch needs (numpy array reconstruction and
harmless builtins) and refuses every other one.
"""

import builtins
import codecs
import glob
import io
import os
import pickle

import numpy as np

from gitjax.data import dataset as dataset_lib
from gitjax.errors import InputError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                   "frog", "horse", "ship", "truck")

_SUBDIRS = ("cifar-10-batches-py", "cifar-10-batches-bin", "cifar-100-python",
            "cifar-100-binary")
_PIXELS = 32 * 32 * 3


def _numpy_globals() -> dict:
  """The reconstruction functions numpy's own pickles refer to."""
  reconstruct = np.zeros(1).__reduce_ex__(2)[0]  # multiarray._reconstruct
  frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # numeric._frombuffer
  scalar = np.int64(0).__reduce__()[0]  # multiarray.scalar
  # Keyed by name, since numpy 1 and numpy 2 pickles name other modules.
  allowed = {}
  for core in ("numpy.core", "numpy._core"):
    allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
    allowed[(f"{core}.multiarray", "scalar")] = scalar
    allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
  allowed[("numpy", "ndarray")] = np.ndarray
  allowed[("numpy", "dtype")] = np.dtype
  return allowed


_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "bytes", "bytearray",
             "str", "int", "float", "complex", "bool")
_ALLOWED = {
    **_numpy_globals(),
    **{(m, n): getattr(builtins, n) for m in ("builtins", "__builtin__")
       for n in _BUILTINS},
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str).
    ("_codecs", "encode"): codecs.encode,
}


class RefusedGlobalError(pickle.UnpicklingError):
  """A pickle names a global that ``SafeUnpickler`` does not allow."""


class BadPickleError(InputError, pickle.UnpicklingError):
  """A data file is not a pickle ``SafeUnpickler`` can read; names the file."""


class SafeUnpickler(pickle.Unpickler):
  """An Unpickler that resolves only the globals a CIFAR batch needs."""

  def find_class(self, module, name):
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      raise RefusedGlobalError(
          f"refusing to unpickle global {module}.{name}: only numpy arrays "
          "and plain containers are allowed in data files") from None


def safe_unpickle(data: bytes):
  """Unpickles ``data`` with ``SafeUnpickler`` (Python 2 strings as latin1)."""
  return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()


def _unpickle_file(path: str, what: str) -> dict:
  """The dict pickled in ``path`` (a CIFAR batch or meta file).

  Raises:
    BadPickleError: empty, truncated, corrupt, or names a refused global.
    InputError: not a dict.
  """
  data = dataset_lib.read_bytes(path)
  if not data:
    raise BadPickleError(f"{path}: empty file (0 bytes), expected a {what}")
  try:
    obj = safe_unpickle(data)
  except RefusedGlobalError as e:
    raise BadPickleError(f"{path}: {dataset_lib.describe(e)}") from e
  except Exception as e:  # pylint: disable=broad-except
    # Whatever the unpickler raises on these bytes (UnpicklingError, EOFError,
    # ValueError, TypeError from a refused reconstruction...) is the file's.
    raise BadPickleError(f"{path}: truncated or corrupt pickle, expected a "
                         f"{what} ({type(e).__name__}: "
                         f"{dataset_lib.describe(e)})") from e
  if not isinstance(obj, dict):
    raise InputError(f"{path}: expected a {what} (a dict), got "
                     f"{type(obj).__name__}")
  return obj


def _text_keys(obj: dict) -> dict:
  return {k.decode("latin1") if isinstance(k, bytes) else k: v
          for k, v in obj.items()}


def _names(values) -> tuple[str, ...]:
  return tuple(v.decode("utf-8") if isinstance(v, bytes) else str(v)
               for v in values)


def _read_python_batch(path: str, label_key: str):
  """uint8 ``[N, 32, 32, 3]`` and labels ``[N]`` of one pickled batch."""
  batch = _text_keys(_unpickle_file(path, "CIFAR batch"))
  keys = [label_key] if label_key in batch else ["labels", "fine_labels"]
  key = next((k for k in keys if k in batch), None)
  if "data" not in batch or key is None:
    raise InputError(f"{path}: no 'data' or labels in keys {sorted(batch)}")
  try:
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[key])
  except (ValueError, TypeError) as e:  # Ragged or mixed lists.
    raise InputError(f"{path}: 'data' or {key!r} is not an array "
                     f"({dataset_lib.describe(e)})") from e
  if data.dtype != np.uint8 and data.size and (
      data.dtype.kind not in "iub" or data.min() < 0 or data.max() > 255):
    raise InputError(f"{path}: 'data' must be bytes 0..255, got "
                     f"{data.dtype}")
  if data.ndim != 2 or data.shape[1] != _PIXELS:
    raise InputError(f"{path}: data has shape {data.shape}, expected "
                     f"[N, {_PIXELS}]")
  if labels.shape != (len(data),) or (labels.size and
                                      labels.dtype.kind not in "iub"):
    raise InputError(f"{path}: {key!r} must be {len(data)} integers, got "
                     f"{labels.dtype} {labels.shape}")
  data = data.astype(np.uint8, copy=False)
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW -> HWC
  return images, labels.astype(np.int64)


def _check_binary_size(path: str, label_bytes: int) -> None:
  """A binary batch holds whole records: checked before any is read."""
  record = label_bytes + _PIXELS
  if not os.path.isfile(path):
    raise InputError(f"{path}: not a file")
  size = os.path.getsize(path)
  if size == 0:
    raise InputError(f"{path}: empty file (0 bytes), expected {record}-byte "
                     "CIFAR records")
  if size % record:
    raise InputError(f"{path}: {size} bytes is not a whole number of "
                     f"{record}-byte CIFAR records (truncated?)")


def _read_binary_batch(path: str, label_bytes: int, label_index: int):
  """uint8 ``[N, 32, 32, 3]`` and labels ``[N]`` of one binary batch."""
  record = label_bytes + _PIXELS
  data = np.frombuffer(dataset_lib.read_bytes(path), np.uint8)
  if not data.size or data.size % record:  # Changed since it was checked.
    raise InputError(f"{path}: {data.size} bytes is not a whole number of "
                     f"{record}-byte CIFAR records (truncated?)")
  data = data.reshape(-1, record)
  images = data[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return images, data[:, label_index].astype(np.int64)


def _batch_dir(data_dir: str) -> str:
  """``data_dir``, or the standard archive folder inside it."""
  for sub in _SUBDIRS:
    if os.path.isdir(os.path.join(data_dir, sub)):
      return os.path.join(data_dir, sub)
  return data_dir


def _files(folder: str, split: str) -> tuple[list[str], str]:
  """The batch files of ``split`` and their format: "python" or "binary"."""
  base = "data_batch_" if split == "train" else "test_batch"
  single = "train" if split == "train" else "test"
  patterns = [
      (f"{base}[0-9]" if split == "train" else base, "python"),
      (f"{base}[0-9].bin" if split == "train" else f"{base}.bin", "binary"),
      (single, "python"), (f"{single}.bin", "binary")]
  for pattern, kind in patterns:
    found = sorted(glob.glob(os.path.join(folder, pattern)))
    if found:
      return found, kind
  raise dataset_lib.DataNotFoundError(
      f"{folder}: no CIFAR {split} batches (looked for "
      f"{', '.join(p for p, _ in patterns)})")


def _class_names(folder: str, label_key: str, num_classes: int):
  """Names from the batch folder's meta file, else CIFAR-10's or digits."""
  coarse = label_key.startswith("coarse")
  for meta in ("batches.meta", "meta"):
    path = os.path.join(folder, meta)
    if os.path.exists(path):
      info = _text_keys(_unpickle_file(path, "CIFAR meta file"))
      for key in (("coarse_label_names",) if coarse else
                  ("label_names", "fine_label_names")):
        if key in info and len(info[key]) == num_classes:
          return _names(info[key])
  txt = "coarse_label_names.txt" if coarse else "fine_label_names.txt"
  for meta in ("batches.meta.txt", txt):
    path = os.path.join(folder, meta)
    if os.path.exists(path):
      try:
        text = dataset_lib.read_bytes(path).decode("utf-8")
      except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a UTF-8 text file of class names "
                         f"({dataset_lib.describe(e)})") from e
      names = tuple(line.strip() for line in text.splitlines()
                    if line.strip())
      if len(names) == num_classes:
        return names
  if num_classes == 10:
    return CIFAR10_CLASSES
  return tuple(str(i) for i in range(num_classes))


def load_cifar_batches(data_dir=None, split="test", *, limit=None,
                       image_size=None, center_crop=False,
                       label_key="fine_labels",
                       num_classes=None) -> dataset_lib.Dataset:
  """CIFAR-10 or CIFAR-100 from the python (pickled) or binary batch files.

  Looks in ``data_dir`` or its ``cifar-10-batches-py`` (``-bin``,
  ``cifar-100-python``, ``cifar-100-binary``) sub-folder for, in order:
  ``data_batch_1..5`` / ``test_batch`` (CIFAR-10 python), ``*.bin`` of those
  (CIFAR-10 binary: records of 1 label byte + 3072 pixel bytes), ``train`` /
  ``test`` (CIFAR-100 python), ``train.bin`` / ``test.bin`` (CIFAR-100 binary:
  coarse and fine label bytes + 3072 pixel bytes).

  Args:
    data_dir: the folder.
    split: "train" or "test".
    limit: unused (``load`` applies it).
    image_size: unused (``load`` resizes).
    center_crop: unused.
    label_key: CIFAR-100's "fine_labels" (default) or "coarse_labels".
    num_classes: default 100 for CIFAR-100 fine labels, 20 coarse, else 10.

  Returns:
    ``Dataset`` with images ``[N, 32, 32, 3]``.
  """
  del limit, image_size, center_crop
  if split not in ("train", "test"):
    raise InputError(f"split must be 'train' or 'test', got {split!r}")
  data_dir = dataset_lib.require_path(data_dir)
  if not os.path.isdir(data_dir):
    raise InputError(f"{data_dir}: not a folder; pass the folder holding the "
                     "CIFAR batch files")
  folder = _batch_dir(data_dir)
  paths, kind = _files(folder, split)
  cifar100 = os.path.basename(paths[0]) in ("train", "test", "train.bin",
                                            "test.bin")
  coarse = label_key.startswith("coarse")
  if num_classes is None:
    num_classes = (20 if coarse else 100) if cifar100 else 10
  # The cheap checks first: the meta file and every binary batch's size.
  class_names = _class_names(folder, label_key, num_classes)
  label_bytes = 2 if cifar100 else 1
  if kind == "binary":
    for path in paths:
      _check_binary_size(path, label_bytes)
  parts = []
  for path in paths:
    if kind == "python":
      images, labels = _read_python_batch(path, label_key)
    else:
      images, labels = _read_binary_batch(path, label_bytes, 0 if coarse else
                                          label_bytes - 1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
      raise InputError(f"{path}: labels {labels.min()}..{labels.max()} "
                       f"outside [0, {num_classes})")
    parts.append((images, labels))
  images = np.concatenate([p[0] for p in parts])
  labels = np.concatenate([p[1] for p in parts])
  return dataset_lib.from_arrays(
      images, labels, class_names=class_names,
      name=f"{'cifar100' if cifar100 else 'cifar10'}/{split}")
