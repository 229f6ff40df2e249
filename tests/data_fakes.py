"""Tiny bad data files for the data-error tests, and their one check."""

import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from gitjax.errors import InputError


def png(array=None, **save):
  if array is None:
    array = np.full((4, 4, 3), 100, np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=save.pop("format", "PNG"), **save)
  return buffer.getvalue()


def jpeg(size=16):
  pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), np.uint8)
  return png(pixels, format="JPEG")


def write_zip(path, members, compression=zipfile.ZIP_DEFLATED):
  with zipfile.ZipFile(path, "w", compression=compression) as archive:
    for name, blob in members.items():
      archive.writestr(name, blob)
  return path


def write_tree(root, files):
  for rel, blob in files.items():
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
  return root


def idx(array, code=0x08):
  array = np.asarray(array)
  header = bytes([0, 0, code, array.ndim])
  return header + np.asarray(array.shape, ">u4").tobytes() + array.astype(
      ">u1").tobytes()


def write_mnist(tmp_path, images=None, labels=None, ext=""):
  """Writes t10k images and labels (bytes), returns the folder."""
  if images is None:
    images = idx(np.zeros((2, 3, 3), np.uint8))
  if labels is None:
    labels = idx(np.array([1, 2], np.uint8))
  (tmp_path / f"t10k-images-idx3-ubyte{ext}").write_bytes(images)
  (tmp_path / f"t10k-labels-idx1-ubyte{ext}").write_bytes(labels)
  return tmp_path


def cifar_dict(n=2, labels=None):
  flat = np.zeros((n, 3072), np.uint8)
  return {b"batch_label": b"b", b"labels": list(range(n)) if labels is None
          else labels, b"data": flat}


class Evil:

  def __reduce__(self):
    return os.system, ("echo pwned",)


def check_names_file(make, error, tmp_path):
  """``make(tmp_path)`` -> (call, prefix, fragment): the call raises
  ``error``, an ``InputError`` too, whose message is one line that starts
  with ``prefix`` (the file, ``<zip>: member <name>`` inside a zip) and
  holds ``fragment``."""
  call, prefix, fragment = make(tmp_path)
  with pytest.raises(error) as info:
    call()
  message = str(info.value)
  assert isinstance(info.value, InputError)  # Missing files too.
  assert "\n" not in message and message == message.strip()
  assert message.startswith(prefix), message
  assert fragment in message, message
  assert "object at 0x" not in message  # No reprs of in-memory buffers.


def params(cases):
  """``(make, error)`` pairs as pytest params named after ``make``."""
  return [pytest.param(m, e, id=m.__name__.lstrip("_")) for m, e in cases]


def check_cause(make, cause, tmp_path):
  """The ``InputError`` of ``make``'s call chains the reader's ``cause``."""
  call, _, _ = make(tmp_path)
  with pytest.raises(InputError) as info:
    call()
  assert isinstance(info.value.__cause__, cause)
