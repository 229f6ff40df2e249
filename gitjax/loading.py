"""Loads trained inverters and generative priors from their run directories.

The attacks load what ``launch.train_inverter`` and ``launch.train_prior``
trained through this module, never through the trainers: it needs only what
rebuilds a model (``inverter_setup``, ``prior_setup``) and the checkpoints.

Loads are cached per absolute directory (and step), keyed also by the
modification time of ``<directory>/checkpoints``, so a run that saved a newer
checkpoint since is loaded again.

Both loaders also take the name of weights shipped in the package
(``gitjax.pretrained``, e.g. ``loading.inverter("git_lenet_cifar10")``): a
string without a path separator that is not an existing directory and is
listed in ``gitjax/weights/manifest.json``. The model is rebuilt from the
manifest's config (and run_info) exactly as from a workdir's config.json
(and run_info.json), and its weights are read from the verified ``.npz``;
``Trained.workdir`` is then ``"pretrained:<name>"``. Such loads are cached
per name, keyed also by the entry and its files' modification times.
"""

import functools
import json
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections as mlc

from gitjax import checkpoint
from gitjax import generators as gen_lib
from gitjax import inverter_setup
from gitjax import pretrained
from gitjax import prior_setup
from gitjax.errors import InputError

CONFIG = "config.json"  # Written by ``rundir.open_run``.
CHECKPOINTS = "checkpoints"
PRETRAINED = "pretrained:"  # Trained.workdir of shipped weights: + name.


def shipped_name(workdir) -> str | None:
  """The shipped weights' name a ``Trained.workdir`` gives
  ("pretrained:<name>"), or None for a run directory."""
  if isinstance(workdir, str) and workdir.startswith(PRETRAINED):
    return workdir[len(PRETRAINED):]
  return None


class RunNotFoundError(FileNotFoundError, InputError):
  """A training run's directory, config or checkpoint is missing.

  A ``FileNotFoundError``, as these errors always were, and an
  ``InputError``, which the launchers print as one line.
  """


class Trained(NamedTuple):
  """A trained inverter, as ``inverter`` returns it."""
  config: Any  # The training config (ConfigDict).
  setup: inverter_setup.Setup
  params: Any
  step: int
  workdir: str  # The absolute workdir, or "pretrained:<name>" if shipped.


def _checkpoints_mtime(directory: str) -> float:
  path = os.path.join(directory, CHECKPOINTS)
  return os.path.getmtime(path) if os.path.isdir(path) else 0.0


def _read_json(directory: str, name: str) -> Any:
  with open(os.path.join(directory, name), encoding="utf-8") as f:
    return json.load(f)


def _restore(directory: str, step: int | None, like_fn) -> tuple[int, Any]:
  """(step, state) of ``step`` (default: the latest) into ``like_fn()``."""
  ckpt = checkpoint.Checkpointer(os.path.join(directory, CHECKPOINTS),
                                 every=10**9)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise RunNotFoundError(f"no checkpoint in {directory}/{CHECKPOINTS}: "
                             "the training run has not saved one yet")
    like = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                        jax.eval_shape(like_fn))
    return int(step), ckpt.restore(step, like)
  finally:
    ckpt.close()


def inverter(directory: str, step: int | None = None) -> Trained:
  """The inverter trained in ``directory`` (latest step by default), cached.

  ``directory`` may also be the name of shipped weights (module docstring),
  bare or as ``Trained.workdir`` gives it ("pretrained:<name>"); ``step``
  must then be None or the entry's step.

  Raises:
    RunNotFoundError: if ``directory`` has no config.json or no checkpoint.
    checkpoint.CheckpointError: if the checkpoint does not match the config.
    InputError: shipped weights that fail their hash check, are not an
      inverter or do not hold ``step``.
  """
  if not directory:
    raise InputError("inverter_dir is not set: train an inverter with "
                     "`python -m launch.train_inverter` and pass its workdir "
                     "(or the name of shipped weights)")
  directory = shipped_name(directory) or directory  # Round-trips.
  if pretrained.is_name(directory):
    e = _shipped_entry(directory, "inverter")
    if step is not None and int(step) != int(e["step"]):
      raise InputError(f"pretrained weights {directory!r} hold step "
                       f"{e['step']} only; step {step} was asked for")
    return _shipped_inverter(directory, pretrained.WEIGHTS_DIR,
                             pretrained.fingerprint(directory))
  directory = os.path.abspath(os.fspath(directory))
  return _inverter(directory, step, _checkpoints_mtime(directory))


@functools.lru_cache(maxsize=8)
def _inverter(directory: str, step: int | None, mtime: float) -> Trained:
  del mtime  # Part of the cache key: a newer checkpoint reloads.
  path = os.path.join(directory, CONFIG)
  if not os.path.exists(path):
    raise RunNotFoundError(
        f"no inverter training run in {directory} (missing {path}); train "
        "one with python -m launch.train_inverter --config=... --workdir=...")
  config = mlc.ConfigDict(_read_json(directory, CONFIG))
  info = _read_json(directory, inverter_setup.RUN_INFO)
  setup = inverter_setup.make_setup(config, tuple(info["image_shape"]),
                                    int(info["num_classes"]))
  step, state = _restore(
      directory, step,
      lambda: inverter_setup.init_state(setup, 0)._asdict())
  return Trained(config, setup, state["params"], step, directory)


def generator(directory: str) -> tuple[gen_lib.Generator, Any]:
  """The generator trained in ``directory`` and its variables, cached.

  Returns:
    (generator, its variables) from the latest checkpoint of ``directory``.

  Raises:
    InputError: if ``directory`` is not set, or names shipped weights that
      fail their hash check or are not a generator.
    RunNotFoundError: if ``directory`` holds no config.json or checkpoint.
  """
  if not directory:
    raise InputError("generator_dir is not set: train a prior with "
                     "`python -m launch.train_prior` and pass its workdir "
                     "(or the name of shipped weights)")
  if pretrained.is_name(directory):
    _shipped_entry(directory, "generator")
    return _shipped_generator(directory, pretrained.WEIGHTS_DIR,
                              pretrained.fingerprint(directory))
  directory = os.path.abspath(os.fspath(directory))
  return _generator(directory, _checkpoints_mtime(directory))


def generator_config(directory: str) -> mlc.ConfigDict:
  """The training config of a prior: a ``train_prior`` workdir's
  config.json or a shipped generator's manifest entry."""
  if pretrained.is_name(directory):
    return mlc.ConfigDict(_shipped_entry(directory, "generator")["config"])
  directory = os.path.abspath(os.fspath(directory))
  if not os.path.exists(os.path.join(directory, CONFIG)):
    raise RunNotFoundError(
        f"{os.path.join(directory, CONFIG)} not found: generator_dir must be "
        "the workdir of a launch.train_prior run")
  return mlc.ConfigDict(_read_json(directory, CONFIG))


@functools.lru_cache(maxsize=4)
def _generator(directory: str, mtime: float
               ) -> tuple[gen_lib.Generator, Any]:
  del mtime  # Part of the cache key: a newer checkpoint reloads.
  models = prior_setup.make_models(generator_config(directory))
  _, state = _restore(
      directory, None,
      lambda: prior_setup.create_train_state(models, jax.random.key(0)))
  return models.gen, prior_setup.prior_variables(state)


def _shipped_entry(name: str, kind: str) -> dict:
  e = pretrained.entry(name)
  if e["kind"] != kind:
    raise InputError(f"pretrained weights {name!r} are of kind "
                     f"{e['kind']!r}, not {kind!r}")
  return e


@functools.lru_cache(maxsize=8)
def _shipped_inverter(name: str, weights_dir: str, key: str) -> Trained:
  del key  # Part of the cache key: changed weights reload.
  e = pretrained.entry(name, weights_dir)
  config = mlc.ConfigDict(e["config"])
  info = e["run_info"] or {}
  if "image_shape" not in info or "num_classes" not in info:
    raise InputError(f"pretrained weights {name!r}: the manifest entry has "
                     "no run_info with image_shape and num_classes")
  setup = inverter_setup.make_setup(config, tuple(info["image_shape"]),
                                    int(info["num_classes"]))
  like = jax.eval_shape(lambda: inverter_setup.init_state(setup, 0).params)
  params = pretrained.load_tree(name, like, weights_dir)
  return Trained(config, setup, params, int(e["step"]), PRETRAINED + name)


@functools.lru_cache(maxsize=4)
def _shipped_generator(name: str, weights_dir: str, key: str
                       ) -> tuple[gen_lib.Generator, Any]:
  del key  # Part of the cache key: changed weights reload.
  e = pretrained.entry(name, weights_dir)
  models = prior_setup.make_models(mlc.ConfigDict(e["config"]))
  like = jax.eval_shape(
      lambda: prior_setup.create_train_state(models, jax.random.key(0))["gen"])
  return models.gen, pretrained.load_tree(name, like, weights_dir)
