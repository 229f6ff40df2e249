"""Bad image folders and zips, bad pixel modes, bad options.

Each file case writes a tiny bad input to tmp_path; the error must be an
``InputError`` (or, for a missing path, a ``FileNotFoundError`` that is one
too), its message one line that starts with the file (``<zip>: member
<name>`` inside a zip) and names the problem (``data_fakes.check_names_file``).
idx and CIFAR batch files: ``test_data_errors_arrays.py``.
"""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from gitjax import data
from gitjax.errors import InputError
from tests import data_fakes as fakes

# Each case: tmp_path -> (call raising the error, message prefix, fragment).


def _zip_truncated_jpeg(tmp):
  jpeg = fakes.jpeg()
  path = fakes.write_zip(tmp / "cifar10_test_x.zip", {
      "test/airplane/0001.png": fakes.png(np.zeros((16, 16, 3), np.uint8)),
      "test/airplane/0002.jpg": jpeg[:len(jpeg) // 2]})
  return (lambda: data.load("cifar10", data_dir=tmp),
          f"{path}: member test/airplane/0002.jpg: ",
          "truncated or corrupt image (PIL: ")


def _zip_truncated_png(tmp):
  png = fakes.png(
      np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8))
  path = fakes.write_zip(tmp / "set.zip", {"cat/0.png": png[:len(png) // 2]})
  return (lambda: data.load("image_folder", data_dir=path),
          f"{path}: member cat/0.png: ",
          "truncated or corrupt image (PIL: image file is truncated)")


def _zip_text_as_png(tmp):
  path = fakes.write_zip(tmp / "set.zip", {"cat/0.png": b"just some text\n"})
  return (lambda: data.load("image_folder", data_dir=path),
          f"{path}: member cat/0.png: ",
          "not an image file PIL can read (unknown format)")


def _zip_empty_member(tmp):
  path = fakes.write_zip(tmp / "set.zip", {"cat/0.png": b""})
  return (lambda: data.load("image_folder", data_dir=path),
          f"{path}: member cat/0.png: ", "empty file (0 bytes)")


def _zip_bad_crc(tmp):
  path = fakes.write_zip(tmp / "set.zip", {"cat/0.png": fakes.png()},
                         zipfile.ZIP_STORED)
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
  path = fakes.write_zip(tmp / "set.zip",
                         {f"cat/{i}.png": fakes.png() for i in range(3)})
  path.write_bytes(path.read_bytes()[:-30])  # Cut into the central directory.
  return (lambda: data.load("image_folder", data_dir=path), f"{path}: ",
          "not a zip archive, or a truncated or corrupt one")


def _empty_zip_file(tmp):
  path = tmp / "celeba.zip"
  path.write_bytes(b"")
  return (lambda: data.load("celeba", data_dir=tmp), f"{path}: ",
          "empty file (0 bytes), expected a zip archive")


def _folder_text_as_png(tmp):
  fakes.write_tree(tmp, {"cat/0.png": fakes.png(),
                         "dog/0.png": b"<html>not found</html>"})
  return (lambda: data.load("image_folder", data_dir=tmp),
          f"{tmp / 'dog' / '0.png'}: ",
          "not an image file PIL can read (unknown format)")


def _folder_zero_byte_image(tmp):
  fakes.write_tree(tmp, {"cat/0.jpg": b""})
  return (lambda: data.load("image_folder", data_dir=tmp),
          f"{tmp / 'cat' / '0.jpg'}: ", "empty file (0 bytes), not an image")


def _folder_truncated_jpeg(tmp):
  jpeg = fakes.jpeg()
  fakes.write_tree(tmp, {"cat/0.jpg": jpeg[:200]})
  return (lambda: data.load("image_folder", data_dir=tmp),
          f"{tmp / 'cat' / '0.jpg'}: ",
          "truncated or corrupt image (PIL: Truncated File Read)")


def _folder_float_image(tmp):
  image = Image.fromarray(np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4))
  buffer = io.BytesIO()
  image.save(buffer, format="TIFF")
  fakes.write_tree(tmp, {"cat/0.tif": buffer.getvalue()})
  return (lambda: data.load("image_folder", data_dir=tmp),
          f"{tmp / 'cat' / '0.tif'}: ",
          "floating-point pixels (PIL mode 'F') have no fixed range")


def _folder_int32_image(tmp):
  image = Image.fromarray(np.full((4, 4), 100_000, np.int32))
  buffer = io.BytesIO()
  image.save(buffer, format="TIFF")
  fakes.write_tree(tmp, {"cat/0.tif": buffer.getvalue()})
  return (lambda: data.load("image_folder", data_dir=tmp),
          f"{tmp / 'cat' / '0.tif'}: ",
          "32-bit pixel values 100000..100000 outside 0..65535")


def _folder_mixed_sizes(tmp):
  fakes.write_tree(tmp, {
      "cat/0.png": fakes.png(),
      "dog/0.png": fakes.png(np.zeros((5, 4, 3), np.uint8))})
  return (lambda: data.load("image_folder", data_dir=tmp),
          f"{tmp / 'dog' / '0.png'}: ",
          "5x4 pixels, but cat/0.png is 4x4; pass image_size=")


def _folder_unreadable_file(tmp):
  fakes.write_tree(tmp, {"cat/0.png": fakes.png()})
  (tmp / "cat" / "1.png").symlink_to(tmp / "gone.png")  # Dangling.
  return (lambda: data.load("image_folder", data_dir=tmp),
          f"{tmp / 'cat' / '1.png'}: ", "broken symbolic link")


def _empty_folder(tmp):
  (tmp / "cat").mkdir()
  (tmp / "cat" / "notes.txt").write_text("no images here")
  return (lambda: data.load("image_folder", data_dir=tmp), f"{tmp}: ",
          "no images (.jpg, ")


def _zip_without_images(tmp):
  path = fakes.write_zip(tmp / "set.zip", {"readme.txt": b"hi"})
  return (lambda: data.load("image_folder", data_dir=path), f"{path}: ",
          "no images (.jpg, .jpeg, .png, .bmp, .gif, .webp, .ppm, .pgm, .tif, "
          ".tiff) in this zip")


def _missing_data_dir(tmp):
  return (lambda: data.load("image_folder", data_dir=tmp / "nowhere"),
          f"{tmp / 'nowhere'}: ", "no such file or folder (data_dir)")


def _missing_cifar10_zip(tmp):
  return (lambda: data.load("cifar10", data_dir=tmp, split="train"),
          f"{tmp}: ", "no file matching cifar10_train_*.zip")


FILE_CASES = [
    (_zip_truncated_jpeg, InputError),
    (_zip_truncated_png, InputError),
    (_zip_text_as_png, InputError),
    (_zip_empty_member, InputError),
    (_zip_bad_crc, InputError),
    (_not_a_zip, InputError),
    (_truncated_zip, InputError),
    (_empty_zip_file, InputError),
    (_folder_text_as_png, InputError),
    (_folder_zero_byte_image, InputError),
    (_folder_truncated_jpeg, InputError),
    (_folder_float_image, InputError),
    (_folder_int32_image, InputError),
    (_folder_mixed_sizes, InputError),
    (_folder_unreadable_file, FileNotFoundError),
    (_empty_folder, FileNotFoundError),
    (_zip_without_images, FileNotFoundError),
    (_missing_data_dir, FileNotFoundError),
    (_missing_cifar10_zip, FileNotFoundError),
]


@pytest.mark.parametrize("make,error", fakes.params(FILE_CASES))
def test_bad_file_names_it(tmp_path, make, error):
  fakes.check_names_file(make, error, tmp_path)


def test_cause_is_chained(tmp_path):
  fakes.check_cause(_zip_truncated_jpeg, OSError, tmp_path)  # PIL's own error.


def test_zip_checked_before_decoding(tmp_path, monkeypatch):
  """A corrupt archive fails on open: no image is decoded first."""
  call, _, _ = _truncated_zip(tmp_path)
  monkeypatch.setattr(data.folder, "_decode", pytest.fail)
  with pytest.raises(InputError, match="not a zip archive"):
    call()


# Pixel modes PIL can convert are converted, not refused.


def _load_one(tmp_path, blob, ext="png"):
  fakes.write_tree(tmp_path, {f"cat/0.{ext}": blob})
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
