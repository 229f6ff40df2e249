"""Every command printed in README.md and in a config docstring works.

Each command is parsed exactly as its launcher parses it
(``launch.common.parse`` on a fresh ``FlagValues``) and its config checked;
then each distinct launcher and config file runs once end to end in smoke
mode (the config's ``smoke=True`` or ``budget=smoke``, tiny embedded data,
paths to real data dropped, ``/tmp/gitjax/`` mapped to tmp), with the
command's ``--config.*`` overrides applied. Those runs compile a program per
config (minutes in all), so they are the ``commands`` tier, outside the
default selection: ``.ci/run`` runs them after the README's test command,
``python -m pytest -n 2 -m commands tests/test_commands.py``.
"""

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys

from absl import flags
import jax
import pytest

from gitjax import experiments
from gitjax import train_inverter
from gitjax import train_prior
from gitjax import validate
from gitjax.errors import InputError
from launch import common

# ml_collections loads config files through importlib's deprecated
# load_module(); the warning is theirs.
pytestmark = pytest.mark.filterwarnings(
    "ignore:the load_module\\(\\) method is deprecated:DeprecationWarning")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BODIES = {
    "launch.attack": experiments.run_attack,
    "launch.benchmark": experiments.run_benchmark,
    "launch.train_inverter": train_inverter.train_and_evaluate,
    "launch.train_prior": train_prior.train_and_evaluate,
}


def _commands_in(text: str, source: str) -> list[tuple[str, str]]:
  text = re.sub(r"\\\n\s*", " ", text)  # Join continued lines.
  out = []
  for line in text.splitlines():
    if "python -m launch." not in line:
      continue
    cmd = line[line.index("python -m launch."):].split(" && ")[0].strip()
    out.append((source, cmd))
  return out


def _all_commands() -> list[tuple[str, str]]:
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


COMMANDS = _all_commands()


def _argv(cmd: str, workdir: str) -> tuple[str, list[str]]:
  parts = shlex.split(cmd)
  assert parts[:2] == ["python", "-m"], cmd
  launcher = parts[2]
  argv = [launcher] + [a for a in parts[3:] if not a.startswith("--workdir")]
  return launcher, argv + [f"--workdir={workdir}"]


def _parse(launcher: str, argv: list[str]):
  fv = flags.FlagValues()
  holders = common.define_flags(
      "config", resumable=launcher.startswith("launch.train_"),
      flag_values=fv, sys_argv=argv)
  common.parse(argv, fv)
  return holders.config.value, holders.workdir.value


def test_commands_were_found():
  sources = {s for s, _ in COMMANDS}
  assert "README.md" in sources and len(COMMANDS) >= 30
  assert any("--config.leak.defense" in c for _, c in COMMANDS)


@pytest.mark.parametrize("source,cmd", COMMANDS,
                         ids=[f"{s}:{i}" for i, (s, _) in enumerate(COMMANDS)])
def test_command_parses_and_its_config_checks(source, cmd, tmp_path,
                                               monkeypatch):
  monkeypatch.chdir(ROOT)
  launcher, argv = _argv(cmd, str(tmp_path))
  assert launcher in BODIES, f"{source}: unknown launcher in {cmd}"
  config, workdir = _parse(launcher, argv)
  assert workdir == str(tmp_path)
  if launcher == "launch.attack":
    validate.check_experiment(config)
  elif launcher == "launch.benchmark":
    assert config.benchmark in experiments.BENCHMARKS


def _smoke_argv(argv: list[str], root: str) -> list[str]:
  """Smoke mode on, real data dropped, /tmp/gitjax/... paths under root."""
  out = []
  for a in argv:
    a = a.replace("/tmp/gitjax/", root + "/")
    if a.startswith("--config="):
      path, _, args = a.split("=", 1)[1].partition(":")
      keep = [kv for kv in args.split(",") if kv and
              not kv.startswith(("data_dir=", "budget=", "cpu=")) and
              not _missing_dir(kv)]
      a = f"--config={path}:" + ",".join(keep + ["smoke=True"])
    out.append(a)
  return out


def _missing_dir(kv: str) -> bool:
  """A model path (git_dir=..., generator_dir=...) that no earlier command
  of the source made: smoke mode trains its own instead."""
  k, _, v = kv.partition("=")
  return k.endswith("_dir") and not os.path.exists(v)


SOURCES = sorted({s for s, _ in COMMANDS})
_DONE = {}  # Smoke command (less its workdir) -> the workdir it finished in.


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory):
  return str(tmp_path_factory.mktemp("gitjax"))


@pytest.fixture
def quick_compile():
  """Smoke runs check that commands work, not speed: XLA's backend
  optimizations (most of a tiny program's compile time) are turned off."""
  old = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", old)


@pytest.mark.commands
@pytest.mark.parametrize("source", SOURCES)
def test_commands_run_in_smoke_mode(source, smoke_root, monkeypatch,
                                    quick_compile):
  """The source's commands, in order: a prior or inverter trained by one is
  what the next one loads (``/tmp/gitjax/...`` maps to one tmp folder)."""
  monkeypatch.chdir(ROOT)
  for _, cmd in [c for c in COMMANDS if c[0] == source]:
    launcher, argv = _argv(cmd, "DIR")
    workdir = _flag(shlex.split(cmd), "--workdir") or "DIR"
    if workdir == "DIR":
      workdir = os.path.join(smoke_root, f"placeholder_{len(_DONE)}")
    workdir = workdir.replace("/tmp/gitjax/", smoke_root + "/")
    argv = _smoke_argv(argv[:-1], smoke_root) + [f"--workdir={workdir}"]
    key = (launcher,) + tuple(argv[1:-1])
    if key in _DONE:
      if not os.path.exists(workdir):
        shutil.copytree(_DONE[key], workdir)
      continue
    config, workdir = _parse(launcher, argv)
    _map_paths(config, smoke_root)
    result = BODIES[launcher](config, workdir)
    assert isinstance(result, dict) and result, cmd
    _DONE[key] = workdir


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


@pytest.mark.parametrize("args,match", [
    (["--config.attack.nonexistent=1"],
     "unknown config field 'config.attack.nonexistent'.*known: chunk"),
    (["--config.nope.x=1"], "config has no field 'nope'"),
    (["--config.attack.iterations=abc"],
     "config.attack.iterations=abc: invalid literal"),
    (["--config.leak.defense=[{'name': "], "not a Python list literal"),
    (["--config.leak.defense=3"], "expected a list literal"),
])
def test_bad_overrides_are_one_line(args, match, tmp_path, monkeypatch):
  monkeypatch.chdir(ROOT)
  argv = ["launch.attack", "--config=configs/dlg_lenet.py:smoke=True",
          f"--workdir={tmp_path}"] + args
  with pytest.raises(InputError, match=match) as e:
    _parse("launch.attack", argv)
  assert "\n" not in str(e.value)
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize("spec,match", [
    ("configs/dlg_lenet.py:iterations=abc",
     "config arg 'iterations' must be int .*got 'abc'"),
    ("configs/dlg_lenet.py:bogus=1",
     "unknown config arg 'bogus'; known: batch=1"),
    ("configs/dlg_lenet.py:smoke", "'smoke' is not key=value"),
    ("configs/nowhere.py", "config file configs/nowhere.py not found"),
])
def test_bad_config_file_or_args_are_one_line(spec, match, tmp_path,
                                              monkeypatch):
  monkeypatch.chdir(ROOT)
  argv = ["launch.attack", f"--config={spec}", f"--workdir={tmp_path}"]
  with pytest.raises(InputError, match=match) as e:
    _parse("launch.attack", argv)
  assert "\n" not in str(e.value)


def test_list_and_tuple_fields_are_overridable(monkeypatch, tmp_path):
  monkeypatch.chdir(ROOT)
  argv = ["launch.attack", "--config=configs/dlg_lenet.py:smoke=True",
          f"--workdir={tmp_path}",
          '--config.leak.defense=[{"name": "prune", "rate": 0.5}]',
          "--config.data.mean=(0.5, 0.5, 0.5)"]
  config, _ = _parse("launch.attack", argv)
  assert config.leak.defense == [{"name": "prune", "rate": 0.5}]
  assert tuple(config.data.mean) == (0.5, 0.5, 0.5)
  validate.check_experiment(config)


def test_missing_workdir_is_one_line(monkeypatch):
  monkeypatch.chdir(ROOT)
  with pytest.raises(InputError, match="--workdir is required"):
    _parse("launch.attack", ["launch.attack",
                             "--config=configs/dlg_lenet.py:smoke=True"])


@pytest.mark.parametrize("args,match", [
    (["--config=configs/dlg_lenet.py:iterations=abc"],
     "config arg 'iterations' must be int"),
    (["--config=configs/dlg_lenet.py:smoke=True",
      "--config.attack.iterations=0"], "config.attack.iterations must be"),
])
def test_launcher_prints_one_line_and_exits_2(args, match, tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "launch.attack", f"--workdir={tmp_path}/w"]
      + args, cwd=ROOT, capture_output=True, text=True, timeout=300,
      env={**os.environ, "JAX_PLATFORMS": "cpu"}, check=False)
  assert proc.returncode == 2, proc.stderr
  lines = [l for l in proc.stderr.splitlines() if "error:" in l]
  assert len(lines) == 1 and re.search(match, lines[0]), proc.stderr
  assert lines[0].startswith("launch.attack: error: ")
  assert "Traceback" not in proc.stderr
  assert not os.path.exists(tmp_path / "w")
