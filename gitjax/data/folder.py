"""Image files in a folder tree or a zip: ``root/<class>/<image>``.

Zips are read with the standard ``zipfile`` module, member by member, without
extracting. A single top-level folder (``test/<class>/...``, or ``celebA/...``)
is looked through. Images are decoded with PIL and, when asked, center-cropped
and resized one at a time, so only the final ``[N, h, w, C]`` is held.

Every pixel mode PIL reads becomes 8-bit gray or RGB: palette (with or without
transparency), CMYK, YCbCr, LAB, HSV via PIL's conversions (alpha dropped);
16-bit gray (PIL modes ``I;16*`` and ``I``, which PIL fills with 0..65535)
scaled to 0..255. Floating-point images (mode ``F``) have no fixed range and
are refused. A file that cannot be read or decoded raises ``InputError``
naming it (``<zip>: member <name>: ...`` inside a zip).
"""

import contextlib
import glob
import io
import os
import zipfile

import numpy as np
from PIL import Image

from gitjax.data import cifar
from gitjax.data import dataset as dataset_lib
from gitjax.data import transforms
from gitjax.errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm",
                    ".pgm", ".tif", ".tiff")
_GRAY_MODES = ("1", "L", "LA")


def _is_image(path: str) -> bool:
  parts = path.split("/")
  return (path.lower().endswith(IMAGE_EXTENSIONS) and
          not any(p.startswith((".", "__MACOSX")) for p in parts))


def _open_zip(root: str) -> zipfile.ZipFile:
  """The archive ``root``, its table of contents read and checked."""
  if os.path.getsize(root) == 0:
    raise InputError(f"{root}: empty file (0 bytes), expected a zip archive "
                     "or a folder")
  try:
    return zipfile.ZipFile(root)
  except Exception as e:  # pylint: disable=broad-except
    # BadZipFile mostly; a corrupt table can also give OSError, ValueError...
    raise InputError(f"{root}: not a zip archive, or a truncated or corrupt "
                     f"one (zipfile: {dataset_lib.describe(e)})") from e


@contextlib.contextmanager
def _open_tree(root: str):
  """Yields (sorted relative '/'-paths of images, ``read``, ``where``).

  ``read(path) -> bytes`` raises ``InputError`` naming the file (the zip and
  the member, in a zip); ``where(path)`` is how errors name it.
  """
  if os.path.isfile(root):
    with _open_zip(root) as archive:

      def member(name):
        return f"{root}: member {name}"

      def read_member(name):
        try:
          return archive.read(name)
        except Exception as e:  # pylint: disable=broad-except
          # Bad CRC, zlib/bz2/lzma errors, EOF, encryption, unknown method.
          raise InputError(f"{member(name)}: cannot extract (zipfile: "
                           f"{dataset_lib.describe(e)})") from e

      images = sorted(n for n in archive.namelist() if _is_image(n))
      yield images, read_member, member
    return
  paths = []
  for folder, _, files in os.walk(root):
    rel = os.path.relpath(folder, root).replace(os.sep, "/")
    paths += [f if rel == "." else f"{rel}/{f}" for f in files]

  def file(path):
    return os.path.join(root, *path.split("/"))

  def read_file(path):
    return dataset_lib.read_bytes(file(path))

  yield sorted(p for p in paths if _is_image(p)), read_file, file


def _strip_top(paths: list[str], split: str,
               root: str) -> list[tuple[str, str]]:
  """Drops a single top folder, or picks the ``split`` one of several.

  Returns:
    ``(path in the tree, path below the top folder)`` pairs.
  """
  if not paths or min(p.count("/") for p in paths) < 2:
    return [(p, p) for p in paths]  # Already <class>/<file> or <file>.
  tops = sorted({p.split("/", 1)[0] for p in paths})
  if len(tops) > 1:
    if split not in tops:
      raise InputError(f"{root}: several top folders {tops} and none named "
                       f"{split!r}")
    paths = [p for p in paths if p.split("/", 1)[0] == split]
  return [(p, p.split("/", 1)[1]) for p in paths]


def _interleave(groups: list[list[int]]) -> list[int]:
  """Round-robin over groups: first of each, then second of each, ..."""
  longest = max((len(g) for g in groups), default=0)
  return [g[i] for i in range(longest) for g in groups if i < len(g)]


def _folder_labels(entries, class_names, order, root):
  """Order and labels of ``entries`` from their class folder."""
  classes = [rel.split("/", 1)[0] if "/" in rel else None for _, rel in entries]
  if None in classes:
    raise InputError(f"{root}: images outside class folders, e.g. "
                     f"{entries[classes.index(None)][0]}; pass labels=...")
  present = sorted(set(classes))
  names = tuple(class_names) if class_names is not None else tuple(present)
  if not set(names) & set(present):  # Some may be absent, not all.
    raise InputError(f"{root}: no folders for classes {list(names)}; found "
                     f"{present}")
  groups = [[i for i, c in enumerate(classes) if c == name] for name in names]
  if order == "interleave":
    keep = _interleave(groups)
  elif order == "sorted":
    keep = [i for g in groups for i in g]
  else:
    raise InputError(f"order must be 'interleave' or 'sorted', got {order!r}")
  lookup = {name: i for i, name in enumerate(names)}
  return keep, [lookup[classes[i]] for i in keep], names


def _to_8bit(image: Image.Image, where: str) -> Image.Image:
  """A decoded image as 8-bit "L" (gray modes) or "RGB" (all others)."""
  mode = image.mode
  if mode in _GRAY_MODES:
    return image.convert("L")
  if mode == "I" or mode.startswith("I;16"):
    # 16-bit gray: PNG, TIFF ("I;16", "I;16B"), PGM ("I", 0..65535).
    array = np.asarray(image)
    low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
    if low < 0 or high > 65535:
      raise InputError(f"{where}: 32-bit pixel values {low}..{high} outside "
                       "0..65535; save it with 8 or 16 bits per channel")
    array = (array.astype(np.uint32) * 255 + 32767) // 65535  # Rounded.
    return Image.fromarray(array.astype(np.uint8))
  if mode == "F":
    raise InputError(f"{where}: floating-point pixels (PIL mode 'F') have no "
                     "fixed range; save it with 8 or 16 bits per channel")
  if mode == "P" and "transparency" in image.info:
    # The palette's colours, alpha dropped, as "RGB" would give, but without
    # PIL's warning for a transparency given as bytes.
    image = image.convert("RGBA")
  try:
    return image.convert("RGB")
  except ValueError as e:
    raise InputError(f"{where}: unsupported pixel mode {mode!r} (PIL: "
                     f"{dataset_lib.describe(e)})") from e


def _corrupt(where: str, error: Exception) -> InputError:
  return InputError(f"{where}: truncated or corrupt image (PIL: "
                    f"{dataset_lib.describe(error)})")


def _decode(data: bytes, size, center_crop: bool,
            where: str = "<bytes>") -> np.ndarray:
  """One image as uint8 ``[h, w, 1 or 3]``; errors start with ``where``."""
  if not data:
    raise InputError(f"{where}: empty file (0 bytes), not an image")
  try:
    image = Image.open(io.BytesIO(data))
  except Image.UnidentifiedImageError as e:
    raise InputError(f"{where}: not an image file PIL can read (unknown "
                     "format)") from e
  except Exception as e:  # pylint: disable=broad-except
    # OSError "Truncated File Read", SyntaxError, a decompression bomb...
    raise _corrupt(where, e) from e
  with image:
    try:
      image.load()
    except Exception as e:  # pylint: disable=broad-except
      # OSError "image file is truncated", "broken data stream", ...
      raise _corrupt(where, e) from e
    image = _to_8bit(image, where)
  if center_crop and image.width != image.height:
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
  if size is not None and image.size != size[::-1]:
    # PIL widens the filter when shrinking: antialiased, like resize().
    image = image.resize(size[::-1], Image.Resampling.BILINEAR)
  array = np.asarray(image, np.uint8)
  return array[..., None] if array.ndim == 2 else array


def _stack(images: list[np.ndarray]) -> np.ndarray:
  """``[N, H, W, C]`` of same-sized images, gray made RGB if mixed."""
  if any(i.shape[-1] == 3 for i in images):
    images = [np.repeat(i, 3, -1) if i.shape[-1] == 1 else i for i in images]
  return np.stack(images)


def load_image_folder(data_dir=None, split="test", *, limit=None,
                      image_size=None, center_crop=False, class_names=None,
                      labels="folder", label_fn=None, num_classes=None,
                      start=None, stop=None, order="interleave",
                      name=None) -> dataset_lib.Dataset:
  """Images of a folder tree or zip, labelled by folder or by a fixed rule.

  Args:
    data_dir: a directory or ``.zip`` holding ``<class>/<image>``, optionally
      under one top folder; with several top folders, the one named ``split``.
    split: the top folder to read when there are several; else ignored.
    limit: decode only the first ``limit`` selected images.
    image_size: ``s`` or ``(h, w)``: each image is resized on decoding.
    center_crop: crop non-square images to their central square first.
    class_names: with ``labels="folder"``, the class folders to read, in label
      order (default: all folders, sorted by name); other folders are skipped
      and named classes may lack a folder, but not all of them.
    labels: "folder" (label = class folder); "parity" or "modulo" (label =
      position in sorted file order modulo ``num_classes``, default 2);
      "constant" (all 0).
    label_fn: ``(path, index) -> int`` label of the image at ``path`` (its
      path inside the tree) and position ``index`` in sorted file order;
      overrides ``labels``.
    num_classes: number of classes for the non-folder labellings.
    start: first selected position (0-based) in the image order.
    stop: end of the selection (exclusive); CelebA's files 9001-10000 are
      ``start=9000, stop=10000``.
    order: with folder labels, "interleave" (round-robin over classes, so any
      prefix is balanced) or "sorted" (class by class).
    name: dataset name (default: the file or folder name).

  Returns:
    ``Dataset`` with images ``[N, H, W, C]``, C = 1 if all images are gray.
  """
  root = dataset_lib.require_path(data_dir)
  name = name or os.path.splitext(os.path.basename(root.rstrip("/")))[0]
  size = None if image_size is None else transforms.as_size(image_size)
  with _open_tree(root) as (paths, read, where):
    entries = _strip_top(paths, split, root)
    if not entries:
      raise dataset_lib.DataNotFoundError(
          f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this "
          f"{'zip' if os.path.isfile(root) else 'folder'}")
    if label_fn is None and labels == "folder":
      keep, ys, names = _folder_labels(entries, class_names, order, root)
    else:
      keep = list(range(len(entries)))
      if label_fn is not None:
        ys = [int(label_fn(entries[i][1], i)) for i in keep]
      elif labels in ("parity", "modulo"):
        ys = [i % (num_classes or 2) for i in keep]
      elif labels == "constant":
        ys = [0] * len(keep)
      else:
        raise InputError(f"unknown labels {labels!r}; use 'folder', "
                         "'parity', 'modulo', 'constant' or label_fn")
      names = class_names
      if names is None and labels == "parity" and num_classes in (None, 2):
        names = ("even", "odd")
    sel = slice(start, stop)
    keep, ys = keep[sel][:limit], ys[sel][:limit]
    if not keep:
      raise InputError(f"{root}: no images selected by start={start}, "
                       f"stop={stop}, limit={limit} (of {len(entries)})")
    images = []
    for i in keep:
      path = entries[i][0]
      image = _decode(read(path), size, center_crop, where(path))
      if images and image.shape[:2] != images[0].shape[:2]:
        # Said at the first odd one out, not after decoding them all.
        first = entries[keep[0]][0]
        raise InputError(
            f"{where(path)}: {image.shape[0]}x"
            f"{image.shape[1]} pixels, but {first} is {images[0].shape[0]}x"
            f"{images[0].shape[1]}; pass image_size=... to resize them all")
      images.append(image)
  if names is None and num_classes is None and labels == "constant":
    num_classes = 1
  return dataset_lib.from_arrays(
      _stack(images), np.asarray(ys), class_names=names,
      num_classes=num_classes, name=f"{name}/{split}")


def _find_zip(data_dir: str, pattern: str) -> str:
  """``data_dir`` if a file, else the first ``pattern`` match inside it."""
  if os.path.isfile(data_dir):
    return data_dir
  found = sorted(glob.glob(os.path.join(data_dir, pattern)))
  if not found:
    raise dataset_lib.DataNotFoundError(
        f"{data_dir}: no file matching {pattern}")
  return found[0]


def load_cifar10(data_dir=None, split="test", **kw) -> dataset_lib.Dataset:
  """CIFAR-10 as image files: ``cifar10_{split}_*.zip`` in ``data_dir``.

  ``data_dir`` may also be the zip itself, or a folder with a ``{split}/``
  image folder. Labels follow CIFAR-10's class order (airplane=0 ...
  truck=9). Other keywords go to ``load_image_folder``.
  """
  data_dir = dataset_lib.require_path(data_dir)
  split_dir = os.path.join(data_dir, split)
  if os.path.isdir(split_dir) and not glob.glob(
      os.path.join(data_dir, f"cifar10_{split}_*.zip")):
    root = split_dir
  else:
    root = _find_zip(data_dir, f"cifar10_{split}_*.zip")
  kw.setdefault("class_names", cifar.CIFAR10_CLASSES)
  kw.setdefault("name", "cifar10")
  return load_image_folder(root, split, **kw)


def load_celeba(data_dir=None, split="all", *, center_crop=True,
                labels="parity", num_classes=2,
                **kw) -> dataset_lib.Dataset:
  """CelebA images from a zip (``*.zip`` in ``data_dir``) or image folder.

  No attribute file ships with the evaluation copy, so the default task is a
  fixed 2-class labelling: label = position in sorted file order % 2 (pass
  ``label_fn`` for another). Pick train and test images with ``start`` and
  ``stop``; ``split`` is ignored. Images are center-cropped to a square by
  default. Other keywords go to ``load_image_folder``.
  """
  data_dir = dataset_lib.require_path(data_dir)
  has_zip = os.path.isdir(data_dir) and glob.glob(
      os.path.join(data_dir, "*.zip"))
  root = _find_zip(data_dir, "*.zip") if has_zip or os.path.isfile(
      data_dir) else data_dir
  kw.setdefault("name", "celeba")
  return load_image_folder(root, split, center_crop=center_crop,
                           labels=labels, num_classes=num_classes, **kw)
