"""Every config file builds; smoke variants build too; unknown args fail."""

import glob
import importlib
import inspect
import os

import ml_collections as mlc
import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FILES = sorted(
    p for p in glob.glob(os.path.join(_ROOT, "configs", "**", "*.py"),
                         recursive=True)
    if not os.path.basename(p).startswith("__")
    and os.path.basename(p) != "common.py")


def _module(path):
  rel = os.path.relpath(path, _ROOT)[:-3].replace(os.sep, ".")
  return importlib.import_module(rel)


@pytest.mark.parametrize("path", _FILES, ids=lambda p: os.path.relpath(
    p, os.path.join(_ROOT, "configs")))
def test_config_builds(path):
  mod = _module(path)
  config = mod.get_config()
  assert isinstance(config, mlc.ConfigDict)
  assert mod.__doc__ and "python -m" in mod.__doc__, (
      "config docstrings give the command that runs them")
  src = inspect.getsource(mod.get_config)
  if "smoke" in src:
    assert isinstance(mod.get_config("smoke=True"), mlc.ConfigDict)
  if "parse_arg" in src:
    with pytest.raises(ValueError, match="unknown config arg"):
      mod.get_config("no_such_arg=1")


def test_cases_arg_selects_a_sweep_subset_or_names_the_unknown_one():
  from configs.benchmarks import ggl_celeba_defenses
  full = ggl_celeba_defenses.get_config("cpu=True")
  some = ggl_celeba_defenses.get_config("cpu=True,cases=prune-clip")
  assert sorted(some.bench.cases) == ["clip", "prune"]
  assert some.bench.cases.prune == full.bench.cases.prune
  with pytest.raises(ValueError, match="config arg 'cases': unknown dp; "
                     "known: clip, noise, prune, soteria"):
    ggl_celeba_defenses.get_config("cases=clip-dp")
  from configs.benchmarks import gismn_cifar10
  assert list(gismn_cifar10.get_config("cases=b8-b1").bench.cases) == [
      "b1", "b8"]
  with pytest.raises(ValueError, match="unknown b2; known: b1, b1_noise, "):
    gismn_cifar10.get_config("cases=b2")
  cases = gismn_cifar10.get_config("cpu=True").bench.cases
  for name in ("b1", "b1_noise", "b1_prune90"):  # Restarts at B = 1 only.
    assert cases[name].attack.restarts == 6
    assert cases[name].attack.finalists == 2  # As many steps as IG's 3.
    assert cases[name].baselines.ig.restarts == 3
  assert "attack" not in cases.b4 and "attack" not in cases.b8
  # 8 images in the B = 1 cases that missed on 4; 4 elsewhere.
  assert [cases[k].get("bench", {}).get("num_batches") for k in (
      "b1", "b1_prune90", "b1_noise", "b4")] == [8, 8, None, None]
  one = gismn_cifar10.get_config(
      "cpu=True,b1_restarts=1,b1_gismn_starts=1").bench.cases
  assert one.b1.attack.to_dict() == dict(restarts=1, finalists=1)
  assert one.b1.baselines.ig.restarts == 1


def test_victim_arg_reaches_every_inverter_of_the_git_benchmark():
  from configs.benchmarks import git_lenet_cifar10
  lenet = git_lenet_cifar10.get_config("flat_dir=x")
  deep = git_lenet_cifar10.get_config("victim=resnet20,flat_dir=x")
  for name, block in deep.inverters.items():
    assert block.train.victim.name == "resnet20", name
    assert lenet.inverters[name].train.victim.name == "lenet", name
  # LTI's own count sketch for ResNet-20; the flat MLP matches GIT's size.
  assert deep.inverters.lti.train.inverter.sketch_rate == 0.5
  assert lenet.inverters.lti.train.inverter.sketch_rate is None
  assert (deep.inverters.flat.train.inverter.match.to_dict()
          == deep.inverters.git.train.inverter.to_dict())
  assert max(deep.bench.ig_budgets) < max(lenet.bench.ig_budgets)


def test_ggl_cpu_budget_runs_ggl_adam():
  from configs.benchmarks import ggl_celeba_defenses
  cpu = ggl_celeba_defenses.get_config("cpu=True").attack
  gpu = ggl_celeba_defenses.get_config().attack
  assert (cpu.optimizer, cpu.budget, cpu.kl_weight) == ("adam", 2500, 0.1)
  assert (gpu.optimizer, gpu.budget, gpu.kl_weight) == ("cmaes", 800, 0.0)
  # Under noise only: the paper's victim and the mean of 3 CMA-ES searches.
  cases = ggl_celeba_defenses.get_config("cpu=True").bench.cases
  assert cases.noise.victim.to_dict() == dict(width=64, init="torchvision")
  assert (cases.noise.attack.optimizer, cases.noise.attack.restarts,
          cases.noise.attack.restart_answer) == ("cmaes", 3, "image_mean")
  assert (cases.noise.attack.budget, cases.noise.attack.ghost) == (100, True)
  assert all("victim" not in cases[k] for k in ("clip", "prune", "soteria"))
  assert cases.clip.attack.budget == cases.soteria.attack.budget == 1500
  assert "budget" not in cases.prune.attack  # 2,500, the config's.
  assert "noise" not in ggl_celeba_defenses.get_config(
      "cpu=True,cases=clip").bench.cases
