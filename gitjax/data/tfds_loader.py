"""TensorFlow Datasets as a ``Dataset`` (``pip install gitjax[tfds]``).

TFDS is imported only inside ``load_tfds``, so the rest of gitjax never needs
TensorFlow.
"""

import numpy as np

from gitjax.data import dataset as dataset_lib
from gitjax.errors import InputError


def _import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("the 'tfds' dataset needs TensorFlow Datasets: "
                      "pip install gitjax[tfds]") from e
  return tfds


def load_tfds(data_dir=None, split="test", *, limit=None, image_size=None,
              center_crop=False, tfds_name="mnist", image_key="image",
              label_key="label", download=True,
              batch_size=1024) -> dataset_lib.Dataset:
  """A TFDS split read fully into memory.

  Args:
    data_dir: TFDS data directory (default: TFDS's own, ~/tensorflow_datasets).
    split: any TFDS split string, e.g. "test" or "train[:1%]".
    limit: read only the first ``limit`` examples.
    image_size: unused (``load`` resizes).
    center_crop: unused (``load`` crops).
    tfds_name: the TFDS dataset, e.g. "mnist", "cifar10", "cifar100".
    image_key: feature holding the uint8 ``[H, W, C]`` image.
    label_key: feature holding the ClassLabel.
    download: let TFDS download and prepare the dataset if missing.
    batch_size: examples per tf.data batch while reading.

  Returns:
    ``Dataset`` with images ``[N, H, W, C]``.
  """
  del image_size, center_crop
  tfds = _import_tfds()
  ds, info = tfds.load(tfds_name, split=split, data_dir=data_dir,
                       download=download, with_info=True)
  if limit is not None:
    ds = ds.take(limit)
  # Iterating in batches: batch_size=-1 in tfds.load aborts on some TF builds.
  parts = list(tfds.as_numpy(ds.batch(batch_size)))
  if not parts:
    raise InputError(f"TFDS {tfds_name}[{split}] is empty")
  images = np.concatenate([p[image_key] for p in parts])
  labels = np.concatenate([p[label_key] for p in parts])
  feature = info.features[label_key]
  names = getattr(feature, "names", None)
  return dataset_lib.from_arrays(
      images, labels, class_names=names,
      num_classes=getattr(feature, "num_classes", None),
      name=f"{tfds_name}/{split}")
