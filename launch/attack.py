"""Runs one attack. Intentionally short: the logic is in gitjax.experiments.

python -m launch.attack --config=configs/ig_convnet.py --workdir=/tmp/ig
Fields are overridden ml_collections style: --config.attack.steps=100.
"""

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from gitjax import experiments

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.",
                               required=True)
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() first.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  if _MULTIHOST.value:
    jax.distributed.initialize()  # Must precede any device access.
  experiments.run_attack(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
