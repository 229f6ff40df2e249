r"""Inverting Gradients on IG's ConvNet (random init), one embedded photo.

python -m launch.attack --config=configs/ig_convnet.py \
    --workdir=/tmp/gitjax/ig_convnet

breaching's ``invertinggradients`` attack: one cosine over all gradient
tensors, Adam lr 0.1 on signed gradients, x0.1 at 3/8, 5/8, 7/8 of the
iterations, [0, 1] box, TV 1e-4, label by iDLG. Default: ConvNet width 64
(breaching's 2.9M-parameter ConvNet), 4,000 iterations (the invertinggradients
notebook's budget): a GPU-sized run. ``:cpu=True`` is the 2-core CPU budget
(width 16, 2,000 iterations). Victims use PyTorch's default init
(``init="torch"``; see BUILD_NOTES.md for why).

Measured 2026-11-21, ``:cpu=True`` on the embedded photo (the astronaut),
2-core CPU with one other job: 113 s wall (setup 19 s, attack 91 s at
~22 iterations/s), label correct, PSNR 13.5 dB, SSIM 0.35, cosine loss
~1e-3: the photo's layout is visible, its detail is not. With Flax's
default init (``init=flax``) the same run stalls at loss ~0.15 and 8.5 dB.
The README's quick demo is DLG on LeNet (configs/dlg_lenet.py), which
converges on a CPU.

Args: ``batch``, ``width``, ``iterations``, ``restarts``, ``tv``, ``lr``, ``init``,
``data_dir`` (CIFAR-10 zips instead of the embedded photos), ``cpu``,
``smoke`` (12x12 images, width 2, 4 iterations: for tests).
"""

from configs import common


def ig_config(arg, victim="convnet", cpu_width=16, cpu_iterations=2000,
              **defaults):
  """The IG experiment shared by the ig_* configs."""
  arg = common.parse_arg(arg, **{
      **dict(batch=1, width=64, iterations=4000, restarts=1, tv=1e-4, lr=0.1,
             init="torch",
             data_dir="", index=0, cpu=False, smoke=False), **defaults})
  config = common.base_config()
  config.data.batch_size = arg.batch
  config.data.index = tuple(range(arg.index, arg.index + arg.batch))
  if arg.data_dir:
    config.data.name = "cifar10"
    config.data.data_dir = arg.data_dir
  width, iterations = arg.width, arg.iterations
  if arg.cpu:
    width, iterations = cpu_width, cpu_iterations
  config.victim = dict(name=victim, width=width, init=arg.init)
  config.attack = dict(name="ig", iterations=iterations, lr=arg.lr,
                       restarts=arg.restarts, tv=arg.tv,
                       chunk=min(100, iterations))
  if arg.smoke:
    config.data.image_size = 12
    config.victim.width = 2
    config.attack.update(iterations=4, chunk=2)
  return config


def get_config(arg=None):
  return ig_config(arg)
