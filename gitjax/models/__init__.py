"""Victim model registry: ``make_victim(name, **kwargs) -> Victim``."""

import functools

from gitjax.models import common
from gitjax.models import convnet
from gitjax.models import lenet
from gitjax.models import mlp
from gitjax.models import resnet
from gitjax.models import two_layer

MODELS = {
    "mlp": mlp.make,
    "lenet": lenet.make,
    "convnet": convnet.make,
    "resnet18": functools.partial(resnet.make, "resnet18"),
    "resnet20": functools.partial(resnet.make, "resnet20"),
    "two_layer": two_layer.make,
}


def make_victim(name: str, **kwargs):
  """Builds a registered victim; kwargs are the model's config fields.

  ``init`` ("flax", the default, or "torch") picks how ``victim.init`` draws
  the parameters: Flax's initializers, or PyTorch's defaults for Dense and
  Conv layers (``common.torch_init``), which published attack numbers use.
  The convolutional victims (lenet, convnet, resnet*) also take ``conv``:
  "auto" (the default: "im2col" on CPU, "xla" elsewhere), "xla" or "im2col";
  it changes how convolutions are computed, never the parameters or the
  function (``common.Conv``), so it is not part of ``victim.config`` and a
  leak made with one implementation is attacked with either.
  """
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
  init = kwargs.pop("init", "flax")
  if init not in common.INITS:
    raise ValueError(f"unknown init {init!r} for model {name!r}; known: "
                     f"{common.INITS}")
  try:
    victim = MODELS[name](**kwargs)
  except TypeError as e:
    raise ValueError(f"bad config for model {name!r}: {e}") from None
  if init == "torch":
    victim = victim._replace(init=common.torch_init(victim.init),
                             config={**victim.config, "init": "torch"})
  return victim
