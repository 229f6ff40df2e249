"""Run directories: config and metrics JSON, image grids, plots, logs, progress.

One directory per run (the workdir) holds ``config.json`` and ``config.txt``,
``metrics.json``, ``log.txt`` and any PNGs. Writes are atomic (a temporary
file, then ``os.replace``), so a killed run never leaves half a JSON file.

JSON written here is strict (no ``NaN``/``Infinity`` tokens): a non-finite
float is written as ``null``, so null in a metric means "not a finite
number" (a diverged reconstruction gives NaN; PSNR is capped, see
``gitjax.metrics``). Arrays become lists, tuples lists, numpy scalars Python
numbers, ConfigDicts dicts; any other object is written as its ``str``.

Which files a run may write, and when, is decided by ``gitjax.rundir``
(config checks before any write, finished runs never modified); this module
only writes them.

Figures use matplotlib's object API (``matplotlib.figure.Figure``, saved by
the Agg canvas); pyplot and the global backend are never touched.
"""

import dataclasses
import io
import json
import logging
import math
import os
import pprint
import sys
import tempfile
import time
from typing import Any, Iterable, Mapping, Sequence

from absl import logging as absl_logging
import jax
import matplotlib.ticker
from matplotlib.figure import Figure
import numpy as np
import tqdm

METRICS = "metrics.json"
CONFIG = "config.json"
LOG = "log.txt"


def to_jsonable(obj: Any) -> Any:
  """A copy of obj made of dict/list/str/int/float/bool/None only.

  Non-finite floats become None (JSON null).
  """
  if hasattr(obj, "to_dict") and callable(obj.to_dict):  # ConfigDict.
    obj = obj.to_dict()
  if isinstance(obj, Mapping):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return to_jsonable(dataclasses.asdict(obj))
  if hasattr(obj, "_asdict"):  # NamedTuple.
    return to_jsonable(obj._asdict())
  if isinstance(obj, (list, tuple, set, frozenset)):
    return [to_jsonable(v) for v in obj]
  if isinstance(obj, (np.ndarray, jax.Array, np.generic)):
    return to_jsonable(np.asarray(obj).tolist())
  if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
    return obj
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else None
  return str(obj)


def write_bytes(path: str, data: bytes) -> None:
  """Writes data to path atomically (a temporary file, then os.replace)."""
  directory = os.path.dirname(path) or "."
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_",
                             suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text(path: str, text: str) -> None:
  """Writes text (UTF-8) to path atomically."""
  write_bytes(path, text.encode("utf-8"))


def save_figure(fig, path: str | os.PathLike, **kwargs) -> str:
  """Renders a figure to PNG in memory, then writes it atomically."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png", **kwargs)
  path = os.fspath(path)
  write_bytes(path, buf.getvalue())
  return path


def save_npz(path: str | os.PathLike, arrays: Mapping[str, Any]) -> str:
  """Writes named arrays as a compressed ``.npz`` atomically; returns the
  path. Numeric arrays only, so ``np.load`` reads it without pickle."""
  buf = io.BytesIO()
  np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
  path = os.fspath(path)
  write_bytes(path, buf.getvalue())
  return path


def write_json(workdir: str | os.PathLike, name: str, obj: Any) -> str:
  """Writes obj as strict JSON to ``<workdir>/<name>`` atomically.

  Returns the path. NaN and inf are written as null (see module docstring).
  """
  path = os.path.join(os.fspath(workdir), name)
  text = json_dumps(obj)
  write_text(path, text + "\n")
  return path


def json_dumps(obj: Any) -> str:
  return json.dumps(to_jsonable(obj), indent=2, allow_nan=False)


def read_json(workdir: str | os.PathLike, name: str) -> Any:
  """Reads ``<workdir>/<name>``; null stays None (it was NaN or inf)."""
  with open(os.path.join(os.fspath(workdir), name), encoding="utf-8") as f:
    return json.load(f)


def write_config(workdir: str | os.PathLike, config: Any) -> str:
  """Writes config.json and config.txt (the ConfigDict's own str)."""
  text = str(config) if hasattr(config, "to_dict") else pprint.pformat(
      to_jsonable(config), sort_dicts=False)
  write_text(os.path.join(os.fspath(workdir), "config.txt"), text + "\n")
  return write_json(workdir, CONFIG, config)


def write_metrics(workdir: str | os.PathLike, metrics: Mapping[str, Any],
                  name: str = METRICS) -> str:
  """Writes metrics (e.g. ``gitjax.metrics.score`` output) to metrics.json."""
  return write_json(workdir, name, metrics)


def _as_rgb01(x, value_range) -> np.ndarray:
  """[B, H, W] or [B, H, W, C] -> float [B, H, W, C] in [0, 1], C in {1, 3}."""
  x = np.asarray(x, np.float32)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f"grid rows must be [B, H, W] or [B, H, W, C] with C "
                     f"in (1, 3); got shape {x.shape}")
  lo, hi = value_range
  return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def save_grid(path: str | os.PathLike, rows: Sequence[Any],
              row_titles: Sequence[str] | None = None, *,
              image_titles: Sequence[Sequence[str] | None] | None = None,
              value_range: tuple[float, float] = (0.0, 1.0),
              max_cols: int = 16, cell_px: int = 96,
              dpi: int = 100) -> str:
  """Saves image rows (e.g. ground truth over reconstructions) as a PNG.

  Args:
    path: output .png path.
    rows: arrays [B, H, W, C] (or [B, H, W]) with the same B, H, W; C = 1
      is drawn in gray.
    row_titles: one label per row, drawn at the left.
    image_titles: per row, None or B captions (e.g. PSNR values), drawn
      below the images.
    value_range: the images' (min, max); values outside are clipped.
    max_cols: images per grid line; a larger B wraps onto further lines,
      each repeating all rows (so ground truth stays above its
      reconstruction).
    cell_px: width in pixels of one image; the height follows its aspect.
    dpi: resolution; the figure is sized so the PNG is the grid in pixels.

  Returns:
    The path written.
  """
  images = [_as_rgb01(r, value_range) for r in rows]
  if not images:
    raise ValueError("save_grid needs at least one row")
  shapes = {im.shape[:3] for im in images}
  if len(shapes) != 1:
    raise ValueError(f"grid rows must share [B, H, W]; got shapes "
                     f"{[im.shape for im in images]}")
  b, h, w = images[0].shape[:3]
  cols = min(b, max_cols)
  chunks = math.ceil(b / cols)
  cell_h = cell_px * h / w
  title_px = 14 if image_titles else 0
  left_px = 90 if row_titles else 0
  width = left_px + cols * cell_px
  lines = chunks * len(images)
  height = lines * (cell_h + title_px)
  fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
  for line in range(lines):
    chunk, r = divmod(line, len(images))
    top = line * (cell_h + title_px)  # Captions go below the images.
    for col in range(cols):
      i = chunk * cols + col
      if i >= b:
        break
      ax = fig.add_axes(((left_px + col * cell_px) / width,
                         1 - (top + cell_h) / height, cell_px / width,
                         cell_h / height))
      ax.set_axis_off()
      im = images[r][i]
      if im.shape[-1] == 1:
        ax.imshow(im[..., 0], cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
      else:
        ax.imshow(im, interpolation="nearest")
      if image_titles and image_titles[r] is not None:
        ax.text(0.5, -0.02, str(image_titles[r][i]), fontsize=7,
                ha="center", va="top", transform=ax.transAxes)
    if row_titles:
      fig.text(4 / width, 1 - (top + cell_h / 2) / height, row_titles[r],
               fontsize=8, va="center", ha="left")
  return save_figure(fig, path, dpi=dpi)


def plot_curves(path: str | os.PathLike, x: Sequence[float] | None,
                curves: Mapping[str, Sequence[float]], xlabel: str,
                ylabel: str, *, logx: bool = False, logy: bool = False,
                title: str | None = None) -> str:
  """Saves line plots of several curves over a shared x axis as a PNG.

  ``x`` None means 0, 1, 2, ...; NaN points (and None) are left as gaps.
  """
  fig = Figure(figsize=(6, 4), dpi=100)
  ax = fig.add_subplot()
  for name, ys in curves.items():
    ys = np.asarray([np.nan if v is None else v for v in ys], np.float64)
    xs = np.arange(len(ys)) if x is None else np.asarray(x, np.float64)
    if xs.shape != ys.shape:
      raise ValueError(f"curve {name!r} has {ys.shape[0]} points but x has "
                       f"{xs.shape[0]}")
    ax.plot(xs, ys, marker="o", markersize=3, label=name)
  if logx:
    ax.set_xscale("log")
    if x is not None and len(x) <= 20:  # Label the points, e.g. 1 2 4 8.
      ax.set_xticks(list(x), labels=[f"{v:g}" for v in x])
      ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  if logy:
    ax.set_yscale("log")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.grid(True, alpha=0.3)
  if len(curves) > 1:
    ax.legend()
  fig.tight_layout()
  return save_figure(fig, path)


def setup_logging(workdir: str | os.PathLike,
                  level: int = logging.INFO) -> logging.Handler:
  """Also writes Python/absl logging to ``<workdir>/log.txt``.

  Calling it again for the same workdir adds nothing; for another workdir it
  replaces the previous gitjax file handler (one run, one log). Lowers the
  root logger's level to ``level`` if it is higher (absl leaves WARNING
  until its flags are parsed), so INFO lines reach the file.
  """
  path = os.path.join(os.path.abspath(os.fspath(workdir)), LOG)
  root = logging.getLogger()
  for handler in list(root.handlers):
    if getattr(handler, "_gitjax_log", False):
      if handler.baseFilename == path:
        return handler
      root.removeHandler(handler)
      handler.close()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  handler = logging.FileHandler(path, encoding="utf-8")
  handler._gitjax_log = True  # pylint: disable=protected-access
  handler.setLevel(level)
  handler.setFormatter(absl_logging.PythonFormatter())
  root.addHandler(handler)
  if root.level > level or root.level == logging.NOTSET:
    root.setLevel(level)
  return handler


def close_log() -> None:
  """Detaches (and closes) the gitjax log file handler, if any."""
  root = logging.getLogger()
  for handler in list(root.handlers):
    if getattr(handler, "_gitjax_log", False):
      root.removeHandler(handler)
      handler.close()


def _fmt(v) -> str:
  v = float(v)
  return f"{v:.4g}"


class Progress:
  """A tqdm bar plus a log line every ``log_every`` steps.

  Usage::

    with report.progress(num_steps, "ig", log_every=100) as bar:
      for step in bar:
        state, loss = step_fn(state)
        bar.record(loss=loss)

  ``record`` keeps the latest values without converting them, so jax arrays
  are only fetched from the device when the bar or the log shows them.
  """

  def __init__(self, iterable_or_total: Iterable[Any] | int, desc: str, *,
               log_every: int = 0, disable: bool | None = None,
               mininterval: float | None = None, **tqdm_kwargs):
    if isinstance(iterable_or_total, int):
      iterable, total = range(iterable_or_total), iterable_or_total
    else:
      iterable = iterable_or_total
      total = tqdm_kwargs.pop("total", None)
      if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    if mininterval is None:
      mininterval = 0.1 if tty else 5.0  # Do not flood CI logs.
    if disable is None:
      disable = jax.process_index() != 0
    self.desc = desc
    self.log_every = log_every
    self.total = total
    self.step = 0
    self.latest: dict[str, Any] = {}
    self.mininterval = mininterval
    self._disabled = disable
    self._last_postfix = -math.inf
    self._start = time.monotonic()
    self._iterable = iterable
    self._closed = False
    # The bar is advanced by hand (not tqdm(iterable)) so that close() can
    # show the final values before the bar is drawn for the last time.
    self._bar = tqdm.tqdm(desc=desc, total=total, disable=disable,
                          mininterval=mininterval, dynamic_ncols=tty,
                          **tqdm_kwargs)

  def __iter__(self):
    try:
      for item in self._iterable:
        yield item
        self.advance(1)
    finally:
      self.close()

  def advance(self, n: int = 1) -> None:
    """Counts ``n`` finished steps (for loops that run steps in chunks)."""
    self.step += n
    self._bar.update(n)
    self._maybe_log()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def record(self, **scalars) -> None:
    """Sets the latest values (e.g. loss=...) shown in the bar's postfix."""
    self.latest.update(scalars)
    now = time.monotonic()
    if not self._disabled and now - self._last_postfix >= self.mininterval:
      self._last_postfix = now
      self._bar.set_postfix({k: _fmt(v) for k, v in self.latest.items()},
                            refresh=False)

  def _maybe_log(self):
    last = self.total is not None and self.step == self.total
    if self.log_every and (self.step % self.log_every == 0 or last):
      absl_logging.info("%s", self.summary())

  def summary(self) -> str:
    """``desc step s/total: k=v ... (r it/s, ETA t s)`` for the log."""
    elapsed = time.monotonic() - self._start
    rate = self.step / elapsed if elapsed > 0 else float("nan")
    of = f"/{self.total}" if self.total is not None else ""
    vals = " ".join(f"{k}={_fmt(v)}" for k, v in self.latest.items())
    eta = ""
    if self.total is not None and rate > 0:
      eta = f", ETA {(self.total - self.step) / rate:.0f} s"
    return f"{self.desc} step {self.step}{of}: {vals} ({rate:.3g} it/s{eta})"

  def close(self) -> None:
    """Closes the bar, showing the latest recorded values."""
    if self._closed:
      return
    self._closed = True
    if not self._disabled and self.latest:
      self._bar.set_postfix({k: _fmt(v) for k, v in self.latest.items()},
                            refresh=False)
    self._bar.close()


def progress(iterable_or_total: Iterable[Any] | int, desc: str,
             **kwargs) -> Progress:
  """A ``Progress`` bar over an iterable or ``range(total)``.

  Keyword arguments: ``log_every`` (log a summary line every N steps, 0 for
  never), ``disable`` (default: on all processes but 0), ``mininterval``
  (default 0.1 s on a TTY, 5 s otherwise) and any other tqdm argument.
  """
  return Progress(iterable_or_total, desc, **kwargs)
