r"""Inverting Gradients on IG's ConvNet at batch 8 (embedded photos).

python -m launch.attack --config=configs/ig_batch8.py \
    --workdir=/tmp/gitjax/ig_batch8

Eight images in one FedSGD gradient; label counts read off the head's
gradient (LLG-style, gitjax/attacks/labels.py), reconstructions matched to
the ground truth by order-free assignment for scoring. Default ConvNet
width 64, 4,000 iterations (GPU-sized); ``:cpu=True`` width 8, 300
iterations. Measured 2026-11-21, ``:cpu=True`` (PyTorch init), 2-core
CPU with one other job: label accuracy 1.0 (all 8 label counts right),
mean PSNR 9.3 dB, SSIM 0.02, 114 s wall (attack 86 s): 300 iterations at
width 8 only check the pipeline; the GPU budget is the experiment. Args as configs/ig_convnet.py.
"""

from configs import ig_convnet


def get_config(arg=None):
  return ig_convnet.ig_config(arg, batch=8, cpu_width=8, cpu_iterations=300)
