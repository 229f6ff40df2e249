"""The in-memory ``Dataset`` and deterministic, seeded ways to cut it up.

Every function here is pure: it returns new arrays and never mutates its input.
Randomness comes only from ``np.random.default_rng(seed)``, so the same seed
gives the same indices on every machine.
"""

import os
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from gitjax.errors import InputError


class DataNotFoundError(FileNotFoundError, InputError):
  """A data path, or a file expected in it, is missing (or holds no data).

  Both a ``FileNotFoundError``, as these errors always were, and an
  ``InputError``, so callers can catch every bad-data error as one type.
  """


def one_line(text) -> str:
  """``text`` with every run of whitespace (newlines too) as one space."""
  return " ".join(str(text).split())


def describe(error: BaseException) -> str:
  """An exception's message on one line (its type name if it has none)."""
  if isinstance(error, OSError) and error.strerror:
    return one_line(error.strerror)  # Without the "[Errno n]" and the path.
  return one_line(error) or type(error).__name__


def read_bytes(path: str) -> bytes:
  """The bytes of the file ``path``; errors name it."""
  try:
    with open(path, "rb") as f:
      return f.read()
  except FileNotFoundError as e:
    what = "broken symbolic link" if os.path.islink(path) else "no such file"
    raise DataNotFoundError(f"{path}: {what}") from e
  except OSError as e:  # A folder, no permission, an I/O error.
    raise InputError(f"{path}: cannot read ({describe(e)})") from e


class Dataset(NamedTuple):
  """A labelled image set held in memory.

  Attributes:
    images: float32 ``[N, H, W, C]`` with values in [0, 1].
    labels: int32 ``[N]`` in ``[0, num_classes)``.
    num_classes: number of classes of the task (may exceed the labels present).
    class_names: ``num_classes`` names, indexed by label.
    name: where the data came from, e.g. ``"cifar10/test"``.
  """
  images: np.ndarray
  labels: np.ndarray
  num_classes: int
  class_names: tuple[str, ...]
  name: str


def from_arrays(images, labels, *, class_names=None, num_classes=None,
                name="arrays") -> Dataset:
  """Builds a validated ``Dataset`` from raw arrays.

  Args:
    images: ``[N, H, W, C]`` or ``[N, H, W]``; uint8 (scaled by 1/255) or float
      already in [0, 1].
    labels: integer ``[N]``.
    class_names: names indexed by label; default ``"0"``, ``"1"``, ...
    num_classes: default ``len(class_names)``, else ``max(labels) + 1``.
    name: the dataset's name.

  Returns:
    A ``Dataset`` with float32 images ``[N, H, W, C]`` and int32 labels.
  """
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]  # [N, H, W] -> [N, H, W, 1]
  if images.ndim != 4:
    raise InputError(f"{name}: images must be [N, H, W, C], got "
                     f"{images.shape}")
  if images.dtype == np.uint8:
    images = images.astype(np.float32) / np.float32(255)
  else:
    images = images.astype(np.float32)
  labels = np.asarray(labels).astype(np.int32).reshape(-1)
  if labels.shape[0] != images.shape[0]:
    raise InputError(f"{name}: {labels.shape[0]} labels for "
                     f"{images.shape[0]} images")
  if num_classes is None:
    num_classes = (len(class_names) if class_names is not None
                   else int(labels.max(initial=-1)) + 1)
  if class_names is None:
    class_names = tuple(str(i) for i in range(num_classes))
  class_names = tuple(str(c) for c in class_names)
  if len(class_names) != num_classes:
    raise InputError(f"{name}: {len(class_names)} class names for "
                     f"{num_classes} classes")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise InputError(f"{name}: labels {labels.min()}..{labels.max()} outside "
                     f"[0, {num_classes})")
  return Dataset(images, labels, int(num_classes), class_names, name)


def require_path(path, what="data_dir") -> str:
  """Returns ``path`` expanded, or raises DataNotFoundError naming it."""
  if path is None:
    raise InputError(f"{what} is required for this dataset")
  if not isinstance(path, (str, os.PathLike)):
    raise InputError(f"{what} must be a path, got {path!r}")
  path = os.path.expanduser(os.fspath(path))
  if not os.path.exists(path):
    raise DataNotFoundError(f"{path}: no such file or folder ({what})")
  return path


def halves(n: int, split: str) -> np.ndarray:
  """Indices of a fixed split of ``range(n)``: train even, test odd, all."""
  if split == "train":
    return np.arange(0, n, 2)
  if split == "test":
    return np.arange(1, n, 2)
  if split == "all":
    return np.arange(n)
  raise InputError(f"split must be 'train', 'test' or 'all', got {split!r}")


def subset(dataset: Dataset, indices) -> Dataset:
  """Examples at ``indices`` (int ``[K]``, in that order) of ``dataset``."""
  indices = np.asarray(indices, dtype=np.int64).reshape(-1)
  return dataset._replace(images=dataset.images[indices],
                          labels=dataset.labels[indices])


def take(dataset: Dataset, limit: int | None) -> Dataset:
  """The first ``limit`` examples (all of them when ``limit`` is None)."""
  if limit is None or limit >= len(dataset.labels):
    return dataset
  if limit < 0:
    raise InputError(f"limit must be >= 0, got {limit}")
  return subset(dataset, np.arange(limit))


def split(dataset: Dataset, sizes: Sequence[float | int],
          seed: int | None = 0) -> tuple[Dataset, ...]:
  """Disjoint parts of a seeded permutation of ``dataset``.

  Args:
    dataset: N examples.
    sizes: all floats (fractions of N, summing to at most 1) or all ints
      (counts, summing to at most N). Examples left over are dropped.
    seed: permutation seed; None keeps the dataset's order.

  Returns:
    One ``Dataset`` per entry of ``sizes``.
  """
  n = len(dataset.labels)
  if all(isinstance(s, (int, np.integer)) for s in sizes):
    counts = np.asarray(sizes, dtype=np.int64)
  else:
    fractions = np.asarray(sizes, dtype=np.float64)
    if fractions.sum() > 1 + 1e-9:
      raise ValueError(f"fractions {list(sizes)} sum to more than 1")
    bounds = np.round(np.cumsum(fractions) * n).astype(np.int64)
    counts = np.diff(bounds, prepend=0)
  if (counts < 0).any() or counts.sum() > n:
    raise ValueError(f"cannot split {n} examples into {list(sizes)}")
  order = np.arange(n) if seed is None else (
      np.random.default_rng(seed).permutation(n))
  bounds = np.cumsum(counts)
  return tuple(subset(dataset, order[b - c:b]) for b, c in zip(bounds, counts))


def sample_indices(dataset: Dataset, n: int, seed: int = 0,
                   classes: Sequence[int] | None = None,
                   distinct_labels: bool = False) -> np.ndarray:
  """Seeded choice of ``n`` distinct example indices (int64 ``[n]``).

  Args:
    dataset: the pool.
    n: how many examples.
    seed: ``np.random.default_rng`` seed; same seed, same indices.
    classes: draw only from examples with these labels.
    distinct_labels: no two chosen examples share a label (needs ``n`` at most
      the number of labels present).

  Returns:
    Indices into ``dataset``, in the order drawn.
  """
  rng = np.random.default_rng(seed)
  pool = np.arange(len(dataset.labels))
  if classes is not None:
    pool = pool[np.isin(dataset.labels, np.asarray(classes))]
  if not distinct_labels:
    if n > len(pool):
      raise ValueError(f"cannot sample {n} of {len(pool)} examples")
    return rng.choice(pool, size=n, replace=False)
  present = np.unique(dataset.labels[pool])
  if n > len(present):
    raise ValueError(f"cannot sample {n} distinct labels from "
                     f"{len(present)} present")
  chosen = rng.choice(present, size=n, replace=False)
  return np.array([rng.choice(pool[dataset.labels[pool] == c])
                   for c in chosen], dtype=np.int64)


def sample(dataset: Dataset, n: int, seed: int = 0,
           classes: Sequence[int] | None = None,
           distinct_labels: bool = False) -> Dataset:
  """The examples at ``sample_indices(...)``: ``n`` images ``[n, H, W, C]``."""
  return subset(dataset, sample_indices(dataset, n, seed, classes,
                                        distinct_labels))


def filter_classes(dataset: Dataset, classes: Sequence[int],
                   relabel: bool = False) -> Dataset:
  """Examples whose label is in ``classes``, in their original order.

  Args:
    dataset: the source.
    classes: labels to keep.
    relabel: map ``classes[i]`` to label ``i`` and shrink ``num_classes`` and
      ``class_names`` to match. By default labels are kept, so a victim with
      the full head can train on some classes and be attacked on others.

  Returns:
    The filtered ``Dataset``.
  """
  classes = np.asarray(classes, dtype=np.int32).reshape(-1)
  out = subset(dataset, np.flatnonzero(np.isin(dataset.labels, classes)))
  if not relabel:
    return out
  lookup = np.full(dataset.num_classes, -1, np.int32)
  lookup[classes] = np.arange(len(classes), dtype=np.int32)
  return out._replace(
      labels=lookup[out.labels], num_classes=len(classes),
      class_names=tuple(dataset.class_names[c] for c in classes))


def batches(dataset: Dataset, batch_size: int, seed: int = 0,
            epochs: int | None = None
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Shuffled ``(images [B, H, W, C], labels [B])`` batches.

  Each epoch is a fresh permutation drawn from one ``default_rng(seed)``; the
  last incomplete batch of an epoch is dropped.

  Args:
    dataset: N examples, N >= batch_size.
    batch_size: B.
    seed: shuffling seed.
    epochs: number of passes; None loops forever.

  Yields:
    ``(images, labels)`` numpy arrays.
  """
  n = len(dataset.labels)
  if not 0 < batch_size <= n:
    raise ValueError(f"batch_size {batch_size} not in [1, {n}]")
  rng = np.random.default_rng(seed)
  epoch = 0
  while epochs is None or epoch < epochs:
    order = rng.permutation(n)
    for i in range(n // batch_size):
      idx = order[i * batch_size:(i + 1) * batch_size]
      yield dataset.images[idx], dataset.labels[idx]
    epoch += 1
