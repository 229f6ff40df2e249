r"""Inverting Gradients on a random-init CIFAR ResNet-18, one embedded photo.

python -m launch.attack --config=configs/ig_resnet18.py \
    --workdir=/tmp/gitjax/ig_resnet18

IG (cosine, signed Adam lr 0.1, step decay, box) with TV 1e-3 (breaching's
CIFAR-10 ResNet-18 notebook value), 4,000 iterations, width 64 (11.2M
parameters): a GPU-sized run. ``:cpu=True`` is the CPU budget (width 8,
200 iterations). Measured 2026-11-21, ``:cpu=True`` (PyTorch init),
2-core CPU with one other job: label correct, PSNR 12.8 dB, SSIM 0.44,
65 s wall (attack 18 s; Flax init: 9.2 dB). Args as configs/ig_convnet.py.
"""

from configs import ig_convnet


def get_config(arg=None):
  return ig_convnet.ig_config(arg, victim="resnet18", cpu_width=8,
                              cpu_iterations=200, tv=1e-3)
