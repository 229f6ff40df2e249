"""Image datasets as in-memory numpy ``Dataset``s, and seeded ways to cut them.

``load(name, ...)`` picks a reader from ``LOADERS``, an explicit dict:

========================  ====================================================
name                      source
========================  ====================================================
``embedded`` (default)    crops of scikit-image's CC0 photos; never downloads
``digits``                scikit-learn's 8x8 digits
``idx``                   MNIST-format idx files (``t10k``/``train`` prefix)
``mnist``                 ``idx`` with MNIST class names
``fashion_mnist``         ``idx`` with Fashion-MNIST class names
``cifar_batches``         CIFAR-10/100 python (pickled) or binary batches
``image_folder``          ``<class>/<image>`` in a folder or ``.zip``
``cifar10``               ``cifar10_{split}_*.zip`` image folders
``celeba``                a CelebA zip or folder, fixed 2-class labels
``tfds``                  TensorFlow Datasets (``pip install gitjax[tfds]``)
========================  ====================================================
"""

import inspect

import numpy as np

from gitjax.data import cifar
from gitjax.data import dataset as dataset_lib
from gitjax.data import embedded
from gitjax.data import folder
from gitjax.data import idx
from gitjax.data import tfds_loader
from gitjax.data import transforms
from gitjax.data.cifar import CIFAR10_CLASSES
from gitjax.data.cifar import SafeUnpickler
from gitjax.data.cifar import safe_unpickle
from gitjax.data.dataset import batches
from gitjax.data.dataset import DataNotFoundError
from gitjax.data.dataset import Dataset
from gitjax.data.dataset import filter_classes
from gitjax.data.dataset import from_arrays
from gitjax.data.dataset import sample
from gitjax.data.dataset import sample_indices
from gitjax.data.dataset import split
from gitjax.data.dataset import subset
from gitjax.data.idx import parse_idx
from gitjax.data.idx import read_idx
from gitjax.data.transforms import center_crop
from gitjax.data.transforms import channel_stats
from gitjax.data.transforms import denormalize
from gitjax.data.transforms import normalize
from gitjax.data.transforms import resize
from gitjax.data.transforms import to_channels
from gitjax.errors import InputError

# Every loader is ``fn(data_dir, split, *, limit, image_size, center_crop,
# **its_own_keywords) -> Dataset``; ``load`` finishes what a loader leaves.
LOADERS = {
    "embedded": embedded.load_embedded,
    "digits": embedded.load_digits,
    "idx": idx.load_idx,
    "mnist": idx.load_mnist,
    "fashion_mnist": idx.load_fashion_mnist,
    "cifar_batches": cifar.load_cifar_batches,
    "image_folder": folder.load_image_folder,
    "cifar10": folder.load_cifar10,
    "celeba": folder.load_celeba,
    "tfds": tfds_loader.load_tfds,
}


# Loaders whose ``**kw`` go on to another loader, and the options they set
# themselves, for ``_check_options``. A ``**kw`` loader not listed here takes
# any option.
_FORWARDS_TO = {
    idx.load_mnist: (idx.load_idx, {"class_names", "name"}),
    idx.load_fashion_mnist: (idx.load_idx, {"class_names", "name"}),
    folder.load_cifar10: (folder.load_image_folder, set()),
    folder.load_celeba: (folder.load_image_folder, set()),
}
_LOAD_ARGS = {"data_dir", "split", "limit", "image_size"}  # Set by ``load``.


def _options(loader) -> set[str] | None:
  """The keyword options ``loader`` takes (None: any)."""
  names = set()
  for param in inspect.signature(loader).parameters.values():
    if param.kind == param.VAR_KEYWORD:
      if loader not in _FORWARDS_TO:
        return None
      target, fixed = _FORWARDS_TO[loader]
      forwarded = _options(target)
      if forwarded is None:
        return None
      names |= forwarded - fixed
    elif param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
      names.add(param.name)
  return names - _LOAD_ARGS


def _check_options(name: str, kw: dict) -> None:
  """Every loader option in ``kw`` is one that loader takes."""
  known = _options(LOADERS[name])
  unknown = sorted(set(kw) - known) if known is not None else []
  if unknown:
    raise InputError(f"dataset {name!r} has no option "
                     f"{', '.join(map(repr, unknown))}; its options: "
                     f"{', '.join(sorted(known)) or 'none'}")


def load(name: str = "embedded", *, data_dir=None, split: str = "test",
         image_size=None, channels: int | None = None,
         limit: int | None = None, center_crop: bool | None = None,
         **kw) -> Dataset:
  """Loads a dataset into memory.

  Args:
    name: a key of ``LOADERS``.
    data_dir: where the files are (a folder, or a ``.zip`` for image folders);
      unused by "embedded" and "digits", optional for "tfds".
    split: "test" or "train" (the loaders' docstrings list others).
    image_size: ``s`` or ``(h, w)``: resize (antialiased) to it.
    channels: 1 or 3: convert gray <-> RGB.
    limit: keep the first ``limit`` examples of the loader's fixed order.
    center_crop: crop non-square images to their central square before
      resizing (None: the loader's default, True for "celeba" only).
    **kw: the loader's own options, e.g. ``start``, ``stop``, ``labels``,
      ``label_fn`` for image folders, ``tfds_name`` for "tfds".

  Returns:
    ``Dataset``: images float32 ``[N, H, W, C]`` in [0, 1], labels int32
    ``[N]``.

  Raises:
    InputError: unknown name or option, a bad option value, or a data file
      that cannot be read (truncated, corrupt, of the wrong kind); checked
      before any file is read where possible. The message is one line and
      starts with the file (``<zip>: member <name>`` inside a zip).
    FileNotFoundError: ``data_dir`` or an expected file is missing (a
      ``DataNotFoundError``, also an ``InputError``).
  """
  if name not in LOADERS:
    raise InputError(f"unknown dataset {name!r}; known: {sorted(LOADERS)}")
  _check_options(name, kw)
  if limit is not None and (
      not isinstance(limit, (int, np.integer)) or isinstance(limit, bool)
      or limit < 1):
    raise InputError(f"limit must be a positive integer or None, got "
                     f"{limit!r}")
  if image_size is not None:
    transforms.as_size(image_size)  # Raises InputError when bad.
  if channels not in (None, 1, 3):
    raise InputError(f"channels must be 1, 3 or None, got {channels!r}")
  if center_crop is not None:
    kw["center_crop"] = center_crop
  ds = LOADERS[name](data_dir, split, limit=limit, image_size=image_size, **kw)
  ds = dataset_lib.take(ds, limit)
  images = ds.images
  if center_crop:
    images = transforms.center_crop(images)
  if image_size is not None:
    images = transforms.resize(images, image_size)
  if channels is not None:
    images = transforms.to_channels(images, channels)
  return ds._replace(images=images)


__all__ = [
    "CIFAR10_CLASSES", "DataNotFoundError", "Dataset", "LOADERS",
    "SafeUnpickler", "batches", "center_crop", "channel_stats", "denormalize",
    "filter_classes", "from_arrays", "load", "normalize", "parse_idx",
    "read_idx", "resize", "safe_unpickle", "sample", "sample_indices",
    "split", "subset", "to_channels",
]
