"""Orbax checkpoints for long runs (inverter and generator training).

The one module to change for Orbax's V1 API. A run directory's checkpoints
live in ``<workdir>/checkpoints``; ``Checkpointer.restore_or`` returns the
latest saved state or the given initial state, so a killed run that is started
again resumes where it stopped.
"""

import os
import shutil

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
      detail = " ".join(str(e).split())[:300]
      raise CheckpointError(
          f"cannot restore checkpoint step {step} from {self.directory}: it "
          f"is corrupt or was written by a different model/config "
          f"({type(e).__name__}: {detail}); it was not modified") from e
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

  def all_steps(self) -> list[int]:
    return sorted(self._mngr.all_steps())

  def restore_or(self, init_state, *, resume: str = "latest"):
    """(state, step): the latest checkpoint, or (init_state, 0) if none.

    Args:
      init_state: the state to restore into (and to return when there is no
        checkpoint).
      resume: "latest" (a corrupt latest checkpoint is an error that names
        the newest intact step) or "intact" (resume from the newest intact
        step; the newer, corrupt ones are moved to
        ``<directory>_corrupt/<step>``, never deleted).

    Raises:
      CheckpointError: the latest checkpoint cannot be restored and
        ``resume`` is "latest", or no checkpoint can be restored.
    """
    if resume not in ("latest", "intact"):
      raise ValueError(f"resume must be 'latest' or 'intact', got {resume!r}")
    step = self.latest_step()
    if step is None:
      return init_state, 0
    try:
      return self.restore(step, init_state), step
    except CheckpointError as e:
      bad, intact = [step], None
      for s in reversed(self.all_steps()):
        if s >= step:
          continue
        try:
          state = self.restore(s, init_state)
          intact = s
          break
        except CheckpointError:
          bad.append(s)
      if intact is None:
        raise CheckpointError(f"{e}; no earlier checkpoint is intact "
                              f"either (steps {sorted(bad)})") from e
      if resume == "latest":
        raise CheckpointError(
            f"{e}. Step {intact} is intact: start again with "
            "--resume_intact (resume=\"intact\") to resume from it; the "
            f"corrupt steps {sorted(bad)} are then moved to "
            f"{self.directory}_corrupt") from e
      self._move_aside(bad)
      return state, intact

  def _move_aside(self, steps) -> None:
    """Moves step folders to ``<directory>_corrupt/`` and reloads."""
    self._mngr.wait_until_finished()
    aside = self.directory + "_corrupt"
    os.makedirs(aside, exist_ok=True)
    for s in steps:
      src = os.path.join(self.directory, str(s))
      dst = os.path.join(aside, str(s))
      while os.path.exists(dst):
        dst += "_again"
      shutil.move(src, dst)
    self._mngr.reload()

  def wait(self):
    self._mngr.wait_until_finished()

  def close(self):
    self._mngr.wait_until_finished()
    self._mngr.close()
