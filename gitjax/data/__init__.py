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
    ValueError: unknown name or bad option.
    FileNotFoundError: ``data_dir`` or an expected file is missing.
  """
  if name not in LOADERS:
    raise ValueError(f"unknown dataset {name!r}; known: {sorted(LOADERS)}")
  if limit is not None and limit < 0:
    raise ValueError(f"limit must be >= 0, got {limit}")
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
    "CIFAR10_CLASSES", "Dataset", "LOADERS", "SafeUnpickler", "batches",
    "center_crop", "channel_stats", "denormalize", "filter_classes",
    "from_arrays", "load", "normalize", "parse_idx", "read_idx", "resize",
    "safe_unpickle", "sample", "sample_indices", "split", "subset",
    "to_channels",
]
