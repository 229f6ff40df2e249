"""Trained weights shipped inside the package, loaded by name.

``gitjax/weights/manifest.json`` is ``{"format": 1, "entries": {name:
entry}}``. An entry records what rebuilds the model and where the weights
came from::

  kind: "inverter", "generator" or "gaussian_prior"
  files: {"<name>.npz": sha256 hex}  (relative to the weights folder)
  config: the training config (dict); run_info: run_info.json or null
  step, data (what it was trained on), date (YYYY-MM-DD), metrics (dict),
  command (the training command), dtype ("float32" or "float16")

The weights of an entry are one ``<name>.npz`` (``np.savez_compressed``,
never pickled) whose keys are the '/'-joined paths of the parameter tree.
Every load checks the file's sha256 against the manifest first. Export with
``python -m launch.export_weights``; load with ``gitjax.loading.inverter``
or ``gitjax.loading.generator``, which accept a name wherever they accept a
workdir.
"""

import datetime
import hashlib
import io
import json
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import report
from gitjax.errors import InputError

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "weights")
MANIFEST = "manifest.json"
FORMAT = 1
KINDS = ("inverter", "generator", "gaussian_prior")
DTYPES = ("float32", "float16")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def _dir(directory: str | None) -> str:
  return os.fspath(directory) if directory is not None else WEIGHTS_DIR


def read_manifest(directory: str | None = None) -> dict:
  """The manifest of ``directory`` (default ``WEIGHTS_DIR``); empty if none."""
  path = os.path.join(_dir(directory), MANIFEST)
  if not os.path.exists(path):
    return {"format": FORMAT, "entries": {}}
  try:
    with open(path, encoding="utf-8") as f:
      manifest = json.load(f)
  except (OSError, ValueError) as e:
    raise InputError(f"{path} cannot be read ({e})") from e
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
    raise InputError(f"{path}: not a format {FORMAT} weights manifest")
  return manifest


def names(directory: str | None = None) -> list[str]:
  """The names of the shipped weights, sorted."""
  return sorted(read_manifest(directory)["entries"])


def entry(name: str, directory: str | None = None) -> dict:
  """The manifest entry of ``name``; InputError listing the known names."""
  entries = read_manifest(directory)["entries"]
  if name not in entries:
    raise InputError(f"unknown pretrained weights {name!r}; known: "
                     f"{', '.join(sorted(entries)) or '(none)'}")
  return entries[name]


def is_name(s: Any, directory: str | None = None) -> bool:
  """Whether ``s`` names shipped weights rather than a workdir.

  True for a string without a path separator that is not an existing
  directory and is a manifest name. Paths (and ``os.PathLike``) never are.
  """
  if not isinstance(s, str) or not s:
    return False
  if "/" in s or os.sep in s or (os.altsep and os.altsep in s):
    return False
  if os.path.isdir(s):
    return False
  return s in read_manifest(directory)["entries"]


def sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _file_path(directory: str, name: str, rel: str) -> str:
  if os.path.basename(rel) != rel or rel in ("", ".", ".."):
    raise InputError(f"pretrained weights {name!r}: bad file name {rel!r} "
                     "in the manifest (must be a plain file name)")
  return os.path.join(directory, rel)


def verify(name: str, directory: str | None = None) -> None:
  """Checks the sha256 of each file of ``name`` against the manifest.

  Raises:
    InputError: naming the file, the expected and the actual hash, if a
      file is missing or differs.
  """
  directory = _dir(directory)
  for rel, want in sorted(entry(name, directory)["files"].items()):
    path = _file_path(directory, name, rel)
    got = sha256(path) if os.path.isfile(path) else "(file missing)"
    if got != want:
      raise InputError(
          f"pretrained weights {name!r}: {path} has sha256 {got}, expected "
          f"{want}; the file is missing, corrupt or modified (reinstall "
          "gitjax or export the weights again)")


def fingerprint(name: str, directory: str | None = None) -> str:
  """Changes whenever the entry or its files change (a cache key)."""
  directory = _dir(directory)
  e = entry(name, directory)
  stats = []
  for rel in sorted(e["files"]):
    path = _file_path(directory, name, rel)
    st = os.stat(path) if os.path.exists(path) else None
    stats.append((rel, st and (st.st_mtime_ns, st.st_size)))
  return json.dumps([os.path.abspath(directory), e, stats], sort_keys=True)


def _key(path) -> str:
  for attr in ("key", "idx", "name"):
    if hasattr(path, attr):
      return str(getattr(path, attr))
  return str(path)


def flatten(tree) -> tuple[dict, Any]:
  """({'/'-joined path: leaf}, treedef); paths must be distinct."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
  flat = {}
  for path, leaf in leaves:
    k = "/".join(_key(p) for p in path)
    if k in flat:
      raise ValueError(f"two parameters share the path {k!r}")
    flat[k] = leaf
  return flat, treedef


def _to_store(x, dtype: str) -> np.ndarray:
  x = np.asarray(x)
  if jnp.issubdtype(x.dtype, jnp.floating):
    return x.astype(dtype)
  return x


def export(kind: str, name: str, params_tree, *, config, run_info, step: int,
           data: str, metrics, command: str, dtype: str = "float32",
           directory: str | None = None, replace: bool = False) -> dict:
  """Writes ``<name>.npz`` and adds ``name`` to the manifest (atomically).

  Floating leaves are stored as ``dtype``. Everything is checked before
  anything is written: a refused export modifies nothing.

  Returns:
    The new manifest entry.

  Raises:
    InputError: bad kind, name or dtype, or ``name`` exists and not
      ``replace``.
  """
  directory = _dir(directory)
  if kind not in KINDS:
    raise InputError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
  if not _NAME.match(name or ""):
    raise InputError(f"bad weights name {name!r}: use letters, digits, "
                     "'_', '-', '.' (starting with a letter or digit)")
  if dtype not in DTYPES:
    raise InputError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
  manifest = read_manifest(directory)
  if name in manifest["entries"] and not replace:
    raise InputError(f"pretrained weights {name!r} already exist in "
                     f"{os.path.join(directory, MANIFEST)}; pass replace=True "
                     "(--replace) to overwrite them")
  flat, _ = flatten(params_tree)
  buf = io.BytesIO()
  np.savez_compressed(buf, **{k: _to_store(v, dtype) for k, v in flat.items()})
  blob = buf.getvalue()
  rel = f"{name}.npz"
  new = dict(kind=kind, files={rel: hashlib.sha256(blob).hexdigest()},
             config=report.to_jsonable(config),
             run_info=report.to_jsonable(run_info), step=int(step),
             data=str(data), date=datetime.date.today().isoformat(),
             metrics=report.to_jsonable(metrics or {}), command=str(command),
             dtype=dtype)
  manifest["entries"][name] = new
  manifest["entries"] = dict(sorted(manifest["entries"].items()))
  report.write_bytes(os.path.join(directory, rel), blob)
  report.write_text(os.path.join(directory, MANIFEST),
                    report.json_dumps(manifest) + "\n")
  return new


def load_tree(name: str, like, directory: str | None = None):
  """The weights of ``name`` (verified) as a tree shaped like ``like``.

  ``like``'s leaves may be arrays or ``jax.ShapeDtypeStruct``; each loaded
  leaf is cast to the dtype of its ``like`` leaf.

  Raises:
    InputError: hash mismatch (``verify``), or the stored paths or shapes
      differ from ``like``'s.
  """
  directory = _dir(directory)
  verify(name, directory)
  files = [f for f in entry(name, directory)["files"] if f.endswith(".npz")]
  if len(files) != 1:
    raise InputError(f"pretrained weights {name!r}: expected one .npz file "
                     f"in the manifest, found {files}")
  want, treedef = flatten(like)
  path = _file_path(directory, name, files[0])
  with np.load(path, allow_pickle=False) as z:
    missing = sorted(set(want) - set(z.files))
    extra = sorted(set(z.files) - set(want))
    if missing or extra:
      raise InputError(
          f"pretrained weights {name!r} ({path}) do not fit the model: "
          f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
          f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}")
    leaves = []
    for k, spec in want.items():
      x = z[k]
      if tuple(x.shape) != tuple(spec.shape):
        raise InputError(
            f"pretrained weights {name!r} ({path}): {k} has shape "
            f"{tuple(x.shape)}, the model expects {tuple(spec.shape)}")
      leaves.append(jnp.asarray(x.astype(spec.dtype)))
  return jax.tree_util.tree_unflatten(treedef, leaves)
