"""Every command printed in README.md and in a config docstring works.

Each command is parsed exactly as its launcher parses it
(``launch.common.parse`` on a fresh ``FlagValues``) and its config checked;
then each distinct launcher and config file runs once end to end in smoke
mode (the config's ``smoke=True`` or ``budget=smoke``, tiny embedded data,
paths to real data and budgets dropped, ``/tmp/gitjax/`` mapped to tmp), with the command's ``--config.*`` overrides applied, one process per
source (``tests/smoke_runner.py``). Those runs compile a program per config
(minutes in all), so they are the ``commands`` tier, outside the
default selection: ``.ci/run`` runs them after the README's test command,
``python -m pytest -n 2 -m commands tests/test_commands.py``.
"""

import os
import re
import subprocess
import sys

import pytest

from gitjax import experiments
from gitjax import validate
from gitjax.errors import InputError
from tests import smoke_runner

# ml_collections loads config files through importlib's deprecated
# load_module(); the warning is theirs.
pytestmark = pytest.mark.filterwarnings(
    "ignore:the load_module\\(\\) method is deprecated:DeprecationWarning")

ROOT = smoke_runner.ROOT
COMMANDS = smoke_runner.all_commands()


def test_commands_were_found():
  sources = {s for s, _ in COMMANDS}
  assert "README.md" in sources and len(COMMANDS) >= 30
  assert any("--config.leak.defense" in c for _, c in COMMANDS)


@pytest.mark.parametrize("source,cmd", COMMANDS,
                         ids=[f"{s}:{i}" for i, (s, _) in enumerate(COMMANDS)])
def test_command_parses_and_its_config_checks(source, cmd, tmp_path,
                                               monkeypatch):
  monkeypatch.chdir(ROOT)
  launcher, argv = smoke_runner.split_command(cmd, str(tmp_path))
  assert launcher in smoke_runner.LAUNCHERS, (
      f"{source}: unknown launcher in {cmd}")
  config, workdir = smoke_runner.parse(launcher, argv)
  assert workdir == str(tmp_path)
  if launcher == "launch.attack":
    validate.check_experiment(config)
  elif launcher == "launch.benchmark":
    assert config.benchmark in experiments.BENCHMARKS


SMOKE_MAX = 20  # Steps, iterations, generations: a smoke run stays seconds.


def _sizes(node, path=""):
  """(field, value) for every step/iteration count in a config, including
  ``steps=N`` inside nested config specs (a benchmark's inverters)."""
  for k in node.keys():
    v = node[k]
    if hasattr(v, "keys"):
      yield from _sizes(v, f"{path}{k}.")
    elif (isinstance(v, int) and not isinstance(v, bool)
          and re.search(r"(steps|iterations|generations|restarts)$", k)):
      yield path + k, v
    elif isinstance(v, str):
      for m in re.finditer(r"(\w*steps)=(\d+)", v):
        yield f"{path}{k}:{m.group(1)}", int(m.group(2))


@pytest.mark.parametrize("source,cmd", COMMANDS,
                         ids=[f"{s}:{i}" for i, (s, _) in enumerate(COMMANDS)])
def test_smoke_mode_is_small_whatever_the_command_asks(source, cmd,
                                                       monkeypatch):
  """A command's ``steps=4000`` must not survive smoke mode: CI once spent
  its 90 minutes training a 4,000-step smoke run."""
  monkeypatch.chdir(ROOT)
  launcher, argv = smoke_runner.split_command(cmd, "DIR")
  argv = smoke_runner.smoke_argv(argv[:-1], "/nonexistent")
  config, _ = smoke_runner.parse(launcher, argv + ["--workdir=DIR"])
  big = [(k, v) for k, v in _sizes(config) if v > SMOKE_MAX]
  assert not big, f"{source}: smoke run of {cmd!r} keeps {big}"


SOURCES = sorted({s for s, _ in COMMANDS})


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory):
  return str(tmp_path_factory.mktemp("gitjax"))


@pytest.mark.commands
@pytest.mark.parametrize("source", SOURCES)
def test_commands_run_in_smoke_mode(source, smoke_root):
  """The source's commands, in order, in a process of their own
  (``tests/smoke_runner.py``): a crash or the memory of one source's
  programs never reaches the next."""
  proc = subprocess.run(
      [sys.executable, "-m", "tests.smoke_runner", source, smoke_root],
      cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, (
      f"{source}: exit status {proc.returncode}\n{proc.stdout[-3000:]}\n"
      f"{proc.stderr[-6000:]}")


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
    smoke_runner.parse("launch.attack", argv)
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
    smoke_runner.parse("launch.attack", argv)
  assert "\n" not in str(e.value)


def test_list_and_tuple_fields_are_overridable(monkeypatch, tmp_path):
  monkeypatch.chdir(ROOT)
  argv = ["launch.attack", "--config=configs/dlg_lenet.py:smoke=True",
          f"--workdir={tmp_path}",
          '--config.leak.defense=[{"name": "prune", "rate": 0.5}]',
          "--config.data.mean=(0.5, 0.5, 0.5)"]
  config, _ = smoke_runner.parse("launch.attack", argv)
  assert config.leak.defense == [{"name": "prune", "rate": 0.5}]
  assert tuple(config.data.mean) == (0.5, 0.5, 0.5)
  validate.check_experiment(config)


def test_missing_workdir_is_one_line(monkeypatch):
  monkeypatch.chdir(ROOT)
  with pytest.raises(InputError, match="--workdir is required"):
    smoke_runner.parse("launch.attack", ["launch.attack",
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
