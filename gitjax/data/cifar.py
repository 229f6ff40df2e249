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


class SafeUnpickler(pickle.Unpickler):
  """An Unpickler that resolves only the globals a CIFAR batch needs."""

  def find_class(self, module, name):
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(
          f"refusing to unpickle global {module}.{name}: only numpy arrays "
          "and plain containers are allowed in data files") from None


def safe_unpickle(data: bytes):
  """Unpickles ``data`` with ``SafeUnpickler`` (Python 2 strings as latin1)."""
  return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()


def _text_keys(obj: dict) -> dict:
  return {k.decode("latin1") if isinstance(k, bytes) else k: v
          for k, v in obj.items()}


def _names(values) -> tuple[str, ...]:
  return tuple(v.decode("utf-8") if isinstance(v, bytes) else str(v)
               for v in values)


def _read_python_batch(path: str, label_key: str):
  """uint8 ``[N, 32, 32, 3]`` and labels ``[N]`` of one pickled batch."""
  with open(path, "rb") as f:
    batch = safe_unpickle(f.read())
  if not isinstance(batch, dict):
    raise ValueError(f"{path}: expected a dict, got {type(batch).__name__}")
  batch = _text_keys(batch)
  keys = [label_key] if label_key in batch else ["labels", "fine_labels"]
  key = next((k for k in keys if k in batch), None)
  if "data" not in batch or key is None:
    raise ValueError(f"{path}: no 'data' or labels in keys {sorted(batch)}")
  data = np.asarray(batch["data"], np.uint8)
  if data.ndim != 2 or data.shape[1] != _PIXELS:
    raise ValueError(f"{path}: data has shape {data.shape}, expected "
                     f"[N, {_PIXELS}]")
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW -> HWC
  return images, np.asarray(batch[key], np.int64)


def _read_binary_batch(path: str, label_bytes: int, label_index: int):
  """uint8 ``[N, 32, 32, 3]`` and labels ``[N]`` of one binary batch."""
  record = label_bytes + _PIXELS
  data = np.fromfile(path, np.uint8)
  if data.size == 0 or data.size % record:
    raise ValueError(f"{path}: {data.size} bytes is not a whole number of "
                     f"{record}-byte CIFAR records")
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
  raise FileNotFoundError(f"no CIFAR {split} batches in {folder} (looked for "
                          f"{', '.join(p for p, _ in patterns)})")


def _class_names(folder: str, label_key: str, num_classes: int):
  """Names from the batch folder's meta file, else CIFAR-10's or digits."""
  coarse = label_key.startswith("coarse")
  for meta in ("batches.meta", "meta"):
    path = os.path.join(folder, meta)
    if os.path.exists(path):
      with open(path, "rb") as f:
        info = _text_keys(safe_unpickle(f.read()))
      for key in (("coarse_label_names",) if coarse else
                  ("label_names", "fine_label_names")):
        if key in info and len(info[key]) == num_classes:
          return _names(info[key])
  txt = "coarse_label_names.txt" if coarse else "fine_label_names.txt"
  for meta in ("batches.meta.txt", txt):
    path = os.path.join(folder, meta)
    if os.path.exists(path):
      with open(path) as f:
        names = tuple(line.strip() for line in f if line.strip())
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
    raise ValueError(f"split must be 'train' or 'test', got {split!r}")
  folder = _batch_dir(dataset_lib.require_path(data_dir))
  paths, kind = _files(folder, split)
  cifar100 = os.path.basename(paths[0]) in ("train", "test", "train.bin",
                                            "test.bin")
  coarse = label_key.startswith("coarse")
  if kind == "python":
    parts = [_read_python_batch(p, label_key) for p in paths]
  else:
    label_bytes = 2 if cifar100 else 1
    parts = [_read_binary_batch(p, label_bytes, 0 if coarse else
                                label_bytes - 1) for p in paths]
  images = np.concatenate([p[0] for p in parts])
  labels = np.concatenate([p[1] for p in parts])
  if num_classes is None:
    num_classes = (20 if coarse else 100) if cifar100 else 10
  return dataset_lib.from_arrays(
      images, labels, class_names=_class_names(folder, label_key, num_classes),
      name=f"{'cifar100' if cifar100 else 'cifar10'}/{split}")
