"""Tests of gitjax.data on tiny files written to tmp_path."""

import gzip
import io
import os
import pickle
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from gitjax import data


def _rng_images(n, h, w, c, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), np.uint8)


def _write_idx(path, array, code=0x08):
  header = bytes([0, 0, code, array.ndim])
  header += np.asarray(array.shape, ">u4").tobytes()
  payload = header + array.astype(">u1").tobytes()
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(payload)


def _png_bytes(array):
  buffer = io.BytesIO()
  Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(
      buffer, format="PNG")
  return buffer.getvalue()


# Embedded and digits.


def test_embedded_default():
  ds = data.load()
  assert ds.name == "embedded/test"
  assert ds.images.dtype == np.float32 and ds.labels.dtype == np.int32
  assert ds.images.shape[1:] == (32, 32, 3)
  assert 100 <= len(ds.labels) <= 400
  assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
  assert ds.num_classes == len(ds.class_names) >= 8
  assert set(ds.labels.tolist()) == set(range(ds.num_classes))
  # A limit keeps a class-balanced prefix.
  assert len(set(data.load(limit=ds.num_classes).labels.tolist())) == (
      ds.num_classes)


def test_embedded_deterministic_and_disjoint():
  test, again = data.load(), data.load("embedded", split="test")
  np.testing.assert_array_equal(test.images, again.images)
  np.testing.assert_array_equal(test.labels, again.labels)
  train = data.load(split="train")
  assert len(train.labels) == len(test.labels)
  train_bytes = {x.tobytes() for x in train.images}
  assert not any(x.tobytes() in train_bytes for x in test.images)


def test_embedded_other_size():
  ds = data.load(image_size=16, channels=1, limit=5)
  assert ds.images.shape == (5, 16, 16, 1)


def test_digits():
  ds = data.load("digits", split="all")
  assert ds.images.shape == (1797, 8, 8, 1) and ds.num_classes == 10
  assert ds.images.max() == 1.0 and ds.images.min() == 0.0
  small = data.load("digits", image_size=12, limit=3)
  assert small.images.shape == (3, 12, 12, 1)


# idx files.


@pytest.mark.parametrize("ext", [".gz", ""])
def test_idx(tmp_path, ext):
  images = _rng_images(3, 5, 5, 1)[..., 0]
  _write_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}", images)
  _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{ext}",
             np.array([7, 0, 3], np.uint8))
  ds = data.load("mnist", data_dir=tmp_path)
  assert ds.images.shape == (3, 5, 5, 1) and ds.num_classes == 10
  np.testing.assert_allclose(ds.images[..., 0], images / 255, atol=1e-7)
  np.testing.assert_array_equal(ds.labels, [7, 0, 3])
  assert data.load("idx", data_dir=tmp_path).num_classes == 8
  fashion = data.load("fashion_mnist", data_dir=tmp_path, image_size=4)
  assert fashion.images.shape == (3, 4, 4, 1)
  assert fashion.class_names[0] == "T-shirt/top"


def test_idx_missing_train_images(tmp_path):
  _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(2, np.uint8))
  with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
    data.load("mnist", data_dir=tmp_path, split="train")


def test_idx_corrupt(tmp_path):
  images = _rng_images(2, 5, 5, 1)[..., 0]
  path = tmp_path / "x.gz"
  _write_idx(path, images, code=0x42)
  with pytest.raises(ValueError, match="magic"):
    data.read_idx(str(path))
  good = bytes([0, 0, 8, 1]) + np.asarray([4], ">u4").tobytes() + b"abc"
  with pytest.raises(ValueError, match="header says"):
    data.parse_idx(good)
  with pytest.raises(ValueError, match="dims"):
    data.parse_idx(good + b"d", expected_ndim=3)


# CIFAR batches.


def _cifar_batch(n, seed, label_key=b"labels"):
  images = _rng_images(n, 32, 32, 3, seed)
  flat = images.transpose(0, 3, 1, 2).reshape(n, -1)  # CHW rows, as CIFAR.
  labels = list(range(n))
  return images, labels, {b"batch_label": b"batch", label_key: labels,
                          b"data": flat}


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_python_batches(tmp_path, protocol):
  folder = tmp_path / "cifar-10-batches-py"
  folder.mkdir()
  parts = [_cifar_batch(2, seed) for seed in range(3)]
  for i, (_, _, batch) in enumerate(parts[:2]):
    (folder / f"data_batch_{i + 1}").write_bytes(
        pickle.dumps(batch, protocol=protocol))
  (folder / "test_batch").write_bytes(pickle.dumps(parts[2][2], protocol))
  train = data.load("cifar_batches", data_dir=tmp_path, split="train")
  assert train.images.shape == (4, 32, 32, 3)
  np.testing.assert_allclose(
      train.images, np.concatenate([parts[0][0], parts[1][0]]) / 255,
      atol=1e-7)
  np.testing.assert_array_equal(train.labels, [0, 1, 0, 1])
  assert train.class_names == data.CIFAR10_CLASSES
  test = data.load("cifar_batches", data_dir=folder, limit=1)
  np.testing.assert_allclose(test.images, parts[2][0][:1] / 255, atol=1e-7)


def test_cifar_numpy1_pickle():
  images, _, batch = _cifar_batch(2, 0)
  blob = pickle.dumps(batch, protocol=2)  # GLOBAL opcodes: plain text.
  blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
  assert b"numpy.core.multiarray" in blob  # As numpy 1 and Python 2 wrote.
  loaded = data.safe_unpickle(blob)
  np.testing.assert_array_equal(loaded[b"data"], batch[b"data"])


def test_cifar100_python(tmp_path):
  images, labels, batch = _cifar_batch(3, 0, b"fine_labels")
  batch[b"coarse_labels"] = [5, 6, 7]
  (tmp_path / "test").write_bytes(pickle.dumps(batch))
  names = [f"c{i}" for i in range(100)]
  (tmp_path / "meta").write_bytes(pickle.dumps({"fine_label_names": names}))
  ds = data.load("cifar_batches", data_dir=tmp_path)
  assert ds.num_classes == 100 and ds.class_names[2] == "c2"
  np.testing.assert_array_equal(ds.labels, labels)
  coarse = data.load("cifar_batches", data_dir=tmp_path,
                     label_key="coarse_labels")
  assert coarse.num_classes == 20
  np.testing.assert_array_equal(coarse.labels, [5, 6, 7])
  np.testing.assert_allclose(ds.images, images / 255, atol=1e-7)


def test_cifar_binary(tmp_path):
  images, _, batch = _cifar_batch(3, 1)
  records = np.concatenate(
      [np.array([[4], [9], [0]], np.uint8), batch[b"data"]], axis=1)
  (tmp_path / "test_batch.bin").write_bytes(records.tobytes())
  ds = data.load("cifar_batches", data_dir=tmp_path)
  np.testing.assert_array_equal(ds.labels, [4, 9, 0])
  np.testing.assert_allclose(ds.images, images / 255, atol=1e-7)
  (tmp_path / "test_batch.bin").write_bytes(records.tobytes()[:-1])
  with pytest.raises(ValueError, match="whole number"):
    data.load("cifar_batches", data_dir=tmp_path)


class _Evil:

  def __reduce__(self):
    return os.system, ("echo pwned",)


def test_malicious_pickle_refused(tmp_path):
  (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Evil()}))
  with pytest.raises(pickle.UnpicklingError, match="system"):
    data.load("cifar_batches", data_dir=tmp_path)
  with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
    data.safe_unpickle(pickle.dumps(eval))


# Image folders and zips.


def _write_tree(root, files):
  for rel, array in files.items():
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png_bytes(array))


def _class_files(prefix=""):
  return {f"{prefix}{c}/{i:04d}.png": _rng_images(1, 6, 6, 3, 10 * j + i)[0]
          for j, c in enumerate(["dog", "cat"]) for i in range(3)}


def test_image_folder_dir(tmp_path):
  files = _class_files()
  _write_tree(tmp_path, files)
  ds = data.load("image_folder", data_dir=tmp_path)
  assert ds.class_names == ("cat", "dog") and ds.images.shape == (6, 6, 6, 3)
  np.testing.assert_array_equal(ds.labels, [0, 1, 0, 1, 0, 1])  # Interleaved.
  np.testing.assert_allclose(ds.images[1], files["dog/0000.png"] / 255,
                             atol=1e-7)
  ordered = data.load("image_folder", data_dir=tmp_path, order="sorted",
                      class_names=("dog", "cat"), limit=4, image_size=3)
  np.testing.assert_array_equal(ordered.labels, [0, 0, 0, 1])
  assert ordered.images.shape == (4, 3, 3, 3)


def test_image_folder_picks_split(tmp_path):
  _write_tree(tmp_path, {**_class_files("train/"), **_class_files("test/")})
  (tmp_path / "test" / "cat" / "0000.png").unlink()
  assert len(data.load("image_folder", data_dir=tmp_path).labels) == 5
  assert len(data.load("image_folder", data_dir=tmp_path,
                       split="train").labels) == 6
  with pytest.raises(ValueError, match="none named 'val'"):
    data.load("image_folder", data_dir=tmp_path, split="val")


def test_image_folder_zip_gray(tmp_path):
  files = {f"test/{c}/{i}.png": np.full((4, 4, 1), 40 * i, np.uint8)
           for c in ("b", "a") for i in range(2)}
  path = tmp_path / "set.zip"
  with zipfile.ZipFile(path, "w") as archive:
    for rel, array in files.items():
      archive.writestr(rel, _png_bytes(array))
  ds = data.load("image_folder", data_dir=path, channels=3)
  assert ds.class_names == ("a", "b") and ds.images.shape == (4, 4, 4, 3)
  np.testing.assert_allclose(ds.images[2, 0, 0], [40 / 255] * 3, atol=1e-7)
  assert data.load("image_folder", data_dir=path).images.shape[-1] == 1


def test_cifar10_zip(tmp_path):
  path = tmp_path / "cifar10_test_x.zip"
  with zipfile.ZipFile(path, "w") as archive:
    for c in ("truck", "airplane"):
      archive.writestr(f"test/{c}/0000.png", _png_bytes(
          _rng_images(1, 32, 32, 3)[0]))
  ds = data.load("cifar10", data_dir=tmp_path)
  assert ds.num_classes == 10 and ds.class_names[9] == "truck"
  np.testing.assert_array_equal(ds.labels, [0, 9])
  with pytest.raises(FileNotFoundError, match="cifar10_train_"):
    data.load("cifar10", data_dir=tmp_path, split="train")


def test_celeba_zip(tmp_path):
  path = tmp_path / "celeba_small.zip"
  images = _rng_images(6, 8, 6, 3)  # Portrait, like CelebA's 89x109.
  with zipfile.ZipFile(path, "w") as archive:
    for i, array in enumerate(images):
      archive.writestr(f"celebA/{i + 1:06d}.png", _png_bytes(array))
  ds = data.load("celeba", data_dir=tmp_path, start=2, stop=5)
  assert ds.images.shape == (3, 6, 6, 3) and ds.num_classes == 2
  np.testing.assert_array_equal(ds.labels, [0, 1, 0])
  np.testing.assert_allclose(ds.images[0], images[2, 1:7] / 255, atol=1e-7)
  custom = data.load("image_folder", data_dir=path, image_size=4,
                     center_crop=True, num_classes=3,
                     label_fn=lambda p, i: int(p[-5]) % 3)
  np.testing.assert_array_equal(custom.labels, [1, 2, 0, 1, 2, 0])
  assert custom.images.shape == (6, 4, 4, 3)


# Errors.


def test_errors(tmp_path):
  with pytest.raises(ValueError, match="embedded"):
    data.load("no_such_set")
  missing = tmp_path / "nowhere"
  for name in ("mnist", "cifar_batches", "image_folder", "cifar10", "celeba"):
    with pytest.raises(FileNotFoundError, match="nowhere"):
      data.load(name, data_dir=missing)
  with pytest.raises(FileNotFoundError, match="t10k-images"):
    data.load("mnist", data_dir=tmp_path)
  with pytest.raises(FileNotFoundError, match="test_batch"):
    data.load("cifar_batches", data_dir=tmp_path)


# Transforms.


def test_resize_and_channels():
  images = np.random.default_rng(0).random((2, 8, 8, 3), np.float32)
  small = data.resize(images, 4)
  assert small.shape == (2, 4, 4, 3) and small.dtype == np.float32
  np.testing.assert_allclose(small.mean(), images.mean(), atol=1e-2)
  assert small.min() >= images.min() and small.max() <= images.max()
  flat = np.full((1, 6, 6, 1), 0.25, np.float32)
  np.testing.assert_allclose(data.resize(flat, (3, 9)), 0.25, atol=1e-6)
  gray = data.to_channels(data.to_channels(flat, 3), 1)
  np.testing.assert_allclose(gray, flat, atol=1e-6)
  assert data.center_crop(np.zeros((1, 5, 3, 1))).shape == (1, 3, 3, 1)


def test_normalize_round_trip():
  images = np.random.default_rng(0).random((2, 4, 4, 3), np.float32)
  mean, std = data.transforms.CIFAR10_MEAN, data.transforms.CIFAR10_STD
  normed = data.normalize(images, mean, std)
  np.testing.assert_allclose(normed[..., 1], (images[..., 1] - mean[1])
                             / std[1], rtol=1e-5)
  np.testing.assert_allclose(data.denormalize(normed, mean, std), images,
                             atol=1e-6)
  back = data.denormalize(data.normalize(jnp.asarray(images), mean, std),
                          mean, std)  # jax arrays, strict rank promotion.
  assert back.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(back), images, atol=1e-6)
  with pytest.raises(ValueError, match="channels"):
    data.normalize(images, (0.5, 0.5), (1.0, 1.0))


# Splits and samples.


def _toy(n=20, classes=4):
  images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1) / n
  return data.from_arrays(images, np.arange(n) % classes, name="toy")


def test_split_deterministic():
  ds = _toy()
  a, b = data.split(ds, (0.75, 0.25), seed=3)
  a2, _ = data.split(ds, (0.75, 0.25), seed=3)
  np.testing.assert_array_equal(a.images, a2.images)
  assert len(a.labels) == 15 and len(b.labels) == 5
  seen = np.concatenate([a.images, b.images]).ravel()
  assert sorted(seen.tolist()) == sorted(ds.images.ravel().tolist())
  first, second = data.split(ds, (4, 6), seed=None)
  np.testing.assert_array_equal(first.labels, ds.labels[:4])
  assert len(second.labels) == 6
  with pytest.raises(ValueError):
    data.split(ds, (15, 15))


def test_sample_and_filter():
  ds = _toy()
  idx = data.sample_indices(ds, 5, seed=7)
  np.testing.assert_array_equal(idx, data.sample_indices(ds, 5, seed=7))
  assert len(set(idx.tolist())) == 5
  assert not np.array_equal(idx, data.sample_indices(ds, 5, seed=8))
  distinct = data.sample(ds, 4, seed=1, distinct_labels=True)
  assert sorted(distinct.labels.tolist()) == [0, 1, 2, 3]
  some = data.sample(ds, 3, seed=1, classes=[2])
  assert set(some.labels.tolist()) == {2}
  kept = data.filter_classes(ds, [3, 1])
  assert set(kept.labels.tolist()) == {1, 3} and kept.num_classes == 4
  relabelled = data.filter_classes(ds, [3, 1], relabel=True)
  assert relabelled.class_names == ("3", "1")
  np.testing.assert_array_equal(relabelled.labels[:2], [1, 0])


def test_batches():
  ds = _toy()
  run = list(data.batches(ds, 6, seed=0, epochs=2))
  again = list(data.batches(ds, 6, seed=0, epochs=2))
  assert len(run) == 6 and run[0][0].shape == (6, 1, 1, 1)
  for (x, y), (x2, y2) in zip(run, again):
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
  first_epoch = np.concatenate([x for x, _ in run[:3]]).ravel()  # [18]
  assert len(set(first_epoch.tolist())) == 18  # No repeats within an epoch.
  forever = data.batches(ds, 20, seed=0)
  assert next(forever)[1].shape == (20,) and next(forever)[1].shape == (20,)
  with pytest.raises(ValueError):
    next(data.batches(ds, 21))


# TFDS (optional extra).


def test_tfds_mock():
  pytest.importorskip("tensorflow")  # tfds.load builds a tf.data pipeline.
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=8):
    ds = data.load("tfds", tfds_name="mnist", split="test", limit=5,
                   image_size=8)
  assert ds.images.shape == (5, 8, 8, 1) and ds.num_classes == 10
  assert ds.images.dtype == np.float32 and ds.labels.dtype == np.int32
