"""Shared config pieces: argument parsing and the default experiment."""

import ml_collections as mlc

from gitjax.errors import InputError


# Generative priors shipped in the package (gitjax/weights/manifest.json);
# attack configs use them unless ``generator_dir`` names a workdir.
SHIPPED_PRIORS = dict(celeba="dcgan_celeba32", cifar10="style_cifar10_32")
# The Gaussian image prior of the git_posterior attack (gitjax.gaussian_prior).
SHIPPED_GAUSSIAN_PRIOR = "gaussian_cifar10"


def smoke_image_size(generator_dir: str) -> int:
  """Smoke runs attack embedded photos at the prior's size: 32 for a shipped
  prior, 8 for the smoke prior a docstring's train_prior command makes."""
  return 32 if generator_dir in SHIPPED_PRIORS.values() else 8


def select_cases(cases: mlc.ConfigDict, names: str) -> mlc.ConfigDict:
  """The cases named in ``names`` ("clip-prune"); all of them when
  ``names`` is empty (config arg ``cases``). A ConfigDict keeps its keys
  sorted, so they run in name order whatever order ``names`` gives."""
  if not names:
    return cases
  wanted = names.split("-")
  unknown = [n for n in wanted if n not in cases]
  if unknown:
    raise InputError(f"config arg 'cases': unknown {', '.join(unknown)}; "
                     f"known: {', '.join(cases)}")
  return mlc.ConfigDict({n: cases[n].to_dict() for n in wanted})


def parse_arg(arg: str | None, **defaults) -> mlc.ConfigDict:
  """Parses big_vision-style config args: ``configs/x.py:batch=4,smoke=True``.

  Every key must be one of ``defaults``; values are converted to the type of
  the default (bools accept True/False/1/0).
  """
  out = mlc.ConfigDict(defaults)
  if not arg:
    return out
  for item in arg.split(","):
    if not item:
      continue
    if "=" not in item:
      raise InputError(f"config arg {item!r} is not key=value; known: "
                       f"{_known(defaults)}")
    k, v = item.split("=", 1)
    if k not in defaults:
      raise InputError(f"unknown config arg {k!r}; known: {_known(defaults)}")
    d = defaults[k]
    if isinstance(d, bool):
      if v not in ("True", "False", "true", "false", "1", "0"):
        raise InputError(f"config arg {k!r} must be a bool (True/False), got "
                         f"{v!r}")
      out[k] = v in ("True", "true", "1")
    elif d is None:
      out[k] = v
    else:
      try:
        out[k] = type(d)(v)
      except ValueError:
        raise InputError(f"config arg {k!r} must be {type(d).__name__} "
                         f"(default {d!r}), got {v!r}") from None
  return out


def _known(defaults) -> str:
  return ", ".join(f"{k}={v!r}" for k, v in sorted(defaults.items()))


def base_config() -> mlc.ConfigDict:
  """The default experiment: embedded data, random-init LeNet, FedSGD, IG."""
  config = mlc.ConfigDict()
  config.seed = 0
  config.data = dict(
      name="embedded", data_dir=mlc.config_dict.placeholder(str), split="test", image_size=32,
      channels=3, batch_size=1, num_clients=1, mean=(0.0,), std=(1.0,),
      classes=mlc.config_dict.placeholder(tuple), distinct_labels=False,
      index=mlc.config_dict.placeholder(tuple), options={})
  config.victim = dict(name="lenet")
  config.victim_seed = 0
  config.leak = dict(protocol="fedsgd", protocol_config={}, defense=[],
                     labels_shared=False, defense_known=True,
                     discrepancy=None, tell_batch_size=True,
                     if_empty="warn")  # "refuse": stop on an empty message.
  config.attack = dict(name="ig")
  config.eval = dict(data_range=1.0,
                     lpips_net=mlc.config_dict.placeholder(str),
                     lpips_also=())  # More LPIPS nets: ("vgg",).
  return config
