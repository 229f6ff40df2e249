"""Runs one benchmark and writes WORKDIR/results.json.

python -m launch.benchmark --config=configs/benchmarks/per_example_grads.py \
    --workdir=/tmp/bench
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from gitjax import experiments

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Benchmark config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.",
                               required=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  experiments.run_benchmark(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
