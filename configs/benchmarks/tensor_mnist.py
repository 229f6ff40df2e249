r"""Tensor attack on unit-norm MNIST digits: B in {2, 4, 8}, m in {1e4, 1e5}.

python -m launch.benchmark --config=configs/benchmarks/tensor_mnist.py \
    --workdir=/tmp/gitjax/bench_tensor_mnist

Needs the MNIST test images (``data_dir``, default ../shared/data/mnist).
Median |cosine| between true and recovered digits over ``trials`` random
batches per point (target >= 0.95 at B = 2, m = 10^5); truth-over-recovery
grids in WORKDIR/grid_B*.png. Results in WORKDIR/results.json. Measured
with trials=4 on a shared 2-core CPU (34 minutes): B = 2, m = 10^5 median
cosine 0.991 from the gradient dL/da alone, 1.000 after L-BFGS; table in
gitjax/benchmarks/tensor_mnist.py. trials=8 doubles the time.
"""

import ml_collections as mlc

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, trials=8, data_dir="../shared/data/mnist",
                         smoke=False)
  config = mlc.ConfigDict()  # No attack-experiment blocks: none is used.
  config.benchmark = "tensor_mnist"
  config.data = dict(name="mnist", data_dir=arg.data_dir, split="test")
  config.batch_sizes = (2, 4, 8)
  config.widths = (10_000, 100_000)
  config.trials = arg.trials
  config.method = "simultaneous"
  config.match_steps = 100
  config.w_grad = True  # Also report the dL/dw-subspace variant.
  config.chunk_size = 4096
  config.target = 0.95
  if arg.smoke:  # scikit-learn's 8x8 digits: no data download.
    config.data.update(name="digits", data_dir="")
    config.batch_sizes = (2,)
    config.widths = (3_000,)
    config.trials = 1
    config.match_steps = 10
  return config
