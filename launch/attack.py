"""Runs one attack. Intentionally short: the logic is in gitjax.experiments.

python -m launch.attack --config=configs/ig_convnet.py --workdir=/tmp/ig
Fields are overridden ml_collections style: --config.attack.iterations=100,
lists too: --config.leak.defense='[{"name": "prune", "rate": 0.9}]'.
Bad input is one line on stderr and exit status 2 (launch/common.py).
"""

from gitjax import experiments
from launch import common

_FLAGS = common.define_flags("Experiment config file.")

if __name__ == "__main__":
  common.run(experiments.run_attack, _FLAGS)
