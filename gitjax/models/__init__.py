"""Victim model registry: ``make_victim(name, **kwargs) -> Victim``."""

import functools

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
  """Builds a registered victim; kwargs are the model's config fields."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
  try:
    return MODELS[name](**kwargs)
  except TypeError as e:
    raise ValueError(f"bad config for model {name!r}: {e}") from None
