"""Victim model registry: ``make_victim(name, **kwargs) -> Victim``."""

import functools
import inspect

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

  ``init`` ("flax", the default, "torch" or "torchvision") picks how
  ``victim.init`` draws the parameters: Flax's initializers, PyTorch's
  defaults for Dense and Conv layers (``common.torch_init``), which published
  attack numbers use, or those with torchvision's ResNet convolutions
  (N(0, 2 / fan_out), the init of inversefed's ResNet-18 that Inverting
  Gradients' and GGL's code attack).
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
  if init != "flax":
    conv_kernels = "kaiming_fan_out" if init == "torchvision" else "uniform"
    victim = victim._replace(
        init=common.torch_init(victim.init, conv_kernels),
        config={**victim.config, "init": init})
  return victim


def takes_conv(victim) -> bool:
  """Whether ``victim`` is a registered model with a ``conv`` choice."""
  make = MODELS.get(victim.name)
  return make is not None and "conv" in inspect.signature(make).parameters


@functools.lru_cache(maxsize=64)
def with_conv(victim, conv: str):
  """``victim`` with its convolutions computed by ``conv`` ("xla",
  "im2col", "auto"): the same parameters and function (``make_victim``);
  ``victim`` itself when it has no such choice. Cached: the same victim
  gets the same object, so compiled attack steps are reused across
  leaks."""
  if not takes_conv(victim):
    return victim
  return make_victim(victim.name, input_shape=tuple(victim.input_shape),
                     num_classes=victim.num_classes,
                     **{**victim.config, "conv": conv})
