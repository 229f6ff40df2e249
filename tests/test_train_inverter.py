"""Inverter training: loss falls, exact resume after a kill, clear errors."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from configs import git_lenet
from configs import lti_lenet
from gitjax import checkpoint
from gitjax import errors
from gitjax import experiments
from gitjax import inverter_setup
from gitjax import loading
from gitjax import train_inverter
from gitjax import victim as victim_lib
from tests import helpers


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory):
  """Runs of the same tiny config share compiled programs.

  Every ``train_and_evaluate`` builds its jitted step anew; XLA's persistent
  cache (keyed by the program, not the Python closure) saves recompiling it.
  """
  old = (jax.config.jax_compilation_cache_dir,
         jax.config.jax_persistent_cache_min_compile_time_secs)
  jax.config.update("jax_compilation_cache_dir",
                    str(tmp_path_factory.mktemp("xla_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  yield
  jax.config.update("jax_compilation_cache_dir", old[0])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])


def _config(steps=40, **inverter):
  config = git_lenet.get_config("budget=smoke")
  config.victim = dict(name="mlp", hidden=(4,))
  config.data.limit = 16
  config.train.update(batch_size=8, num_steps=steps, lr=1e-2,
                      warmup_steps=0)
  config.checkpoint_every = 10
  config.log_every = 5
  config.eval_every = 0
  config.inverter.update(inverter)
  return config


def _leaves(workdir):
  return [np.asarray(x)
          for x in jax.tree.leaves(loading.inverter(workdir).params)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished 40-step run (MLP victim, 8x8 embedded images)."""
  workdir = str(tmp_path_factory.mktemp("trained"))
  out = train_inverter.train_and_evaluate(_config(), workdir)
  assert out["finished"] and out["step"] == 40
  assert 0.0 < out["eval_mse"] < 1.0
  return workdir


def test_training_reduces_the_loss(trained):
  losses = [l["loss"] for l in train_inverter.read_metrics(trained)]
  assert len(losses) == 8
  assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2])


def test_killed_run_resumes_to_identical_parameters(trained, tmp_path):
  config = _config()
  # Killed after step 13: the last checkpoint is step 10, so 11-13 are redone.
  part = train_inverter.train_and_evaluate(config, str(tmp_path / "b"),
                                           stop_at=13)
  assert not part["finished"] and part["step"] == 13
  resumed = train_inverter.train_and_evaluate(config, str(tmp_path / "b"))
  assert resumed["finished"]
  for a, b in zip(_leaves(trained), _leaves(tmp_path / "b")):
    np.testing.assert_array_equal(a, b)
  steps = [l["step"] for l in train_inverter.read_metrics(tmp_path / "b")]
  assert steps == list(range(5, 41, 5))  # Lines after step 10 rewritten.


def test_warm_start_begins_at_the_source_and_refuses_another_shape(
    trained, tmp_path):
  config = _config(steps=2)
  config.train.init_from = trained
  config.train.lr = 0.0  # Two steps that move nothing: the source's params.
  out = train_inverter.train_and_evaluate(config, str(tmp_path / "w"))
  assert out["finished"]
  for a, b in zip(_leaves(trained), _leaves(tmp_path / "w")):
    np.testing.assert_array_equal(a, b)
  wide = _config(steps=2, channels=4)
  wide.train.init_from = trained
  with pytest.raises(ValueError, match="train.init_from .*do not match"):
    train_inverter.train_and_evaluate(wide, str(tmp_path / "x"))
  assert not os.path.exists(tmp_path / "x" / "checkpoints")
  missing = _config(steps=2)
  missing.train.init_from = str(tmp_path / "nothing")
  with pytest.raises(loading.RunNotFoundError):
    train_inverter.train_and_evaluate(missing, str(tmp_path / "y"))


def test_finished_run_started_again_is_unchanged(trained):
  before = helpers.snapshot(trained)
  stored = json.loads(before["metrics.json"])
  assert {"loss", "grad_norm", "examples_per_s", "wall_s"} <= set(stored)
  assert train_inverter.train_and_evaluate(_config(), trained) == stored
  assert helpers.snapshot(trained) == before


def test_mismatched_or_corrupt_workdir_is_a_clear_error(trained):
  before = helpers.snapshot(trained)
  with pytest.raises(ValueError, match="different config .*inverter.width"):
    train_inverter.train_and_evaluate(_config(width=5), trained)
  assert helpers.snapshot(trained) == before  # Byte-identical.
  assert loading.inverter(trained).step == 40
  # A checkpoint that does not fit the expected state: Orbax refuses.
  with pytest.raises(checkpoint.CheckpointError, match="step 40"):
    ck = checkpoint.Checkpointer(trained + "/checkpoints")
    try:
      ck.restore(40, {"params": jnp.zeros(3)})
    finally:
      ck.close()


def test_corrupt_checkpoint_is_a_clear_error_and_kept(trained, tmp_path):
  workdir = str(tmp_path / "copy")
  shutil.copytree(trained, workdir)
  files = [os.path.join(root, f)
           for root, _, fs in os.walk(os.path.join(workdir, "checkpoints",
                                                   "40")) for f in fs]
  for f in files:
    with open(f, "wb") as fh:
      fh.write(b"garbage")
  os.remove(os.path.join(workdir, "metrics.json"))  # As if killed at 40.
  with pytest.raises(checkpoint.CheckpointError,
                     match="corrupt.*Step 30 is intact"):
    train_inverter.train_and_evaluate(_config(), workdir)
  for f in files:  # Nothing was overwritten.
    with open(f, "rb") as fh:
      assert fh.read() == b"garbage"
  # --resume_intact: resumes from step 30 and ends where the clean run did.
  out = train_inverter.train_and_evaluate(_config(), workdir,
                                          resume="intact")
  assert out["finished"] and out["step"] == 40
  assert os.listdir(os.path.join(workdir, "checkpoints_corrupt")) == ["40"]
  for a, b in zip(_leaves(trained), _leaves(workdir)):
    np.testing.assert_array_equal(a, b)
  steps = [l["step"] for l in train_inverter.read_metrics(workdir)]
  assert steps == list(range(5, 41, 5))


def test_lti_trains(tmp_path):
  lti = lti_lenet.get_config("budget=smoke")
  lti.victim = dict(name="mlp", hidden=(4,))
  lti.data.limit = 16
  lti.train.update(batch_size=8, num_steps=2)
  out = train_inverter.train_and_evaluate(lti, str(tmp_path / "lti"))
  assert out["finished"] and 0.0 < out["eval_mse"] < 1.0
  assert loading.inverter(tmp_path / "lti").setup.inverter.hidden == 8


def test_batch_of_images_with_noise_and_shared_labels(tmp_path):
  config = _config(steps=2)
  config.checkpoint_every = 2
  config.leak.update(batch_size=2, labels_shared=True,
                     defense=[dict(name="gaussian", sigma=0.01)])
  out = train_inverter.train_and_evaluate(config, str(tmp_path / "b2"))
  assert out["finished"] and np.isfinite(out["eval_mse"])
  trained = loading.inverter(tmp_path / "b2")
  assert trained.setup.inverter.batch_size == 2


@pytest.mark.parametrize("mode", ["fixed", "fresh", "perturbed"])
def test_victim_parameters_per_step(mode):
  config = _config()
  config.leak.update(victim_params=mode, perturb_scale=0.5)
  setup, _, _ = train_inverter.prepare_data(config)
  fixed = setup.variables["params"]["head"]["kernel"]
  got = [train_inverter._victim_variables(  # pylint: disable=protected-access
      setup, setup.variables, jax.random.key(k))["params"]["head"]["kernel"]
         for k in (1, 2)]
  if mode == "fixed":
    np.testing.assert_array_equal(got[0], fixed)
  else:  # A new draw every step.
    assert not np.allclose(got[0], fixed) and not np.allclose(got[0], got[1])
  if mode == "perturbed":  # Relative noise: zero stays zero, signs mostly kept.
    assert np.mean(np.sign(got[0]) == np.sign(fixed)) > 0.6


def test_trajectory_victims_are_snapshots_of_public_sgd():
  config = _config()
  config.leak.update(victim_params="trajectory",
                     trajectory=dict(steps=4, snapshots=3, batch=4))
  setup, train, _ = train_inverter.prepare_data(config)
  assert inverter_setup.trajectory_steps(setup.leak) == [0, 1, 4]
  pool = inverter_setup.victim_pool(setup, train.images, train.labels)
  kern = np.asarray(pool["params"]["head"]["kernel"])
  assert kern.shape[0] == 3
  np.testing.assert_array_equal(kern[0],
                                setup.variables["params"]["head"]["kernel"])
  x = inverter_setup.standardize(jnp.asarray(train.images), setup.leak)
  four = victim_lib.sgd_trajectory(setup.victim, setup.variables, x,
                                   jnp.asarray(train.labels), [4], batch=4,
                                   lr=0.01, seed=1)[0]
  np.testing.assert_array_equal(kern[2], four["params"]["head"]["kernel"])
  assert not np.allclose(kern[1], kern[0])
  drawn = set()
  for k in range(16):  # Each step draws one whole snapshot.
    got = train_inverter._victim_variables(  # pylint: disable=protected-access
        setup, pool, jax.random.key(k))["params"]["head"]["kernel"]
    drawn.add(int(np.argmin([np.abs(got - s).max() for s in kern])))
    assert min(np.abs(got - s).max() for s in kern) == 0.0
  assert drawn == {0, 1, 2}
  fixed = config.copy_and_resolve_references()
  fixed.leak.victim_params = "fixed"
  setup_f, _, _ = train_inverter.prepare_data(fixed)
  assert inverter_setup.victim_pool(setup_f, train.images,
                                    train.labels) is setup_f.variables


def test_diverged_training_is_a_clear_error():
  with pytest.raises(FloatingPointError, match="non-finite training metrics "
                     "at step 7"):
    train_inverter._check_finite(  # pylint: disable=protected-access
        {"loss": jnp.float32(np.nan)}, 7)


def test_sample_indices_cover_each_epoch_once():
  rng = jax.random.key(3)
  idx = np.concatenate([
      np.asarray(train_inverter.sample_indices(rng, jnp.int32(s), 4, 10))
      for s in range(5)])  # 20 draws = 2 epochs of 10.
  assert sorted(idx[:10]) == list(range(10))
  assert sorted(idx[10:]) == list(range(10))
  np.testing.assert_array_equal(
      train_inverter.sample_indices(rng, jnp.int32(2), 4, 10), idx[8:12])
  # The permutations drawn once an epoch (``EpochOrder``, as the training
  # loop passes them) give the same indices; so does an order of another
  # epoch, by drawing them in the step.
  order = train_inverter.EpochOrder(jax.random.key_data(rng), 4, 10)
  with_order = jax.jit(lambda s, o: train_inverter.sample_indices(
      rng, s, 4, 10, o))
  got = np.concatenate([np.asarray(with_order(jnp.int32(s), order(s)))
                        for s in range(5)])
  np.testing.assert_array_equal(got, idx)
  assert order.epoch == 1  # Drawn twice: steps 0 and 3 begin epochs.
  np.testing.assert_array_equal(
      with_order(jnp.int32(2), train_inverter.epoch_order(rng, 5, 10)),
      idx[8:12])


@pytest.mark.parametrize("field,value,match", [
    ("victim_params", "random", "unknown leak.victim_params 'random'"),
    ("defense", [dict(name="soteria", rate=0.5)],
     "defense 'soteria' cannot be simulated"),
    ("batch_size", 0, "leak.batch_size must be >= 1"),
    ("trajectory", dict(step=10), r"unknown leak.trajectory settings \['step"),
    ("trajectory", dict(snapshots=1), "leak.trajectory needs steps >= 1"),
])
def test_bad_leak_settings(field, value, match):
  config = _config()
  if field == "trajectory":
    config.leak.victim_params = "trajectory"
  config.leak[field] = value
  with pytest.raises(ValueError, match=match):
    inverter_setup.leak_settings(config)


def test_batch_must_split_over_devices(tmp_path):
  config = _config()
  config.train.batch_size = 6  # 8 devices in the tests.
  with pytest.raises(ValueError, match="not a multiple of the 8 devices"):
    train_inverter.train_and_evaluate(config, str(tmp_path / "x"))


def test_load_without_a_run_is_a_clear_error(tmp_path):
  with pytest.raises(loading.RunNotFoundError,
                     match=f"no inverter training run in {tmp_path}"):
    loading.inverter(tmp_path)
  (tmp_path / "config.json").write_text(json.dumps(_config().to_dict()))
  (tmp_path / "run_info.json").write_text(
      json.dumps(dict(image_shape=[8, 8, 3], num_classes=10)))
  with pytest.raises(errors.InputError, match="no checkpoint in .*checkpoints"):
    loading.inverter(tmp_path)
  assert issubclass(loading.RunNotFoundError, FileNotFoundError)


def _case(trained, attack, batch_size=1):
  config = common.base_config()
  config.data.update(image_size=8, batch_size=batch_size)
  config.victim = dict(name="mlp", hidden=(4,))
  config.attack = dict(name=attack, inverter_dir=trained)
  return config, experiments.make_case(config)


def test_git_attacks_load_the_trained_inverter(trained, key):
  config, case = _case(trained, "git")
  rec = experiments.attack_case(case, config.attack, key)
  assert rec.images.shape == (1, 8, 8, 3)
  assert rec.info["inverter_step"] == 40 and rec.info["forward_seconds"] > 0
  assert rec.info["param_discrepancy"] == 0.0
  assert 0.0 < experiments.evaluate(rec, case, config)["mean"]["mse"] < 1.0
  config.attack = dict(name="git_ig", inverter_dir=trained, iterations=3,
                       proximity=0.1, progress=False)
  both = experiments.attack_case(case, config.attack, key)
  assert both.images.shape == (1, 8, 8, 3)
  assert both.info["iterations"] == 3 and both.info["git"]["inverter_step"]


@pytest.mark.parametrize("attack,batch,extra,match", [
    ("lti", 1, {}, "is a 'git' inverter; the 'lti' attack"),
    ("git", 2, {}, "trained for batches of 1; the leak has 2"),
    ("git", 1, {"inverter_dir": None}, "need attack.inverter_dir"),
    ("git", 1, {"lr": 0.1}, r"unknown git attack config key\(s\) \['lr'\]"),
])
def test_git_attack_errors(trained, key, attack, batch, extra, match):
  config, case = _case(trained, attack, batch)
  config.attack.update(extra)
  with pytest.raises(ValueError, match=match):
    experiments.attack_case(case, config.attack, key)
