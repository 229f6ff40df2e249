"""Trains a gradient inverter (GIT or LTI). The logic is in the library.

python -m launch.train_inverter --config=configs/git_lenet.py \
    --workdir=/tmp/gitjax/git_lenet
Started again with the same workdir, a killed run resumes from its last
checkpoint. Fields are overridden ml_collections style:
--config.train.num_steps=500.
"""

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from gitjax import train_inverter

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Inverter training config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.",
                               required=True)
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() first.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  if _MULTIHOST.value:
    jax.distributed.initialize()  # Must precede any device access.
  train_inverter.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
