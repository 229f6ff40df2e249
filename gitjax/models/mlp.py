"""Fully connected victim."""

from typing import Sequence

import flax.linen as nn

from gitjax.models import common


class Model(nn.Module):
  """MLP: flatten, hidden Dense layers with an activation, Dense head."""
  num_classes: int = 10
  hidden: Sequence[int] = (256, 256)
  activation: str = "sigmoid"

  @nn.compact
  def __call__(self, x, train=False):  # x: [B, ...]
    del train  # No BatchNorm.
    act = common.activation(self.activation)
    x = x.reshape((x.shape[0], -1))  # [B, D]
    for i, h in enumerate(self.hidden):
      x = act(nn.Dense(h, name=f"dense{i}")(x))
    return nn.Dense(self.num_classes, name="head")(x), x


def make(input_shape=(32, 32, 3), num_classes=10, hidden=(256, 256),
         activation="sigmoid"):
  common.activation(activation)  # Fails early on an unknown name.
  module = Model(num_classes, tuple(hidden), activation)
  config = dict(hidden=list(hidden), activation=activation)
  return common.from_linen("mlp", config, module, input_shape, num_classes)


