"""The LeNet of DLG (Zhu et al. 2019) and Learning-to-Invert.

Three 5x5 convolutions with 12 channels (strides 2, 2, 1, "same" padding) and
sigmoid activations, then a Dense head: 768 -> 10 on 32x32 inputs. DLG and LTI
initialize every weight and bias from uniform(-0.5, 0.5) (``uniform_init``).
"""

import flax.linen as nn

from gitjax.models import common


class Model(nn.Module):
  num_classes: int = 10
  channels: int = 12
  activation: str = "sigmoid"
  uniform_init: float | None = 0.5  # None: Flax's default initializers.
  conv: str = "xla"

  @nn.compact
  def __call__(self, x, train=False):  # x: [B, H, W, C]
    del train
    act = common.activation(self.activation)
    kw = {}
    if self.uniform_init:
      init = common.uniform_init(self.uniform_init)
      kw = dict(kernel_init=init, bias_init=init)
    for i, stride in enumerate((2, 2, 1)):
      x = common.Conv(self.channels, (5, 5), strides=stride, padding=2,
                      impl=self.conv, name=f"conv{i}", **kw)(x)
      x = act(x)
    x = x.reshape((x.shape[0], -1))  # [B, F]
    return nn.Dense(self.num_classes, name="head", **kw)(x), x


def make(input_shape=(32, 32, 3), num_classes=10, channels=12,
         activation="sigmoid", uniform_init=0.5, conv="auto"):
  common.activation(activation)  # Fails early on an unknown name.
  conv = common.resolve_conv(conv)
  module = Model(num_classes, channels, activation, uniform_init, conv)
  config = dict(channels=channels, activation=activation,
                uniform_init=uniform_init)
  return common.from_linen("lenet", config, module, input_shape, num_classes)
