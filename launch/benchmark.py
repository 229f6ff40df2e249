"""Runs one benchmark and writes WORKDIR/results.json.

python -m launch.benchmark --config=configs/benchmarks/per_example_grads.py \
    --workdir=/tmp/bench
A finished benchmark's workdir is never written again (gitjax/rundir.py).
"""

from gitjax import experiments
from launch import common

_FLAGS = common.define_flags("Benchmark config file.")

if __name__ == "__main__":
  common.run(experiments.run_benchmark, _FLAGS)
