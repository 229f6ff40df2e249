r"""Inverting Gradients on a FedAvg update of IG's ConvNet (embedded photos).

python -m launch.attack --config=configs/ig_fedavg.py \
    --workdir=/tmp/gitjax/ig_fedavg

The client takes 4 local SGD steps (2 epochs over 4 images in minibatches of
2, lr 1e-3, as breaching's ``4_fedavg_small_scale`` user) and sends the weight
difference; the attack unrolls the same steps on its trial images
(``protocols.fedavg_update``) and differentiates through them. Labels are
inferred from the update (rescaled to an average gradient). Default ConvNet
width 64, 4,000 iterations (GPU-sized); ``:cpu=True`` width 8, 300
iterations. Measured 2026-11-21, ``:cpu=True`` (PyTorch init), 2-core
CPU with one other job: the 4 labels inferred from the update (accuracy
1.0), mean PSNR 10.5 dB, SSIM 0.08, 131 s wall (attack 104 s): a pipeline
check, far from converged (Flax init: 8.1 dB).
Args as configs/ig_convnet.py plus
``lr``, ``epochs``, ``local_batch_size``.
"""

from configs import common
from configs import ig_convnet


def get_config(arg=None):
  arg = common.parse_arg(arg, batch=4, width=64, iterations=4000, restarts=1,
                         tv=1e-4, data_dir="", index=0, cpu=False,
                         smoke=False, lr=1e-3, epochs=2, local_batch_size=2)
  fed = dict(lr=arg.lr, epochs=arg.epochs,
             local_batch_size=arg.local_batch_size)
  rest = ",".join(f"{k}={v}" for k, v in arg.items() if k not in fed)
  config = ig_convnet.ig_config(rest, cpu_width=8, cpu_iterations=300)
  config.leak.protocol = "fedavg"
  config.leak.protocol_config = fed
  if arg.smoke:
    config.leak.protocol_config = dict(lr=arg.lr, epochs=1,
                                       local_batch_size=2)
  return config
