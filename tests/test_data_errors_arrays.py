"""Bad idx files and CIFAR batches: one-line errors that name the file.

As ``test_data_errors.py``: each case writes a tiny bad input to tmp_path
and ``data_fakes.check_names_file`` checks the error.
"""

import gzip
import pickle

import numpy as np
import pytest

from gitjax import data
from gitjax.errors import InputError
from tests import data_fakes as fakes

# Each case: tmp_path -> (call raising the error, message prefix, fragment).


def _idx_truncated_gz(tmp):
  blob = gzip.compress(fakes.idx(np.zeros((2, 3, 3), np.uint8)))
  folder = fakes.write_mnist(
      tmp, images=blob[:len(blob) - 12], ext=".gz",
      labels=gzip.compress(fakes.idx(np.array([1, 2], np.uint8))))
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte.gz'}: ",
          "truncated or corrupt gzip data (gzip: Compressed file ended before "
          "the end-of-stream marker was reached)")


def _idx_gz_not_gzip(tmp):
  folder = fakes.write_mnist(tmp, ext=".gz")  # Plain idx bytes, named .gz.
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-labels-idx1-ubyte.gz'}: ",
          "named .gz but not gzip data: starts with 0x0000, not the gzip "
          "magic 0x1f8b")


def _idx_gz_zero_bytes(tmp):
  folder = fakes.write_mnist(tmp, images=b"", labels=b"", ext=".gz")
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-labels-idx1-ubyte.gz'}: ",
          "named .gz but not gzip data: empty file (0 bytes)")


def _idx_zero_bytes(tmp):
  folder = fakes.write_mnist(tmp, images=b"")
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte'}: ",
          "empty file (0 bytes), too short for an idx file")


def _idx_header_claims_more(tmp):
  folder = fakes.write_mnist(
      tmp, images=fakes.idx(np.zeros((2, 3, 3), np.uint8))[:-5])
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte'}: ",
          "header says (2, 3, 3) (18 bytes of data) but the file has 13 "
          "(truncated)")


def _idx_gz_header_claims_more(tmp):
  blob = gzip.compress(fakes.idx(np.zeros((2, 3, 3), np.uint8))[:-5])
  folder = fakes.write_mnist(
      tmp, images=blob, ext=".gz",
      labels=gzip.compress(fakes.idx(np.array([1, 2], np.uint8))))
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte.gz'}: ",
          "header says (2, 3, 3) (18 bytes of data) but the file has 13")


def _idx_truncated_header(tmp):
  folder = fakes.write_mnist(
      tmp, images=fakes.idx(np.zeros((2, 3, 3), np.uint8))[:9])
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte'}: ",
          "truncated idx header (9 of 16 bytes)")


def _idx_gzip_without_gz_name(tmp):
  folder = fakes.write_mnist(
      tmp, images=gzip.compress(fakes.idx(np.zeros((2, 3, 3)))))
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte'}: ",
          "gzip-compressed data read as a plain idx file")


def _idx_not_idx(tmp):
  folder = fakes.write_mnist(tmp, labels=b"<html>404</html>")
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-labels-idx1-ubyte'}: ", "bad idx magic number")


def _idx_swapped_files(tmp):
  folder = fakes.write_mnist(tmp, images=fakes.idx(np.array([1, 2], np.uint8)))
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte'}: ",
          "has 1 dims, expected 3")


def _idx_count_mismatch(tmp):
  folder = fakes.write_mnist(
      tmp, labels=fakes.idx(np.array([1, 2, 3], np.uint8)))
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-images-idx3-ubyte'}: ",
          f"2 images but {folder / 't10k-labels-idx1-ubyte'} has 3 labels")


def _idx_label_out_of_range(tmp):
  folder = fakes.write_mnist(tmp, labels=fakes.idx(np.array([1, 12], np.uint8)))
  return (lambda: data.load("mnist", data_dir=folder),
          f"{folder / 't10k-labels-idx1-ubyte'}: ",
          "labels 1..12 outside [0, 10)")


def _idx_data_dir_is_file(tmp):
  path = tmp / "mnist.tar"
  path.write_bytes(b"x")
  return (lambda: data.load("mnist", data_dir=path), f"{path}: ",
          "not a folder")


def _idx_read_idx_corrupt_gz(tmp):
  blob = bytearray(gzip.compress(fakes.idx(np.arange(200, dtype=np.uint8))))
  blob[-8] ^= 0xFF  # The CRC.
  path = tmp / "x.gz"
  path.write_bytes(bytes(blob))
  return (lambda: data.read_idx(str(path)), f"{path}: ",
          "truncated or corrupt gzip data (gzip: CRC check failed")


# CIFAR batches.


def _cifar_truncated_pickle(tmp):
  blob = pickle.dumps(fakes.cifar_dict())
  (tmp / "test_batch").write_bytes(blob[:len(blob) // 2])
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'test_batch'}: ",
          "truncated or corrupt pickle, expected a CIFAR batch")


def _cifar_zero_byte_pickle(tmp):
  folder = tmp / "cifar-10-batches-py"
  folder.mkdir()
  (folder / "data_batch_1").write_bytes(pickle.dumps(fakes.cifar_dict()))
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
  batch = fakes.cifar_dict()
  batch[b"data"] = np.zeros((2, 100), np.uint8)
  (tmp / "test_batch").write_bytes(pickle.dumps(batch))
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'test_batch'}: ", "data has shape (2, 100)")


def _cifar_label_count(tmp):
  (tmp / "test_batch").write_bytes(pickle.dumps(fakes.cifar_dict(labels=[1])))
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'test_batch'}: ",
          "'labels' must be 2 integers, got int64 (1,)")


def _cifar_label_out_of_range(tmp):
  (tmp / "test_batch").write_bytes(
      pickle.dumps(fakes.cifar_dict(labels=[3, 10])))
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'test_batch'}: ", "labels 3..10 outside [0, 10)")


def _cifar_refused_global(tmp):
  (tmp / "test_batch").write_bytes(pickle.dumps({b"data": fakes.Evil()}))
  return (lambda: data.load("cifar_batches", data_dir=tmp),
          f"{tmp / 'test_batch'}: ", "refusing to unpickle global ")


def _cifar_corrupt_meta(tmp):
  (tmp / "test_batch").write_bytes(pickle.dumps(fakes.cifar_dict()))
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
    (_idx_truncated_gz, InputError),
    (_idx_gz_not_gzip, InputError),
    (_idx_gz_zero_bytes, InputError),
    (_idx_zero_bytes, InputError),
    (_idx_header_claims_more, InputError),
    (_idx_gz_header_claims_more, InputError),
    (_idx_truncated_header, InputError),
    (_idx_gzip_without_gz_name, InputError),
    (_idx_not_idx, InputError),
    (_idx_swapped_files, InputError),
    (_idx_count_mismatch, InputError),
    (_idx_label_out_of_range, InputError),
    (_idx_data_dir_is_file, InputError),
    (_idx_read_idx_corrupt_gz, InputError),
    (_cifar_truncated_pickle, pickle.UnpicklingError),
    (_cifar_zero_byte_pickle, pickle.UnpicklingError),
    (_cifar_text_pickle, pickle.UnpicklingError),
    (_cifar_not_a_dict, InputError),
    (_cifar_bad_shape, InputError),
    (_cifar_label_count, InputError),
    (_cifar_label_out_of_range, InputError),
    (_cifar_refused_global, pickle.UnpicklingError),
    (_cifar_corrupt_meta, pickle.UnpicklingError),
    (_cifar_binary_meta_not_text, InputError),
    (_cifar_binary_truncated, InputError),
    (_cifar_binary_zero_bytes, InputError),
    (_cifar_binary_label_out_of_range, InputError),
    (_cifar_batch_is_folder, InputError),
    (_cifar_no_batches, FileNotFoundError),
    (_cifar_data_dir_is_file, InputError),
]


@pytest.mark.parametrize("make,error", fakes.params(FILE_CASES))
def test_bad_file_names_it(tmp_path, make, error):
  fakes.check_names_file(make, error, tmp_path)


def test_cause_is_chained(tmp_path):
  fakes.check_cause(_idx_truncated_gz, EOFError, tmp_path)


def test_binary_batches_sized_before_reading(tmp_path, monkeypatch):
  """Every binary batch's size is checked before the first is read."""
  call, _, _ = _cifar_binary_truncated(tmp_path)
  monkeypatch.setattr(data.cifar, "_read_binary_batch", pytest.fail)
  with pytest.raises(InputError, match="data_batch_2.bin"):
    call()
