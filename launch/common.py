"""What the four launchers share: flags, checked command lines, one-line errors.

* ``--config=FILE[:ARGS]`` and ``--config.FIELD=VALUE`` overrides, as in
  ml_collections, plus list fields (``--config.leak.defense='[{"name":
  "prune", "rate": 0.9}]'``; a tuple literal works too). The config file,
  its args and every overridden field are checked before absl parses the
  rest: an unknown field or a bad arg is one line that names it and the
  known ones.
* ``--workdir`` (required) and ``--multihost`` (``jax.distributed.initialize()``
  first).
* Bad input (``gitjax.errors.InputError``, a ``ValueError``, an ``OSError``
  such as a missing file, a ``CheckpointError``) is printed as one line,
  ``<launcher>: error: <message>``, with exit status 2. Set
  ``GITJAX_TRACEBACK=1`` to get the traceback instead.

``parse(argv, flag_values)`` is the same parsing on any ``FlagValues``; the
tests use it to run every command printed in the README and the configs.
"""

import ast
import importlib.util
import logging
import os
import sys
from typing import Any, Callable, NamedTuple

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from gitjax import checkpoint
from gitjax import xla_cpu
from gitjax.errors import InputError


class _ListParser(flags.ArgumentParser):
  """Parses a Python list or tuple literal (or one dict) into a list."""

  def parse(self, argument):
    if isinstance(argument, (list, tuple)):
      return list(argument)
    try:
      value = ast.literal_eval(argument)
    except (ValueError, SyntaxError) as e:
      raise ValueError(f"not a Python list literal: {argument!r} ({e})"
                       ) from None
    if isinstance(value, dict):
      return [value]
    if not isinstance(value, (list, tuple)):
      raise ValueError(f"expected a list literal, got {argument!r}")
    return list(value)

  def flag_type(self):
    return "list"


config_flags.register_flag_parser_for_type(list, _ListParser())


class Flags(NamedTuple):
  config: Any  # FlagHolder of the ConfigDict.
  workdir: Any
  multihost: Any
  resume_intact: Any  # None for launchers that do not resume.
  xla_cpu_defaults: Any = None  # None: on (flag holders built by hand).


def define_flags(config_help: str, *, resumable: bool = False,
                 flag_values: flags.FlagValues = flags.FLAGS,
                 sys_argv: list[str] | None = None) -> Flags:
  """Defines --config, --workdir, --multihost, --xla_cpu_defaults (and
  --resume_intact).

  ``sys_argv``: the command line the config overrides are read from
  (default ``sys.argv``; tests pass the argv they parse).
  """
  config = config_flags.DEFINE_config_file(
      "config", None, config_help, lock_config=True, flag_values=flag_values,
      sys_argv=sys_argv)
  workdir = flags.DEFINE_string("workdir", None, "Run directory.",
                                flag_values=flag_values)
  multihost = flags.DEFINE_bool(
      "multihost", False, "Call jax.distributed.initialize() first.",
      flag_values=flag_values)
  xla_cpu_defaults = flags.DEFINE_bool(
      "xla_cpu_defaults", True,
      "Set gitjax's measured XLA:CPU flags (gitjax.xla_cpu) before JAX "
      "starts; a flag already in XLA_FLAGS is kept as set there.",
      flag_values=flag_values)
  resume = None
  if resumable:
    resume = flags.DEFINE_bool(
        "resume_intact", False,
        "If the newest checkpoint is corrupt, resume from the newest intact "
        "one (the corrupt ones are moved to <workdir>/checkpoints_corrupt).",
        flag_values=flag_values)
  return Flags(config, workdir, multihost, resume, xla_cpu_defaults)


def _flag_value(argv, name: str) -> str | None:
  for i, a in enumerate(argv):
    if a.startswith(f"--{name}="):
      return a.split("=", 1)[1]
    if a == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def load_config_file(spec: str):
  """``FILE[:ARGS]`` -> the file's ``get_config(ARGS)``, or InputError."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise InputError(f"config file {path} not found")
  name = "_gitjax_config_" + os.path.basename(path)[:-3]
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except ImportError as e:
    raise InputError(f"{path}: cannot import ({e}); run from the repository "
                     "root") from e
  if not hasattr(module, "get_config"):
    raise InputError(f"{path} has no get_config()")
  try:
    return module.get_config(arg) if arg else module.get_config()
  except ValueError as e:
    raise InputError(f"{path}: {e}") from e


def _fields(node) -> list[str]:
  return sorted(node.keys()) if hasattr(node, "keys") else []


def check_overrides(config, argv) -> None:
  """Every ``--config.a.b`` on the command line names an existing field."""
  for a in argv:
    if not a.startswith(("--config.", "--noconfig.")):
      continue
    path = a.split("=", 1)[0].split("config.", 1)[1]
    node, parts = config, path.split(".")
    for depth, part in enumerate(parts):
      if not hasattr(node, "keys") or part not in node.keys():
        where = ".".join(["config"] + parts[:depth])
        raise InputError(
            f"unknown config field {'config.' + path!r}: {where} has no "
            f"field {part!r}; known: {', '.join(_fields(node)) or '(none)'}")
      node = node[part]


def parse(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS
          ) -> list[str]:
  """Parses argv into ``flag_values``; bad input raises InputError."""
  spec = _flag_value(argv[1:], "config")
  if spec is not None:
    check_overrides(load_config_file(spec), argv[1:])
  try:
    rest = flag_values(argv)
  except flags.Error as e:
    raise InputError(_one_line(str(e))) from e
  if flag_values["config"].value is None:
    raise InputError("--config is required")
  if not flag_values["workdir"].value:
    raise InputError("--workdir is required")
  return rest


def _one_line(text: str) -> str:
  return " ".join(text.split())


ONE_LINE_ERRORS = (ValueError, OSError, checkpoint.CheckpointError)


def _fail(message: str) -> None:
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  prog = spec.name if spec is not None else "gitjax"
  print(f"{prog}: error: {_one_line(message)}", file=sys.stderr)
  sys.exit(2)


def _show_traceback() -> bool:
  return os.environ.get("GITJAX_TRACEBACK", "") not in ("", "0")


def run(body: Callable[..., Any], holders: Flags) -> None:
  """``app.run`` of ``body(config, workdir[, resume="intact"])``."""

  def parser(argv):
    try:
      return parse(argv)
    except InputError as e:
      if _show_traceback():
        raise
      _fail(str(e))

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if holders.xla_cpu_defaults is None or holders.xla_cpu_defaults.value:
      logging.info("XLA:CPU flags added: %s", xla_cpu.configure())
    if holders.multihost.value:
      jax.distributed.initialize()  # Must precede any device access.
    kwargs = {}
    if holders.resume_intact is not None and holders.resume_intact.value:
      kwargs["resume"] = "intact"
    try:
      body(holders.config.value, holders.workdir.value, **kwargs)
    except ONE_LINE_ERRORS as e:
      if _show_traceback():
        raise
      logging.debug("Traceback of the error below:", exc_info=True)
      _fail(str(e) or type(e).__name__)

  app.run(main, flags_parser=parser)
