"""Run directories: the one place that decides what a run may write.

The four launchers (``launch.attack``, ``launch.benchmark``,
``launch.train_inverter``, ``launch.train_prior``) open their workdir with
``open_run``. A workdir holds one run:

* ``config.json`` (and ``config.txt``), written first, once the checks pass;
* the run's outputs (``log.txt``, pictures, JSONL logs, checkpoints);
* a *final file* written last (``metrics.json`` for attacks and inverter
  training, ``results.json`` for benchmarks, ``final.json`` for priors):
  its presence means the run is finished.

``open_run`` checks before it writes anything, so a refused run leaves every
file byte-identical:

* a workdir that is a file, or a non-empty folder with no ``config.json``
  (not a gitjax run), is refused;
* a stored config that differs from the new one (outside the fields a kind
  may change on resume, e.g. ``log_every``) is refused, naming the fields;
* a finished run is never modified: started again with the same config, it
  returns a ``RunDir`` whose ``finished`` holds the stored final result, and
  the launcher returns that without writing.

All JSON writes are atomic (``report.write_json``); JSONL logs are appended
one whole line per write and ``trim_jsonl`` drops the records after the
step a resumed run restarts from (and any torn last line).
"""

import dataclasses
import json
import logging
import os
from typing import Any, Sequence

from gitjax import report
from gitjax.errors import InputError

# The file each kind writes last; its presence marks a finished run.
FINAL_FILES = {
    "attack": report.METRICS,
    "benchmark": "results.json",
    "train_inverter": report.METRICS,
    "train_prior": "final.json",
}


@dataclasses.dataclass(frozen=True)
class RunDir:
  """An opened run directory.

  Attributes:
    path: absolute workdir.
    kind: one of ``FINAL_FILES``.
    finished: the stored final result if the run had already finished (the
      caller must then return it and write nothing), else None.
    resumed: whether the workdir already held this run (unfinished).
  """
  path: str
  kind: str
  finished: Any = None
  resumed: bool = False

  @property
  def final_file(self) -> str:
    return FINAL_FILES[self.kind]

  def file(self, name: str) -> str:
    return os.path.join(self.path, name)

  def write_json(self, name: str, obj: Any) -> str:
    return report.write_json(self.path, name, obj)

  def finish(self, result: Any) -> str:
    """Writes the final file (atomically): the run is finished."""
    return report.write_json(self.path, self.final_file, result)

  def append_jsonl(self, name: str, record: Any) -> None:
    """Appends one record as one line (one ``write`` call)."""
    line = json.dumps(report.to_jsonable(record), allow_nan=False) + "\n"
    with open(self.file(name), "a", encoding="utf-8") as f:
      f.write(line)

  def read_jsonl(self, name: str) -> list[dict]:
    return read_jsonl(self.file(name))

  def trim_jsonl(self, name: str, step: int) -> None:
    """Keeps the records with ``step <= step`` (atomically rewritten)."""
    path = self.file(name)
    if not os.path.exists(path):
      return
    keep = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    report.write_text(path, "".join(
        json.dumps(r, allow_nan=False) + "\n" for r in keep))


def read_jsonl(path: str) -> list[dict]:
  """The records of a JSONL file; a torn last line (a kill) is dropped."""
  out = []
  with open(path, encoding="utf-8") as f:
    lines = [l for l in f if l.strip()]
  for i, line in enumerate(lines):
    try:
      out.append(json.loads(line))
    except json.JSONDecodeError as e:
      if i == len(lines) - 1:
        break  # Torn by a kill mid-write.
      raise InputError(f"{path}: line {i + 1} is not JSON ({e})") from e
  return out


def config_json(config: Any) -> Any:
  """The config as it is stored: plain JSON values (tuples become lists)."""
  return json.loads(report.json_dumps(config))


def config_diffs(old: Any, new: Any, mutable: Sequence[str] = ()
                 ) -> list[str]:
  """``field: old -> new`` for each differing field, outside ``mutable``
  (top-level names or dotted paths)."""
  diffs = []

  def walk(a, b, prefix):
    for k in sorted(set(a) | set(b)):
      name = f"{prefix}{k}"
      if name in mutable:
        continue
      va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
      if isinstance(va, dict) and isinstance(vb, dict):
        walk(va, vb, name + ".")
      elif va != vb:
        diffs.append(f"{name}: {va!r} -> {vb!r}")

  walk(old, new, "")
  return diffs


def _read_final(path: str, name: str) -> Any:
  try:
    return report.read_json(path, name)
  except (OSError, json.JSONDecodeError) as e:
    raise InputError(f"{os.path.join(path, name)}: the run's final file "
                     f"cannot be read ({e}); it was not modified") from e


def open_run(workdir: str | os.PathLike, config: Any, kind: str, *,
             mutable: Sequence[str] = (), log: bool = True) -> RunDir:
  """Checks ``workdir`` against ``config``; then writes the config.

  Args:
    workdir: the run directory (created if missing).
    config: the run's ConfigDict (or dict).
    kind: "attack", "benchmark", "train_inverter" or "train_prior".
    mutable: config fields (top-level names or dotted paths) that may change
      when an unfinished run is resumed (bookkeeping, never results).
    log: also send logging to ``<workdir>/log.txt`` (after the checks).

  Returns:
    A ``RunDir``; if its ``finished`` is not None, nothing was written.

  Raises:
    InputError: naming the workdir and the reason, before anything is
      written: the workdir is a file, or a non-empty folder that holds no
      gitjax run, or a run of a different config.
  """
  if kind not in FINAL_FILES:
    raise ValueError(f"unknown run kind {kind!r}; known: {list(FINAL_FILES)}")
  if log:
    report.close_log()  # A previous run's log must not get this one's lines.
  path = os.path.abspath(os.fspath(workdir))
  if os.path.exists(path) and not os.path.isdir(path):
    raise InputError(f"workdir {path} is a file, not a directory")
  new = config_json(config)
  stored = os.path.join(path, report.CONFIG)
  final = FINAL_FILES[kind]
  resumed, old = False, None
  if os.path.isdir(path) and os.listdir(path):
    if not os.path.exists(stored):
      raise InputError(
          f"workdir {path} is not empty and holds no gitjax run (no "
          f"{report.CONFIG}); use a new or empty directory")
    try:
      old = report.read_json(path, report.CONFIG)
    except (OSError, json.JSONDecodeError) as e:
      raise InputError(f"{stored}: cannot read the stored config ({e}); "
                       "the workdir was not modified") from e
    diffs = config_diffs(old, new, mutable)
    if diffs and not _has_outputs(path):
      logging.warning("workdir %s held only the config of a run that made "
                      "nothing; replacing it (%s)", path, "; ".join(diffs[:5]))
      diffs, old = [], None
    if diffs:
      more = f" and {len(diffs) - 5} more" if len(diffs) > 5 else ""
      raise InputError(
          f"workdir {path} holds a run of a different config "
          f"({'; '.join(diffs[:5])}{more}); nothing was written. Use another "
          "workdir, or remove this one deliberately")
    if os.path.exists(os.path.join(path, final)):
      logging.warning("workdir %s holds a finished run of this config; "
                      "nothing was written (results: %s)", path,
                      os.path.join(path, final))
      return RunDir(path, kind, finished=_read_final(path, final))
    resumed = True
  os.makedirs(path, exist_ok=True)
  if log:
    report.setup_logging(path)
  moved = config_diffs(old, new) if old is not None else []
  if moved:  # Only mutable fields (the others were checked above).
    logging.info("Resuming %s with changed bookkeeping fields: %s", path,
                 "; ".join(moved))
  report.write_config(path, config)
  return RunDir(path, kind, resumed=resumed)


# What a run writes before it makes anything: replaceable.
_STUB_FILES = frozenset({report.CONFIG, "config.txt", report.LOG})


def _has_outputs(path: str) -> bool:
  """Whether the workdir holds anything beyond a config, a log and empty
  folders (i.e. work that a different config must not touch)."""
  for name in os.listdir(path):
    full = os.path.join(path, name)
    if os.path.isdir(full) and not os.path.islink(full):
      if os.listdir(full):
        return True
    elif name not in _STUB_FILES:
      return True
  return False
