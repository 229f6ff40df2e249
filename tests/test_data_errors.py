"""Bad data files and bad options: one-line errors that name the file.

Each case writes a tiny bad input to tmp_path. The error must be an
``InputError`` (or, for a missing path, a ``FileNotFoundError`` that is one
too), its message one line that starts with the file (``<zip>: member
<name>`` inside a zip) and names the problem.
"""

import gzip
import io
import os
import pickle
import zipfile

import numpy as np
import pytest
from PIL import Image

from gitjax import data
from gitjax.errors import InputError


def _png(array=None, **save):
  if array is None:
    array = np.full((4, 4, 3), 100, np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=save.pop("format", "PNG"), **save)
  return buffer.getvalue()


def _jpeg(size=16):
  pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), np.uint8)
  return _png(pixels, format="JPEG")


def _zip(path, members, compression=zipfile.ZIP_DEFLATED):
  with zipfile.ZipFile(path, "w", compression=compression) as archive:
    for name, blob in members.items():
      archive.writestr(name, blob)
  return path


def _tree(root, files):
  for rel, blob in files.items():
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
  return root


def _idx(array, code=0x08):
  array = np.asarray(array)
  header = bytes([0, 0, code, array.ndim])
  return header + np.asarray(array.shape, ">u4").tobytes() + array.astype(
      ">u1").tobytes()


def _mnist(tmp_path, images=None, labels=None, ext=""):
  """Writes t10k images and labels (bytes), returns the folder."""
  if images is None:
    images = _idx(np.zeros((2, 3, 3), np.uint8))
  if labels is None:
    labels = _idx(np.array([1, 2], np.uint8))
  (tmp_path / f"t10k-images-idx3-ubyte{ext}").write_bytes(images)
  (tmp_path / f"t10k-labels-idx1-ubyte{ext}").write_bytes(labels)
  return tmp_path


def _cifar_dict(n=2, labels=None):
  flat = np.zeros((n, 3072), np.uint8)
  return {b"batch_label": b"b", b"labels": list(range(n)) if labels is None
          else labels, b"data": flat}


class _Evil:

  def __reduce__(self):
    return os.system, ("echo pwned",)


# Each case: tmp_path -> (call raising the error, message prefix, fragment).


def _zip_truncated_jpeg(tmp):
  jpeg = _jpeg()
  path = _zip(tmp / "cifar10_test_x.zip", {
      "test/airplane/0001.png": _png(np.zeros((16, 16, 3), np.uint8)),
      "test/airplane/0002.jpg": jpeg[:len(jpeg) // 2]})
  return (lambda: data.load("cifar10", data_dir=tmp),
          f"{path}: member test/airplane/0002.jpg: ",
          "truncated or corrupt image (PIL: ")


def _zip_truncated_png(tmp):
  png = _png(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8))
  path = _zip(tmp / "set.zip", {"cat/0.png": png[:len(png) // 2]})
  return (lambda: data.load("image_folder", data_dir=path),
          f"{path}: member cat/0.png: ",
          "truncated or corrupt image (PIL: image file is truncated)")


def _zip_text_as_png(tmp):
  path = _zip(tmp / "set.zip", {"cat/0.png": b"just some text\n"})
  return (lambda: data.load("image_folder", data_dir=path),
          f"{path}: member cat/0.png: ",
          "not an image file PIL can read (unknown format)")


def _zip_empty_member(tmp):
  path = _zip(tmp / "set.zip", {"cat/0.png": b""})
  return (lambda: data.load("image_folder", data_dir=path),
          f"{path}: member cat/0.png: ", "empty file (0 bytes)")


def _zip_bad_crc(tmp):
  path = _zip(tmp / "set.zip", {"cat/0.png": _png()}, zipfile.ZIP_STORED)
  blob = bytearray(path.read_bytes())
  blob[blob.index(b"IHDR") + 8] ^= 0xFF  # Inside the stored member's data.
  path.write_bytes(bytes(blob))
  return (lambda: data.load("image_folder", data_dir=path),
          f"{path}: member cat/0.png: ", "cannot extract (zipfile: Bad CRC-32")


def _not_a_zip(tmp):
  path = tmp / "cifar10_test_x.zip"
  path.write_text("this is not a zip\n")
  return (lambda: data.load("cifar10", data_dir=tmp), f"{path}: ",
          "not a zip archive, or a truncated or corrupt one (zipfile: File is "
          "not a zip file)")


def _truncated_zip(tmp):
  path = _zip(tmp / "set.zip", {f"cat/{i}.png": _png() for i in range(3)})
  path.write_bytes(path.read_bytes()[:-30])  # Cut into the central directory.
  return (lambda: data.load("image_folder", data_dir=path), f"{path}: ",
          "not a zip archive, or a truncated or corrupt one")


def _empty_zip_file(tmp):
  path = tmp / "celeba.zip"
  path.write_bytes(b"")
  return (lambda: data.load("celeba", data_dir=tmp), f"{path}: ",
          "empty file (0 bytes), expected a zip archive")


def _folder_text_as_png(tmp):
  _tree(tmp, {"cat/0.png": _png(), "dog/0.png": b"<html>not found</html>"})
  return (lambda: data.load("image_folder", data_dir=tmp),
          f"{tmp / 'dog' / '0.png'}: ",
          "not an image file PIL can read (unknown format)")


def _folder_zero_byte_image(tmp):
  _tree(tmp, {"cat/0.jpg": b""})
  return (lambda: data.load("image_folder", data_dir=tmp),
          f"{tmp / 'cat' / '0.jpg'}: ", "empty file (0 bytes), not an image")


def _folder_truncated_jpeg(tmp):
  jpeg = _jpeg()
  _tree(tmp, {"cat/0.jpg": jpeg[:200]})
  return (lambda: data.load("image_folder", data_dir=tmp),
          f"{tmp / 'cat' / '0.jpg'}: ",
          "truncated or corrupt image (PIL: Truncated File Read)")


def _folder_float_image(tmp):
  image = Image.fromarray(np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4))
  buffer = io.BytesIO()
  image.save(buffer, format="TIFF")
  _tree(tmp, {"cat/0.tif": buffer.getvalue()})
  return (lambda: data.load("image_folder", data_dir=tmp),
          f"{tmp / 'cat' / '0.tif'}: ",
          "floating-point pixels (PIL mode 'F') have no fixed range")


def _folder_int32_image(tmp):
  image = Image.fromarray(np.full((4, 4), 100_000, np.int32))
  buffer = io.BytesIO()
  image.save(buffer, format="TIFF")
  _tree(tmp, {"cat/0.tif": buffer.getvalue()})
  return (lambda: data.load("image_folder", data_dir=tmp),
          f"{tmp / 'cat' / '0.tif'}: ",
          "32-bit pixel values 100000..100000 outside 0..65535")


def _folder_mixed_sizes(tmp):
  _tree(tmp, {"cat/0.png": _png(), "dog/0.png": _png(np.zeros((5, 4, 3),
                                                               np.uint8))})
  return (lambda: data.load("image_folder", data_dir=tmp),
          f"{tmp / 'dog' / '0.png'}: ",
          "5x4 pixels, but cat/0.png is 4x4; pass image_size=")


def _folder_unreadable_file(tmp):
  _tree(tmp, {"cat/0.png": _png()})
  (tmp / "cat" / "1.png").symlink_to(tmp / "gone.png")  # Dangling.
  return (lambda: data.load("image_folder", data_dir=tmp),
          f"{tmp / 'cat' / '1.png'}: ", "broken symbolic link")


def _empty_folder(tmp):
  (tmp / "cat").mkdir()
  (tmp / "cat" / "notes.txt").write_text("no images here")
  return (lambda: data.load("image_folder", data_dir=tmp), f"{tmp}: ",
          "no images (.jpg, ")


def _zip_without_images(tmp):
  path = _zip(tmp / "set.zip", {"readme.txt": b"hi"})
  return (lambda: data.load("image_folder", data_dir=path), f"{path}: ",
          "no images (.jpg, .jpeg, .png, .bmp, .gif, .webp, .ppm, .pgm, .tif, "
          ".tiff) in this zip")


def _missing_data_dir(tmp):
  return (lambda: data.load("image_folder", data_dir=tmp / "nowhere"),
          f"{tmp / 'nowhere'}: ", "no such file or folder (data_dir)")


def _missing_cifar10_zip(tmp):
  return (lambda: data.load("cifar10", data_dir=tmp, split="train"),
          f"{tmp}: ", "no file matching cifar10_train_*.zip")


# idx files.


def _idx_truncated_gz(tmp):
  blob = gzip.compress(_idx(np.zeros((2, 3, 3), np.uint8)))
  folder = _mnist(tmp, images=blob[:len(blob) - 12], ext=".gz",
                  labels=gzip.compress(_idx(np.array([1, 2], np.uint8))))
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte.gz'}: ",
          "truncated or corrupt gzip data (gzip: Compressed file ended before "
          "the end-of-stream marker was reached)")


def _idx_gz_not_gzip(tmp):
  folder = _mnist(tmp, ext=".gz")  # Plain idx bytes, named .gz.
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-labels-idx1-ubyte.gz'}: ",
          "named .gz but not gzip data: starts with 0x0000, not the gzip "
          "magic 0x1f8b")


def _idx_gz_zero_bytes(tmp):
  folder = _mnist(tmp, images=b"", labels=b"", ext=".gz")
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-labels-idx1-ubyte.gz'}: ",
          "named .gz but not gzip data: empty file (0 bytes)")


def _idx_zero_bytes(tmp):
  folder = _mnist(tmp, images=b"")
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte'}: ",
          "empty file (0 bytes), too short for an idx file")


def _idx_header_claims_more(tmp):
  folder = _mnist(tmp, images=_idx(np.zeros((2, 3, 3), np.uint8))[:-5])
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte'}: ",
          "header says (2, 3, 3) (18 bytes of data) but the file has 13 "
          "(truncated)")


def _idx_gz_header_claims_more(tmp):
  blob = gzip.compress(_idx(np.zeros((2, 3, 3), np.uint8))[:-5])
  folder = _mnist(tmp, images=blob, ext=".gz",
                  labels=gzip.compress(_idx(np.array([1, 2], np.uint8))))
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte.gz'}: ",
          "header says (2, 3, 3) (18 bytes of data) but the file has 13")


def _idx_truncated_header(tmp):
  folder = _mnist(tmp, images=_idx(np.zeros((2, 3, 3), np.uint8))[:9])
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte'}: ",
          "truncated idx header (9 of 16 bytes)")


def _idx_gzip_without_gz_name(tmp):
  folder = _mnist(tmp, images=gzip.compress(_idx(np.zeros((2, 3, 3)))))
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte'}: ",
          "gzip-compressed data read as a plain idx file")


def _idx_not_idx(tmp):
  folder = _mnist(tmp, labels=b"<html>404</html>")
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-labels-idx1-ubyte'}: ", "bad idx magic number")


def _idx_swapped_files(tmp):
  folder = _mnist(tmp, images=_idx(np.array([1, 2], np.uint8)))
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte'}: ",
          "has 1 dims, expected 3")


def _idx_count_mismatch(tmp):
  folder = _mnist(tmp, labels=_idx(np.array([1, 2, 3], np.uint8)))
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte'}: ",
          f"2 images but {folder / 't10k-labels-idx1-ubyte'} has 3 labels")


def _idx_label_out_of_range(tmp):
  folder = _mnist(tmp, labels=_idx(np.array([1, 12], np.uint8)))
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-labels-idx1-ubyte'}: ",
          "labels 1..12 outside [0, 10)")


def _idx_data_dir_is_file(tmp):
  path = tmp / "mnist.tar"
  path.write_bytes(b"x")
  return (lambda: data.load("mnist", data_dir=path), f"{path}: ",
          "not a folder")


def _idx_read_idx_corrupt_gz(tmp):
  blob = bytearray(gzip.compress(_idx(np.arange(200, dtype=np.uint8))))
  blob[-8] ^= 0xFF  # The CRC.
  path = tmp / "x.gz"
  path.write_bytes(bytes(blob))
  return (lambda: data.read_idx(str(path)), f"{path}: ",
          "truncated or corrupt gzip data (gzip: CRC check failed")


# CIFAR batches.


def _cifar_truncated_pickle(tmp):
  blob = pickle.dumps(_cifar_dict())
  (tmp / "test_batch").write_bytes(blob[:len(blob) // 2])
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'test_batch'}: ",
          "truncated or corrupt pickle, expected a CIFAR batch")


def _cifar_zero_byte_pickle(tmp):
  folder = tmp / "cifar-10-batches-py"
  folder.mkdir()
  (folder / "data_batch_1").write_bytes(pickle.dumps(_cifar_dict()))
  (folder / "data_batch_2").write_bytes(b"")
  return (lambda: data.load("cifar_batches", data_dir=tmp, split="train"),
          f"{folder / 'data_batch_2'}: ",
          "empty file (0 bytes), expected a CIFAR batch")


def _cifar_text_pickle(tmp):
  (tmp / "test_batch").write_text("version https://git-lfs.github.com/spec\n")
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'test_batch'}: ",
          "truncated or corrupt pickle, expected a CIFAR batch "
          "(UnpicklingError: invalid load key, 'v'.)")


def _cifar_not_a_dict(tmp):
  (tmp / "test_batch").write_bytes(pickle.dumps([1, 2, 3]))
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'test_batch'}: ",
          "expected a CIFAR batch (a dict), got list")


def _cifar_bad_shape(tmp):
  batch = _cifar_dict()
  batch[b"data"] = np.zeros((2, 100), np.uint8)
  (tmp / "test_batch").write_bytes(pickle.dumps(batch))
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'test_batch'}: ", "data has shape (2, 100)")


def _cifar_label_count(tmp):
  (tmp / "test_batch").write_bytes(pickle.dumps(_cifar_dict(labels=[1])))
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'test_batch'}: ",
          "'labels' must be 2 integers, got int64 (1,)")


def _cifar_label_out_of_range(tmp):
  (tmp / "test_batch").write_bytes(pickle.dumps(_cifar_dict(labels=[3, 10])))
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'test_batch'}: ", "labels 3..10 outside [0, 10)")


def _cifar_refused_global(tmp):
  (tmp / "test_batch").write_bytes(pickle.dumps({b"data": _Evil()}))
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'test_batch'}: ", "refusing to unpickle global ")


def _cifar_corrupt_meta(tmp):
  (tmp / "test_batch").write_bytes(pickle.dumps(_cifar_dict()))
  (tmp / "batches.meta").write_bytes(pickle.dumps({"label_names": []})[:-3])
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'batches.meta'}: ",
          "truncated or corrupt pickle, expected a CIFAR meta file")


def _cifar_binary_meta_not_text(tmp):
  (tmp / "test_batch.bin").write_bytes(bytes(3073))
  (tmp / "batches.meta.txt").write_bytes(b"\xff\xfe\x00bad")
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'batches.meta.txt'}: ",
          "not a UTF-8 text file of class names")


def _cifar_binary_truncated(tmp):
  (tmp / "data_batch_1.bin").write_bytes(bytes(2 * 3073))
  (tmp / "data_batch_2.bin").write_bytes(bytes(2 * 3073 - 7))
  return (lambda: data.load("cifar_batches", data_dir=tmp, split="train"),
          f"{tmp / 'data_batch_2.bin'}: ",
          "6139 bytes is not a whole number of 3073-byte CIFAR records "
          "(truncated?)")


def _cifar_binary_zero_bytes(tmp):
  (tmp / "test.bin").write_bytes(b"")  # CIFAR-100: 2 label bytes.
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'test.bin'}: ",
          "empty file (0 bytes), expected 3074-byte CIFAR records")


def _cifar_binary_label_out_of_range(tmp):
  records = np.zeros((2, 3073), np.uint8)
  records[1, 0] = 200
  (tmp / "test_batch.bin").write_bytes(records.tobytes())
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'test_batch.bin'}: ", "labels 0..200 outside [0, 10)")


def _cifar_batch_is_folder(tmp):
  (tmp / "test_batch").mkdir()
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'test_batch'}: ", "cannot read (Is a directory)")


def _cifar_no_batches(tmp):
  return (lambda: data.load("cifar_batches", data_dir=tmp), f"{tmp}: ",
          "no CIFAR test batches (looked for test_batch, ")


def _cifar_data_dir_is_file(tmp):
  path = tmp / "cifar-10-python.tar.gz"
  path.write_bytes(b"x")
  return (lambda: data.load("cifar_batches", data_dir=path), f"{path}: ",
          "not a folder; pass the folder holding the CIFAR batch files")


FILE_CASES = [
    (_zip_truncated_jpeg, InputError), (_zip_truncated_png, InputError),
    (_zip_text_as_png, InputError), (_zip_empty_member, InputError),
    (_zip_bad_crc, InputError), (_not_a_zip, InputError),
    (_truncated_zip, InputError), (_empty_zip_file, InputError),
    (_folder_text_as_png, InputError), (_folder_zero_byte_image, InputError),
    (_folder_truncated_jpeg, InputError), (_folder_float_image, InputError),
    (_folder_int32_image, InputError), (_folder_mixed_sizes, InputError),
    (_folder_unreadable_file, FileNotFoundError),
    (_empty_folder, FileNotFoundError), (_zip_without_images,
                                         FileNotFoundError),
    (_missing_data_dir, FileNotFoundError),
    (_missing_cifar10_zip, FileNotFoundError),
    (_idx_truncated_gz, InputError), (_idx_gz_not_gzip, InputError),
    (_idx_gz_zero_bytes, InputError), (_idx_zero_bytes, InputError),
    (_idx_header_claims_more, InputError),
    (_idx_gz_header_claims_more, InputError),
    (_idx_truncated_header, InputError),
    (_idx_gzip_without_gz_name, InputError), (_idx_not_idx, InputError),
    (_idx_swapped_files, InputError), (_idx_count_mismatch, InputError),
    (_idx_label_out_of_range, InputError),
    (_idx_data_dir_is_file, InputError),
    (_idx_read_idx_corrupt_gz, InputError),
    (_cifar_truncated_pickle, pickle.UnpicklingError),
    (_cifar_zero_byte_pickle, pickle.UnpicklingError),
    (_cifar_text_pickle, pickle.UnpicklingError),
    (_cifar_not_a_dict, InputError), (_cifar_bad_shape, InputError),
    (_cifar_label_count, InputError), (_cifar_label_out_of_range, InputError),
    (_cifar_refused_global, pickle.UnpicklingError),
    (_cifar_corrupt_meta, pickle.UnpicklingError),
    (_cifar_binary_meta_not_text, InputError),
    (_cifar_binary_truncated, InputError),
    (_cifar_binary_zero_bytes, InputError),
    (_cifar_binary_label_out_of_range, InputError),
    (_cifar_batch_is_folder, InputError), (_cifar_no_batches,
                                           FileNotFoundError),
    (_cifar_data_dir_is_file, InputError),
]


@pytest.mark.parametrize(
    "make,error", [pytest.param(m, e, id=m.__name__.lstrip("_"))
                   for m, e in FILE_CASES])
def test_bad_file_names_it(tmp_path, make, error):
  call, prefix, fragment = make(tmp_path)
  with pytest.raises(error) as info:
    call()
  message = str(info.value)
  assert isinstance(info.value, InputError)  # Missing files too.
  assert "\n" not in message and message == message.strip()
  assert message.startswith(prefix), message
  assert fragment in message, message
  assert "object at 0x" not in message  # No reprs of in-memory buffers.


def test_cause_is_chained(tmp_path):
  (tmp_path / "zip").mkdir()
  (tmp_path / "idx").mkdir()
  call, _, _ = _zip_truncated_jpeg(tmp_path / "zip")
  with pytest.raises(InputError) as info:
    call()
  assert isinstance(info.value.__cause__, OSError)  # PIL's own error.
  call, _, _ = _idx_truncated_gz(tmp_path / "idx")
  with pytest.raises(InputError) as info:
    call()
  assert isinstance(info.value.__cause__, EOFError)


def test_zip_checked_before_decoding(tmp_path, monkeypatch):
  """A corrupt archive fails on open: no image is decoded first."""
  call, _, _ = _truncated_zip(tmp_path)
  monkeypatch.setattr(data.folder, "_decode", pytest.fail)
  with pytest.raises(InputError, match="not a zip archive"):
    call()


def test_binary_batches_sized_before_reading(tmp_path, monkeypatch):
  """Every binary batch's size is checked before the first is read."""
  call, _, _ = _cifar_binary_truncated(tmp_path)
  monkeypatch.setattr(data.cifar, "_read_binary_batch", pytest.fail)
  with pytest.raises(InputError, match="data_batch_2.bin"):
    call()


# Pixel modes PIL can convert are converted, not refused.


def _load_one(tmp_path, blob, ext="png"):
  _tree(tmp_path, {f"cat/0.{ext}": blob})
  return data.load("image_folder", data_dir=tmp_path).images[0]


def test_16_bit_gray_is_scaled(tmp_path):
  values = np.array([[0, 257, 32768, 65535]], np.uint16)  # PIL mode I;16.
  buffer = io.BytesIO()
  Image.fromarray(values).save(buffer, format="PNG")
  image = _load_one(tmp_path, buffer.getvalue())
  np.testing.assert_allclose(image[..., 0] * 255, [[0, 1, 128, 255]],
                             atol=1e-4)


def test_16_bit_pgm_is_scaled(tmp_path):
  header = b"P5 2 1 65535\n"  # PIL reads 16-bit PGM as mode I.
  image = _load_one(tmp_path, header + np.array([514, 65535], ">u2").tobytes(),
                    "pgm")
  np.testing.assert_allclose(image[..., 0] * 255, [[2, 255]], atol=1e-4)


def test_palette_with_byte_transparency(tmp_path):
  rgb = np.random.default_rng(0).integers(0, 256, (4, 4, 3), np.uint8)
  palette = Image.fromarray(rgb).convert("P")
  buffer = io.BytesIO()
  palette.save(buffer, format="PNG", transparency=bytes([0, 128] + [255] * 20))
  image = _load_one(tmp_path, buffer.getvalue())  # Warnings are errors here.
  expected = np.asarray(palette.convert("RGBA"))[..., :3] / 255
  np.testing.assert_allclose(image, expected, atol=1e-6)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_becomes_rgb(tmp_path, fmt):
  cmyk = Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).convert("CMYK")
  buffer = io.BytesIO()
  cmyk.save(buffer, format=fmt)
  image = _load_one(tmp_path, buffer.getvalue(),
                    "jpg" if fmt == "JPEG" else "tif")
  assert image.shape == (4, 4, 3)
  np.testing.assert_allclose(image, 200 / 255, atol=4 / 255)


# Bad options: one line naming the option, before any file is read.


_OPTION_CASES = {
    "unknown_dataset": (dict(name="cifar"),
                        "unknown dataset 'cifar'; known: ["),
    "bad_split_embedded": (dict(split="val"), "split must be 'train', 'test' "
                           "or 'all', got 'val'"),
    "bad_split_mnist": (dict(name="mnist", split="val"),
                        "split must be one of ['test', 'train']"),
    "bad_split_cifar": (dict(name="cifar_batches", split="valid"),
                        "split must be 'train' or 'test', got 'valid'"),
    "limit_zero": (dict(limit=0),
                   "limit must be a positive integer or None, got 0"),
    "limit_negative": (dict(limit=-2),
                       "limit must be a positive integer or None, got -2"),
    "limit_string": (dict(limit="5"),
                     "limit must be a positive integer or None, got '5'"),
    "image_size_zero": (dict(image_size=0),
                        "image_size must be positive, got 0"),
    "image_size_negative": (dict(image_size=(8, -1)),
                            "image_size must be positive, got (8, -1)"),
    "image_size_string": (dict(image_size="32"), "image_size must be an int "
                          "or (height, width), got '32'"),
    "image_size_triple": (dict(image_size=(1, 2, 3)), "image_size must be an "
                          "int or (height, width), got (1, 2, 3)"),
    "channels_2": (dict(channels=2), "channels must be 1, 3 or None, got 2"),
    "unknown_option_mnist": (dict(name="mnist", labels="parity"),
                             "dataset 'mnist' has no option 'labels'; its "
                             "options: center_crop, num_classes, prefix"),
    "unknown_option_cifar10": (dict(name="cifar10", lables="folder"),
                               "dataset 'cifar10' has no option 'lables'; its "
                               "options: center_crop, class_names, label_fn, "
                               "labels, name, num_classes, order, start, "
                               "stop"),
    "unknown_options_embedded": (dict(foo=1, bar=2), "dataset 'embedded' has "
                                 "no option 'bar', 'foo'; its options: "
                                 "center_crop"),
    "no_data_dir": (dict(name="mnist"),
                    "data_dir is required for this dataset"),
    "data_dir_not_a_path": (dict(name="mnist", data_dir=3),
                            "data_dir must be a path, got 3"),
}


@pytest.mark.parametrize("kwargs,fragment", list(_OPTION_CASES.values()),
                         ids=list(_OPTION_CASES))
def test_bad_options(kwargs, fragment):
  kwargs = dict(kwargs)
  with pytest.raises(InputError) as info:
    data.load(kwargs.pop("name", "embedded"), **kwargs)
  message = str(info.value)
  assert "\n" not in message
  assert message.startswith(fragment), message


def test_bad_image_size_before_reading(tmp_path, monkeypatch):
  """``image_size`` is checked before the zip is opened."""
  monkeypatch.setattr(data.folder, "_open_tree", pytest.fail)
  with pytest.raises(InputError, match="image_size must be positive"):
    data.folder.load_image_folder(tmp_path, image_size=(0, 4))
