r"""Tensor attack, the paper's synthetic setting: B = 2, m = 10^4, d = 50..300.

python -m launch.benchmark --config=configs/benchmarks/tensor_synthetic.py \
    --workdir=/tmp/gitjax/bench_tensor_synthetic

X = first B basis vectors, act = t^3 + t^2, y = +-1, 4 seeds per point;
error 0.5 ||X_hat - X||_F^2 on unit directions after alignment (target
<= 0.01 at every d). Also sweeps m at d = 100 and plots the error against
m / d (error_vs_m_over_d.png). Results in WORKDIR/results.json. Measured
(2-core CPU, shared; 5 minutes): median error 0.0115 .. 0.153 for d = 50 ..
300 from the moments alone, < 1e-9 at every d after the L-BFGS refinement
(table in gitjax/benchmarks/tensor_synthetic.py).
"""

import ml_collections as mlc

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, smoke=False)
  config = mlc.ConfigDict()  # No attack-experiment blocks: none is used.
  config.benchmark = "tensor_synthetic"
  config.batch_size = 2
  config.width = 10_000
  config.dims = (50, 100, 150, 200, 250, 300)
  config.widths = (2_500, 5_000, 10_000, 20_000, 40_000)
  config.sweep_dim = 100
  config.trials = 4
  config.activation = "cubic_quadratic"
  config.method = "simultaneous"
  config.match_steps = 300
  config.target = 0.01
  if arg.smoke:
    config.width = 3_000
    config.dims = (10,)
    config.widths = (2_000, 4_000)
    config.sweep_dim = 10
    config.trials = 1
    config.match_steps = 20
  return config
