"""The ConvNet of Inverting Gradients (Geiping et al. 2020).

Eight 3x3 conv-BatchNorm-ReLU layers of widths w, 2w, 2w, 4w, 4w, 4w, (pool),
4w, 4w, (pool), then a Dense head; w = 64 gives breaching's 2.9M-parameter
``ConvNet``.
"""

import flax.linen as nn

from gitjax.models import common

_WIDTHS = (1, 2, 2, 4, 4, 4, 4, 4)
_POOL_AFTER = (5, 7)


class Model(nn.Module):
  num_classes: int = 10
  width: int = 64
  activation: str = "relu"
  batch_norm: bool = True
  conv: str = "xla"

  @nn.compact
  def __call__(self, x, train=False):  # x: [B, H, W, C]
    act = common.activation(self.activation)
    for i, mult in enumerate(_WIDTHS):
      x = common.Conv(mult * self.width, (3, 3), padding=1, impl=self.conv,
                      name=f"conv{i}")(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, name=f"bn{i}")(x)
      x = act(x)
      if i in _POOL_AFTER:
        x = nn.max_pool(x, (3, 3), strides=(3, 3))
    x = x.reshape((x.shape[0], -1))  # [B, F]
    return nn.Dense(self.num_classes, name="head")(x), x


def make(input_shape=(32, 32, 3), num_classes=10, width=64,
         activation="relu", batch_norm=True, conv="auto"):
  if min(input_shape[:2]) < 9:
    raise ValueError(
        f"convnet needs images of at least 9x9 (two 3x3 poolings); got "
        f"{tuple(input_shape)}")
  common.activation(activation)  # Fails early on an unknown name.
  conv = common.resolve_conv(conv)
  module = Model(num_classes, width, activation, batch_norm, conv)
  config = dict(width=width, activation=activation, batch_norm=batch_norm)
  return common.from_linen("convnet", config, module, input_shape,
                           num_classes)
