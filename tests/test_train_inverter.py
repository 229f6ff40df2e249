"""Inverter training: loss falls, exact resume after a kill, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import git_lenet
from configs import lti_lenet
from gitjax import checkpoint
from gitjax import train_inverter


def _config(steps=6, **inverter):
  config = git_lenet.get_config("budget=smoke")
  config.victim = dict(name="mlp", hidden=(4,))
  config.data.limit = 16
  config.train.update(batch_size=8, num_steps=steps)
  config.checkpoint_every = 2
  config.log_every = 2
  config.eval_every = 0
  config.inverter.update(inverter)
  return config


def _leaves(workdir):
  return [np.asarray(x)
          for x in jax.tree.leaves(train_inverter.load(workdir).params)]


def test_killed_run_resumes_to_identical_parameters(tmp_path):
  config = _config(steps=6)
  full = train_inverter.train_and_evaluate(config, str(tmp_path / "a"))
  assert full["finished"] and full["step"] == 6
  # Killed after step 3: the last checkpoint is step 2, so 3 is redone.
  part = train_inverter.train_and_evaluate(config, str(tmp_path / "b"),
                                           stop_at=3)
  assert not part["finished"] and part["step"] == 3
  resumed = train_inverter.train_and_evaluate(config, str(tmp_path / "b"))
  assert resumed["finished"]
  for a, b in zip(_leaves(tmp_path / "a"), _leaves(tmp_path / "b")):
    np.testing.assert_array_equal(a, b)
  steps = [l["step"] for l in train_inverter.read_metrics(tmp_path / "b")]
  assert steps == [2, 4, 6]  # Lines after the checkpoint were rewritten.


def test_mismatched_or_corrupt_workdir_is_a_clear_error(tmp_path):
  workdir = str(tmp_path / "run")
  train_inverter.train_and_evaluate(_config(steps=2), workdir)
  with pytest.raises(ValueError, match="different config .*inverter.width"):
    train_inverter.train_and_evaluate(_config(steps=2, width=5), workdir)
  assert train_inverter.load(workdir).step == 2  # Untouched.
  # Same config fields but a checkpoint of another shape: Orbax refuses.
  with pytest.raises(checkpoint.CheckpointError, match="step 2"):
    ck = checkpoint.Checkpointer(workdir + "/checkpoints")
    try:
      ck.restore(2, {"params": jnp.zeros(3)})
    finally:
      ck.close()


def test_training_reduces_the_loss_and_lti_trains(tmp_path):
  config = _config(steps=40)
  config.train.update(lr=1e-2, warmup_steps=0)
  config.log_every = 5
  train_inverter.train_and_evaluate(config, str(tmp_path / "git"))
  losses = [l["loss"] for l in train_inverter.read_metrics(tmp_path / "git")]
  assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2])
  lti = lti_lenet.get_config("budget=smoke")
  lti.victim = config.victim
  lti.data.limit = 16
  lti.train.update(batch_size=8, num_steps=2)
  out = train_inverter.train_and_evaluate(lti, str(tmp_path / "lti"))
  assert out["finished"] and 0.0 < out["eval_mse"] < 1.0


def test_batch_of_images_with_noise_and_shared_labels(tmp_path):
  config = _config(steps=2)
  config.leak.update(batch_size=2, labels_shared=True,
                     defense=[dict(name="gaussian", sigma=0.01)],
                     victim_params="perturbed", perturb_scale=0.1)
  out = train_inverter.train_and_evaluate(config, str(tmp_path / "b2"))
  assert out["finished"] and np.isfinite(out["eval_mse"])
  trained = train_inverter.load(tmp_path / "b2")
  assert trained.setup.inverter.batch_size == 2


def test_sample_indices_cover_each_epoch_once():
  rng = jax.random.key(3)
  idx = np.concatenate([
      np.asarray(train_inverter.sample_indices(rng, jnp.int32(s), 4, 10))
      for s in range(5)])  # 20 draws = 2 epochs of 10.
  assert sorted(idx[:10]) == list(range(10))
  assert sorted(idx[10:]) == list(range(10))
  np.testing.assert_array_equal(
      train_inverter.sample_indices(rng, jnp.int32(2), 4, 10), idx[8:12])


@pytest.mark.parametrize("field,value,match", [
    ("victim_params", "random", "unknown leak.victim_params 'random'"),
    ("defense", [dict(name="soteria", rate=0.5)],
     "defense 'soteria' cannot be simulated"),
    ("batch_size", 0, "leak.batch_size must be >= 1"),
])
def test_bad_leak_settings(field, value, match):
  config = _config()
  config.leak[field] = value
  with pytest.raises(ValueError, match=match):
    train_inverter.leak_settings(config)


def test_batch_must_split_over_devices(tmp_path):
  config = _config()
  config.train.batch_size = 6  # 8 devices in the tests.
  with pytest.raises(ValueError, match="not a multiple of the 8 devices"):
    train_inverter.train_and_evaluate(config, str(tmp_path / "x"))


def test_load_without_a_run_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="no inverter training run"):
    train_inverter.load(tmp_path)
