"""CIFAR ResNets (3x3 stem, no max-pool): ResNet-18 and ResNet-20.

``width`` is the first stage's channel count (64 for ResNet-18 and 16 for
ResNet-20 by default; GI-SMN attacks ResNet-18 at width 238). BatchNorm runs
in eval mode (running statistics) unless ``train=True``.
"""

import functools
from typing import Sequence

import flax.linen as nn

from gitjax.models import common


class Block(nn.Module):
  """Basic residual block: two 3x3 convs, projection shortcut if needed."""
  features: int
  stride: int
  act: str
  conv: str = "xla"

  @nn.compact
  def __call__(self, x, train):
    act = common.activation(self.act)
    bn = functools.partial(nn.BatchNorm, use_running_average=not train)
    conv = functools.partial(common.Conv, use_bias=False, impl=self.conv)
    y = conv(self.features, (3, 3), self.stride, padding=1, name="conv1")(x)
    y = act(bn(name="bn1")(y))
    y = conv(self.features, (3, 3), padding=1, name="conv2")(y)
    y = bn(name="bn2")(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = conv(self.features, (1, 1), self.stride, name="shortcut_conv")(x)
      x = bn(name="shortcut_bn")(x)
    return act(x + y)


class Model(nn.Module):
  stage_sizes: Sequence[int]
  width: int
  num_classes: int = 10
  activation: str = "relu"
  conv: str = "xla"

  @nn.compact
  def __call__(self, x, train=False):  # x: [B, H, W, C]
    act = common.activation(self.activation)
    x = common.Conv(self.width, (3, 3), padding=1, use_bias=False,
                    impl=self.conv, name="stem_conv")(x)
    x = act(nn.BatchNorm(use_running_average=not train, name="stem_bn")(x))
    for s, n in enumerate(self.stage_sizes):
      for b in range(n):
        stride = 2 if s > 0 and b == 0 else 1
        x = Block(self.width * 2**s, stride, self.activation, self.conv,
                  name=f"stage{s}_block{b}")(x, train)
    x = x.mean(axis=(1, 2))  # [B, F]
    return nn.Dense(self.num_classes, name="head")(x), x


_STAGES = {"resnet18": (2, 2, 2, 2), "resnet20": (3, 3, 3)}
_DEFAULT_WIDTH = {"resnet18": 64, "resnet20": 16}


def make(name="resnet18", input_shape=(32, 32, 3), num_classes=10,
         width=None, activation="relu", conv="auto"):
  width = width or _DEFAULT_WIDTH[name]
  common.activation(activation)  # Fails early on an unknown name.
  conv = common.resolve_conv(conv)
  module = Model(_STAGES[name], width, num_classes, activation, conv)
  config = dict(width=width, activation=activation)
  return common.from_linen(name, config, module, input_shape, num_classes)
