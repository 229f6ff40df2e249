"""The experiment bodies: a case, its scoring, a run directory, the launchers."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from gitjax import attacks
from gitjax import experiments
from gitjax.errors import InputError
from tests import helpers


def _tiny_config():
  config = common.base_config()
  config.data.image_size = 8
  config.data.batch_size = 2
  config.victim = dict(name="lenet")
  return config


def test_make_case_hides_truth_and_scores_it(key):
  config = _tiny_config()
  case = experiments.make_case(config)
  assert case.leak.labels is None and case.leak.batch_size == 2
  assert case.truth.images.shape == (2, 8, 8, 3)
  perfect = attacks.Reconstruction(case.truth.images[::-1], None, {})
  result = experiments.evaluate(perfect, case, config)
  assert result["mean"]["psnr"] >= 99.0  # Matched despite the reversal.
  assert result["permutation"] == [1, 0]
  assert result["num_reconstructed"] == 2
  # An attack that estimated a different batch size is still scored: extra
  # reconstructions are dropped, missing ones count as misses.
  extra = attacks.Reconstruction(
      jnp.concatenate([case.truth.images[1:], jnp.zeros_like(
          case.truth.images), case.truth.images[:1]]), None, {})
  result = experiments.evaluate(extra, case, config)
  assert result["mean"]["psnr"] >= 99.0 and result["num_reconstructed"] == 4
  one = attacks.Reconstruction(case.truth.images[1:], None, {})
  result = experiments.evaluate(one, case, config)
  assert result["num_reconstructed"] == 1
  assert max(result["per_image"]["psnr"]) >= 99.0
  assert min(result["per_image"]["psnr"]) < 40.0


def _zeros_attack(leak, victim, config, key):
  del victim, config, key
  b = leak.batch_size
  return attacks.Reconstruction(jnp.zeros((b,) + leak.input_shape),
                                jnp.zeros((b,), jnp.int32), {"steps": 0})


def test_run_attack_writes_run_directory(tmp_path, monkeypatch):
  monkeypatch.setitem(attacks.ATTACKS, "zeros",
                      "tests.test_experiments:_zeros_attack")
  config = _tiny_config()
  config.attack = dict(name="zeros")
  workdir = str(tmp_path / "run")
  result = experiments.run_attack(config, workdir)
  for f in ("config.json", "metrics.json", "grid.png", "log.txt"):
    assert os.path.exists(os.path.join(workdir, f)), f
  with open(os.path.join(workdir, "metrics.json")) as f:
    saved = json.load(f)
  assert set(saved["mean"]) >= {"psnr", "ssim", "mse"}
  assert len(saved["per_image"]["psnr"]) == 2
  assert saved["label_accuracy"] == result["label_accuracy"]
  # A finished run is never modified: run again, it returns what it stored.
  before = helpers.snapshot(workdir)
  assert experiments.run_attack(config, workdir) == saved
  assert helpers.snapshot(workdir) == before


def test_unknown_names_are_clear_errors(tmp_path):
  config = _tiny_config()
  config.attack = dict(name="telepathy")
  case = experiments.make_case(config)
  with pytest.raises(ValueError, match="unknown attack 'telepathy'"):
    experiments.attack_case(case, config.attack, jax.random.key(0))
  config.data.name = "imagenet21k"
  with pytest.raises(ValueError, match="imagenet21k"):
    experiments.make_case(config)
  config = _tiny_config()
  config.data.name = "mnist"
  config.data.data_dir = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="nowhere"):
    experiments.make_case(config)


def test_parse_arg_rejects_unknown_keys():
  arg = common.parse_arg("batch=4,smoke=True", batch=1, smoke=False)
  assert arg.batch == 4 and arg.smoke is True
  with pytest.raises(ValueError, match="unknown config arg 'bacth'"):
    common.parse_arg("bacth=4", batch=1)


def test_per_example_grads_benchmark_smoke(tmp_path):
  from configs.benchmarks import per_example_grads
  config = per_example_grads.get_config("smoke=True")
  results = experiments.run_benchmark(config, str(tmp_path))
  assert results["lenet"]["vmap_examples_per_s"] > 0
  assert os.path.exists(tmp_path / "results.json")
  np.testing.assert_array_less(0, results["lenet"]["loop_examples_per_s"])
  # Run twice: the first results.json is kept byte for byte.
  before = helpers.snapshot(str(tmp_path))
  assert experiments.run_benchmark(config, str(tmp_path)) == json.loads(
      before["results.json"])
  assert helpers.snapshot(str(tmp_path)) == before
  config.repeats = config.repeats + 1  # A different config is refused.
  with pytest.raises(InputError, match="different config .*repeats"):
    experiments.run_benchmark(config, str(tmp_path))
  assert helpers.snapshot(str(tmp_path)) == before
