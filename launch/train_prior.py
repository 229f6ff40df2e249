"""Trains a generative prior (DCGAN or style-based, WGAN-GP) for GGL/GI-SMN.

python -m launch.train_prior --config=configs/prior_dcgan_celeba.py:cpu=True \
    --workdir=/tmp/gitjax/prior_dcgan_celeba
Started again on the same workdir, training resumes from the last checkpoint.
"""

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from gitjax import train_prior

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Prior training config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.",
                               required=True)
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() first.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  if _MULTIHOST.value:
    jax.distributed.initialize()  # Must precede any device access.
  train_prior.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
