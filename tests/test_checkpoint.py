"""Orbax checkpoint wrapper: round trip, resume, clear errors on mismatch."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import checkpoint


def _state(n=3):
  return {"params": {"w": jnp.arange(float(n))}, "step": jnp.array(0)}


def test_round_trip_and_restore_or(tmp_path):
  ck = checkpoint.Checkpointer(str(tmp_path / "ck"), every=2)
  state = _state()
  assert ck.restore_or(state)[1] == 0
  ck.save(2, {"params": {"w": jnp.ones(3)}, "step": jnp.array(2)})
  ck.close()
  ck = checkpoint.Checkpointer(str(tmp_path / "ck"), every=2)
  restored, step = ck.restore_or(state)
  assert step == 2
  np.testing.assert_array_equal(restored["params"]["w"], np.ones(3))
  ck.close()


def test_mismatched_checkpoint_is_a_clear_error_and_kept(tmp_path):
  ck = checkpoint.Checkpointer(str(tmp_path / "ck"), every=1)
  ck.save(1, _state(3))
  ck.close()
  ck = checkpoint.Checkpointer(str(tmp_path / "ck"), every=1)
  with pytest.raises(checkpoint.CheckpointError, match="step 1"):
    ck.restore_or(_state(5))
  assert ck.latest_step() == 1  # Nothing was deleted.
  ck.close()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
  ck = checkpoint.Checkpointer(str(tmp_path / "ck"), every=1)
  ck.save(1, _state())
  ck.close()
  for root, _, files in os.walk(tmp_path / "ck" / "1"):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"garbage")
  ck = checkpoint.Checkpointer(str(tmp_path / "ck"), every=1)
  with pytest.raises(checkpoint.CheckpointError, match="corrupt"):
    ck.restore_or(_state())
  ck.close()


def _corrupt(step_dir):
  for root, _, files in os.walk(step_dir):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"garbage")


def test_corrupt_latest_names_the_intact_step_and_resume_intact(tmp_path):
  ck = checkpoint.Checkpointer(str(tmp_path / "ck"), every=1, keep=3)
  for step in (1, 2, 3):
    ck.save(step, {"params": {"w": jnp.full(3, float(step))},
                   "step": jnp.array(step)})
  ck.close()
  _corrupt(tmp_path / "ck" / "3")
  ck = checkpoint.Checkpointer(str(tmp_path / "ck"), every=1, keep=3)
  with pytest.raises(checkpoint.CheckpointError,
                     match="Step 2 is intact.*--resume_intact") as e:
    ck.restore_or(_state())
  assert "\n" not in str(e.value)
  assert ck.all_steps() == [1, 2, 3]  # Refused: nothing moved.
  state, step = ck.restore_or(_state(), resume="intact")
  assert step == 2
  np.testing.assert_array_equal(state["params"]["w"], np.full(3, 2.0))
  assert ck.all_steps() == [1, 2]
  assert os.listdir(tmp_path / "ck_corrupt") == ["3"]  # Kept, not deleted.
  ck.save(3, {"params": {"w": jnp.zeros(3)}, "step": jnp.array(3)},
          force=True)
  ck.close()


def test_no_intact_checkpoint_is_a_clear_error(tmp_path):
  ck = checkpoint.Checkpointer(str(tmp_path / "ck"), every=1)
  ck.save(1, _state())
  ck.close()
  _corrupt(tmp_path / "ck" / "1")
  ck = checkpoint.Checkpointer(str(tmp_path / "ck"), every=1)
  with pytest.raises(checkpoint.CheckpointError, match="no earlier"):
    ck.restore_or(_state(), resume="intact")
  with pytest.raises(ValueError, match="resume must be"):
    ck.restore_or(_state(), resume="newest")
  ck.close()
