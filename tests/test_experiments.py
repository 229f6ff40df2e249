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


def test_make_cases_share_one_sample_and_victim():
  from gitjax import data as data_lib
  config = _tiny_config()
  ds = experiments.load_data(config.data)
  cases = experiments.make_cases(config, ds, 3)
  assert len({id(c.victim) for c in cases}) == 1
  pool = data_lib.sample(ds, 6, config.seed)
  for i, c in enumerate(cases):
    np.testing.assert_array_equal(c.dataset.images,
                                  pool.images[2 * i:2 * i + 2])
    assert c.status is not None and not c.status["empty"]
  first = experiments.make_case(config, ds)  # make_cases(config, ds)[0].
  np.testing.assert_array_equal(first.truth.images, experiments.make_cases(
      config, ds)[0].truth.images)
  seeded = experiments.make_cases(config, ds, 2, sample_seeds=[5, 7])
  np.testing.assert_array_equal(seeded[1].dataset.images,
                                data_lib.sample(ds, 2, 7).images)
  config.data.index = (0, 1, 2)
  with pytest.raises(InputError, match="index has 3 entries; 2 round"):
    experiments.make_cases(config, ds, 2)


def test_with_overrides_replaces_fields_and_names_bad_ones():
  config = _tiny_config()
  del config.leak["defense"]
  case = experiments.with_overrides(
      config, {"leak": {"defense": [dict(name="prune", rate=0.5)]},
               "data": {"batch_size": 1}}, "config.bench.cases.x")
  assert case.data.batch_size == 1 and case.data.image_size == 8
  assert case.leak.defense == [dict(name="prune", rate=0.5)]
  assert experiments.make_case(case).leak.defense[0]["name"] == "prune"
  with pytest.raises(InputError, match="config.bench.cases.x.data.bacth"):
    experiments.with_overrides(config, {"data": {"bacth": 1}},
                               "config.bench.cases.x")
  with pytest.raises(InputError, match="config.bench.cases.x.nope"):
    experiments.with_overrides(config, {"nope": {"a": 1}},
                               "config.bench.cases.x")


def test_with_overrides_of_a_nested_block_keep_its_other_fields():
  config = _tiny_config()
  config.baselines = dict(ig=dict(name="ig", iterations=7, restarts=1),
                          dlg=dict(name="dlg"))
  case = experiments.with_overrides(
      config, {"baselines": {"ig": {"restarts": 3}}}, "config.bench.cases.x")
  ig = case.baselines.ig
  assert (ig.name, ig.iterations, ig.restarts) == ("ig", 7, 3)
  assert [k for k, _ in case.baselines.items()] == ["dlg", "ig"]
  assert case.baselines.to_dict() == dict(
      ig=dict(name="ig", iterations=7, restarts=3), dlg=dict(name="dlg"))
  assert config.baselines.ig.restarts == 1  # The config is not modified.
  config.data.options = dict(b=2)  # A dict field merges the same way.
  case = experiments.with_overrides(config, {"data": {"options": {"a": 1}}})
  assert experiments.plain(case.data.options) == {"a": 1, "b": 2}
  # Anything else replaces the field whole.
  case = experiments.with_overrides(config, {"baselines": {"ig": None}})
  assert case.baselines.ig is None and case.baselines.dlg.name == "dlg"


def test_attack_cases_one_program_or_one_key_per_case(key):
  config = _tiny_config()
  config.data.batch_size = 1
  cases = experiments.make_cases(config, None, 2)
  attack = dict(name="dlg", iterations=2, chunk=1, progress=False)
  recs = experiments.attack_cases(cases, attack, key)
  assert len(recs) == 2 and recs[0].images.shape == (1, 8, 8, 3)
  keys = [jax.random.key(1), jax.random.key(2)]
  loop = experiments.attack_cases(cases, attack, keys)
  alone = experiments.attack_case(cases[1], attack, keys[1])
  np.testing.assert_allclose(loop[1].images, alone.images)


def test_calibration_sets_running_statistics_from_public_images():
  config = common.base_config()
  config.data.update(image_size=12)
  config.victim = dict(name="convnet", width=2)
  config.calibration = dict(num_images=8, split="train")
  case = experiments.make_case(config)
  stats = case.leak.variables["batch_stats"]["bn0"]
  assert float(jnp.abs(stats["mean"]).max()) > 0  # Fresh init: all zeros.
  assert float(jnp.abs(stats["var"] - 1.0).max()) > 0
  config.victim = dict(name="lenet")
  config.calibration.num_images = 10_000
  with pytest.raises(InputError, match="calibration.num_images = 10000"):
    experiments.make_case(config)
  config.calibration.num_images = 4
  with pytest.raises(InputError, match="has no BatchNorm statistics"):
    experiments.make_case(config)
