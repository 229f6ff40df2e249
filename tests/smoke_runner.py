"""Finds every printed command and runs one source's commands in smoke mode.

``tests/test_commands.py`` runs each source (README.md or one config file)
in its own process, ``python -m tests.smoke_runner SOURCE ROOT``, so that a
crash or the memory of one source's programs never reaches another's. In
smoke mode a command keeps its launcher and config file but runs the
config's ``smoke=True`` (tiny embedded data; each config's smoke budget
ignores sizes such as ``steps``): paths to real data and budgets are dropped
and ``/tmp/gitjax/`` maps to ROOT.
"""

import glob
import json
import os
import re
import shlex
import shutil
import sys

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHERS = ("launch.attack", "launch.benchmark", "launch.train_inverter",
             "launch.train_prior")
# Arguments a smoke run drops: real data and budgets.
DROPPED = ("data_dir=", "budget=", "cpu=")


def _commands_in(text: str, source: str) -> list[tuple[str, str]]:
  text = re.sub(r"\\\n\s*", " ", text)  # Join continued lines.
  out = []
  for line in text.splitlines():
    if "python -m launch." not in line:
      continue
    cmd = line[line.index("python -m launch."):].split(" && ")[0].strip()
    out.append((source, cmd))
  return out


def all_commands() -> list[tuple[str, str]]:
  """(source, command) for every command in README.md's bash blocks and in
  every config file's docstring."""
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  cmds = []
  for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
    cmds += _commands_in(block, "README.md")
  for path in sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.py"),
                               recursive=True)):
    with open(path, encoding="utf-8") as f:
      src = f.read()
    doc = re.match(r'\s*r?"""(.*?)"""', src, flags=re.S)
    if doc:
      cmds += _commands_in(doc.group(1), os.path.relpath(path, ROOT))
  return cmds


def split_command(cmd: str, workdir: str) -> tuple[str, list[str]]:
  """(launcher, argv) with the command's --workdir replaced by ``workdir``."""
  parts = shlex.split(cmd)
  assert parts[:2] == ["python", "-m"], cmd
  launcher = parts[2]
  argv = [launcher] + [a for a in parts[3:] if not a.startswith("--workdir")]
  return launcher, argv + [f"--workdir={workdir}"]


def parse(launcher: str, argv: list[str]):
  """(config, workdir) exactly as the launcher parses ``argv``."""
  from launch import common  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  holders = common.define_flags(
      "config", resumable=launcher.startswith("launch.train_"),
      flag_values=fv, sys_argv=argv)
  common.parse(argv, fv)
  return holders.config.value, holders.workdir.value


def smoke_argv(argv: list[str], root: str) -> list[str]:
  """Smoke mode on, real data and budgets dropped, /tmp/gitjax/ under root."""
  out = []
  for a in argv:
    a = a.replace("/tmp/gitjax/", root + "/")
    if a.startswith("--config="):
      path, _, args = a.split("=", 1)[1].partition(":")
      keep = [kv for kv in args.split(",") if kv and
              not kv.startswith(DROPPED) and not _missing_dir(kv)]
      a = f"--config={path}:" + ",".join(keep + ["smoke=True"])
    out.append(a)
  return out


def _missing_dir(kv: str) -> bool:
  """A model path (git_dir=..., generator_dir=...) that no earlier command
  of the source made: smoke mode trains its own instead."""
  k, _, v = kv.partition("=")
  return k.endswith("_dir") and not os.path.exists(v)


def _map_paths(node, root: str) -> None:
  """Default paths under /tmp/gitjax/ (a prior's workdir) move under root."""
  for k in list(node.keys()):
    v = node[k]
    if hasattr(v, "keys"):
      _map_paths(v, root)
    elif isinstance(v, str) and v.startswith("/tmp/gitjax/"):
      node[k] = v.replace("/tmp/gitjax/", root + "/")


def _flag(parts: list[str], name: str) -> str | None:
  for p in parts:
    if p.startswith(name + "="):
      return p.split("=", 1)[1]
  return None


def run_source(source: str, root: str) -> None:
  """Runs the source's commands in order: a prior or inverter trained by one
  is what the next one loads. A command whose smoke config was already run
  under ``root`` (by any source, recorded in ``root/done.json``) is copied,
  not run again."""
  from gitjax import experiments  # pylint: disable=g-import-not-at-top
  from gitjax import train_inverter  # pylint: disable=g-import-not-at-top
  from gitjax import train_prior  # pylint: disable=g-import-not-at-top
  bodies = {
      "launch.attack": experiments.run_attack,
      "launch.benchmark": experiments.run_benchmark,
      "launch.train_inverter": train_inverter.train_and_evaluate,
      "launch.train_prior": train_prior.train_and_evaluate,
  }
  done_file = os.path.join(root, "done.json")
  done = {}
  if os.path.exists(done_file):
    with open(done_file, encoding="utf-8") as f:
      done = json.load(f)
  for i, (_, cmd) in enumerate(c for c in all_commands() if c[0] == source):
    launcher, argv = split_command(cmd, "DIR")
    workdir = _flag(shlex.split(cmd), "--workdir") or "DIR"
    if workdir == "DIR":
      workdir = os.path.join(root, f"placeholder_{len(done)}_{i}")
    workdir = workdir.replace("/tmp/gitjax/", root + "/")
    argv = smoke_argv(argv[:-1], root) + [f"--workdir={workdir}"]
    config, workdir = parse(launcher, argv)
    _map_paths(config, root)
    key = f"{launcher} {config.to_json_best_effort(sort_keys=True)}"
    if key in done:
      if not os.path.exists(workdir):
        shutil.copytree(done[key], workdir)
      continue
    print(f"smoke: {source}: {' '.join(argv)}", flush=True)
    result = bodies[launcher](config, workdir)
    assert isinstance(result, dict) and result, cmd
    done[key] = workdir
    with open(done_file, "w", encoding="utf-8") as f:
      json.dump(done, f)


if __name__ == "__main__":
  import jax  # pylint: disable=g-import-not-at-top
  # Smoke runs check that commands work, not speed: XLA's backend
  # optimizations (most of a tiny program's compile time) are off.
  jax.config.update("jax_disable_most_optimizations", True)
  if os.environ.get("GITJAX_TEST_XLA_CACHE"):  # The test run's (conftest).
    jax.config.update("jax_compilation_cache_dir",
                      os.environ["GITJAX_TEST_XLA_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  run_source(sys.argv[1], sys.argv[2])
