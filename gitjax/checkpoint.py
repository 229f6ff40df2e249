"""Orbax checkpoints for long runs (inverter and generator training).

The one module to change for Orbax's V1 API. A run directory's checkpoints
live in ``<workdir>/checkpoints``; ``Checkpointer.restore_or`` returns the
latest saved state or the given initial state, so a killed run that is started
again resumes where it stopped.
"""

import os

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored into the expected state."""


class Checkpointer:
  """Saves every ``every`` steps and keeps the latest ``keep``."""

  def __init__(self, directory: str, every: int = 1000, keep: int = 3):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(
            every),
        preservation_policy=ocp.checkpoint_managers.LatestN(keep),
        create=True)
    self._mngr = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def save(self, step: int, state, force: bool = False) -> bool:
    """Saves if the policy says so (or ``force``); asynchronous."""
    return self._mngr.save(step, args=ocp.args.StandardSave(state),
                           force=force)

  def restore(self, step: int, like):
    """Restores ``step`` into the structure, shapes and shardings of ``like``.

    Raises:
      CheckpointError: naming the directory and step, if the checkpoint is
        corrupt or does not match ``like`` (another model or config). The
        checkpoint is left on disk untouched.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
      restored = self._mngr.restore(
          step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # Orbax raises many types; re-raise one.
      raise CheckpointError(
          f"cannot restore checkpoint step {step} from {self.directory}: it "
          f"is corrupt or was written by a different model/config "
          f"({type(e).__name__}: {str(e)[:300]}). Use another workdir or "
          "remove it deliberately; it was not modified.") from e
    want = jax.tree.structure(abstract)
    if jax.tree.structure(restored) != want:
      raise CheckpointError(
          f"checkpoint step {step} in {self.directory} has a different tree "
          "structure than the current state; it was not modified.")
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(abstract)):
      if a.shape != b.shape:
        raise CheckpointError(
            f"checkpoint step {step} in {self.directory} has a leaf of shape "
            f"{a.shape} where the current state has {b.shape}; it was not "
            "modified.")
    return restored

  def restore_or(self, init_state):
    """(state, step): the latest checkpoint, or (init_state, 0) if none."""
    step = self.latest_step()
    if step is None:
      return init_state, 0
    return self.restore(step, init_state), step

  def wait(self):
    self._mngr.wait_until_finished()

  def close(self):
    self._mngr.wait_until_finished()
    self._mngr.close()
