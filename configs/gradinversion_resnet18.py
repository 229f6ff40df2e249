r"""GradInversion (Yin et al. 2021) on a CIFAR ResNet-18, one embedded photo.

python -m launch.attack --config=configs/gradinversion_resnet18.py:cpu=True \
    --workdir=/tmp/gitjax/gradinversion_resnet18

Gradient matching with DeepInversion's BatchNorm prior and Yin et al.'s
group consistency over 4 restarts (``gitjax/attacks/gradinversion.py``;
weights as breaching's ``seethroughgradients.yaml``). The BN prior needs
running statistics that mean something: ``config.calibration`` sets them
from 64 photos of the embedded train split (the attacked photo is from the
test split), as a server that trained on its data would hold. Default: width 64, 4,000 iterations (a GPU
run); ``:cpu=True``: width 16, 500 iterations; ``:smoke=True``: 12x12,
width 2, 4 iterations (tests). Compare with IG on the same leaks:
``configs/benchmarks/gradinversion_resnet18.py``.
"""

from configs import common


def attack_block(**overrides) -> dict:
  """GradInversion's attack block (the benchmark uses it too)."""
  return dict(dict(name="gradinversion", iterations=4000, restarts=4,
                   group=0.01, group_every=100, chunk=100, progress=False),
              **overrides)


def get_config(arg=None):
  arg = common.parse_arg(arg, cpu=False, smoke=False, index=0)
  config = common.base_config()
  config.data.index = (arg.index,)
  config.victim = dict(name="resnet18", width=64, init="torch")
  config.calibration = dict(num_images=64, split="train")
  config.attack = attack_block()
  if arg.cpu:
    config.victim.width = 16
    config.attack.iterations = 500
  if arg.smoke:
    config.data.image_size = 12
    config.calibration.num_images = 8
    config.victim.width = 2
    config.attack.update(iterations=4, group_every=2, chunk=2, restarts=2)
  return config
