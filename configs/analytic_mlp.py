r"""Analytic first-layer inversion of a fully connected victim (MLP), B = 1.

python -m launch.attack --config=configs/analytic_mlp.py \
    --workdir=/tmp/gitjax/analytic_mlp

Exact: x = dW db / (db . db) from the first Dense layer's gradients (see
gitjax/attacks/analytic.py). Measured 2026-11-21 on the embedded photo,
2-core CPU shared with other jobs: MSE 1.4e-15 (PSNR at the 100 dB cap of
gitjax.metrics), SSIM 1.0, label accuracy 1.0; attack 1.7 s, 37 s wall (the
rest is imports, data and leak setup under load).

Args: ``batch`` (B > 1 groups the per-unit ratios; exact when every example
has a ReLU unit of its own), ``hidden`` (first layer width), ``smoke``.
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, batch=1, hidden=256, smoke=False)
  config = common.base_config()
  config.data.batch_size = arg.batch
  config.victim = dict(name="mlp", hidden=(arg.hidden,), activation="relu")
  config.attack = dict(name="analytic")
  if arg.smoke:
    config.data.image_size = 8
    config.victim.hidden = (16,)
  return config
