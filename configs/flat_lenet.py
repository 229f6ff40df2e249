r"""The flat-MLP ablation of GIT for DLG's LeNet, B = 1.

GIT's reviewers asked whether GIT's gain comes from its topology (blocks that
mirror the victim's backward pass) or just from feeding a network the whole
gradient. This inverter sees exactly GIT's inputs (every gradient tensor at
unit RMS and GIT's log-norm conditioning), concatenated into one vector, and
maps it with a 2-hidden-layer GELU MLP whose width is the largest that keeps
its parameter count at or below GIT's (``configs/git_lenet.py``'s inverter,
582,427 parameters for LeNet on 32x32x3: hidden width 30, 571,242). Data,
victim, defense, optimizer and steps are GIT's (all of
``configs/git_lenet.py``'s arguments apply).

python -m launch.train_inverter --config=configs/flat_lenet.py:smoke=True \
    --workdir=/tmp/gitjax/flat_lenet_smoke
python -m launch.train_inverter \
    --config=configs/flat_lenet.py:data_dir=../shared/data/cifar10,budget=cpu,steps=4000 \
    --config.data.limit=50000 --workdir=/tmp/gitjax/flat_lenet_cpu
  The same 4,000 steps of 32 on all 50,000 CIFAR-10 training images as the
  shipped GIT (BUILD_NOTES.md has the measured result).
"""

from configs import git_lenet


def get_config(arg=None):
  config = git_lenet.base_config(arg)
  config.inverter = dict(name="flat", layers=2, hidden=0,
                         match=dict(config.inverter))
  return config
