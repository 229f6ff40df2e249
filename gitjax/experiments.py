"""Experiment bodies that the launchers call: ``run_attack``, ``run_benchmark``.

``make_case`` turns a config into one attacked round (data, victim, leak,
ground truth); ``attack_case`` runs the configured attack on it; ``evaluate``
scores the result. Tests and benchmarks call these directly.
"""

import importlib
import json
import logging
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from gitjax import attacks
from gitjax import data as data_lib
from gitjax import leak as leak_lib
from gitjax import metrics
from gitjax import models
from gitjax import report
from gitjax import rundir
from gitjax import validate
from gitjax import victim as victim_lib
from gitjax.errors import EmptyLeakError
from gitjax.errors import InputError

BENCHMARKS = (
    "per_example_grads", "dlg_lenet_cifar10", "ig_convnet_cifar10",
    "ig_speed", "tensor_synthetic", "tensor_mnist", "git_lenet_cifar10",
    "git_robustness", "ggl_celeba_defenses", "gismn_cifar10")


class Case(NamedTuple):
  """One simulated round: what the attacker sees and what it should find."""
  victim: victim_lib.Victim
  variables: Any  # The server's global model.
  leak: leak_lib.Leak
  truth: leak_lib.GroundTruth
  dataset: data_lib.Dataset  # The sampled private images, in [0, 1].


def _plain(x):
  return x.to_dict() if hasattr(x, "to_dict") else x


def load_data(cfg_data) -> data_lib.Dataset:
  """Loads the dataset named in ``config.data``."""
  d = _plain(cfg_data)
  return data_lib.load(
      d["name"], data_dir=d.get("data_dir"), split=d.get("split", "test"),
      image_size=d.get("image_size"), channels=d.get("channels"),
      **dict(d.get("options") or {}))


def make_victim(config, dataset: data_lib.Dataset) -> victim_lib.Victim:
  kw = dict(_plain(config.victim))
  name = kw.pop("name")
  kw.setdefault("input_shape", tuple(dataset.images.shape[1:]))
  if name != "two_layer":
    kw.setdefault("num_classes", dataset.num_classes)
  return models.make_victim(name, **kw)


def make_case(config, dataset: data_lib.Dataset | None = None) -> Case:
  """Samples the private batch, builds the victim, and simulates the leak."""
  d = _plain(config.data)
  dataset = dataset if dataset is not None else load_data(d)
  validate.check_data(config, dataset)
  n = d.get("batch_size", 1) * d.get("num_clients", 1)
  if d.get("index"):
    private = data_lib.subset(dataset, list(d["index"])[:n])
  else:
    private = data_lib.sample(
        dataset, n, config.seed, classes=d.get("classes"),
        distinct_labels=d.get("distinct_labels", False))
  victim = make_victim(config, dataset)
  validate.check_victim_input(victim)
  variables = victim_lib.init_variables(victim,
                                        jax.random.key(config.victim_seed))
  mean, std = tuple(d.get("mean", (0.0,))), tuple(d.get("std", (1.0,)))
  xs = jnp.asarray(data_lib.normalize(private.images, mean, std))
  ys = jnp.asarray(private.labels)
  if victim.loss == "squared":
    ys = ys.astype(jnp.float32)
  lk = _plain(config.leak)
  leak, truth = leak_lib.simulate(
      victim, variables, xs, ys, jax.random.key(config.seed + 1),
      protocol=lk.get("protocol", "fedsgd"),
      protocol_config=dict(lk.get("protocol_config") or {}),
      defense=lk.get("defense"), labels_shared=lk.get("labels_shared", False),
      defense_known=lk.get("defense_known", True),
      discrepancy=lk.get("discrepancy"),
      num_clients=d.get("num_clients", 1),
      tell_batch_size=lk.get("tell_batch_size", True), mean=mean, std=std)
  return Case(victim, variables, leak, truth, private)


def attack_case(case: Case, attack_config, key) -> attacks.Reconstruction:
  """Validates the leak and runs the attack named in ``attack_config``."""
  fn = attacks.get(_plain(attack_config)["name"])
  leak_lib.validate(case.leak, case.victim)
  return fn(case.leak, case.victim, attack_config, key)


def evaluate(rec: attacks.Reconstruction, case: Case, config) -> dict:
  """Scores a reconstruction against the ground truth, on [0, 1] pixels."""
  return _score(rec, case, config, *_unit_images(rec, case))


def _score(rec, case, config, x_hat, x, n_hat) -> dict:
  ev = _plain(config.eval)
  labels = None if case.victim.loss == "squared" else case.truth.labels
  result = metrics.score(
      x_hat, x, data_range=ev.get("data_range", 1.0),
      labels_hat=rec.labels if labels is not None else None, labels=labels,
      lpips_net=ev.get("lpips_net"))
  result["num_reconstructed"] = n_hat
  return result


def _unit_images(rec, case):
  """Reconstructions and truth as [B, H, W, C] on [0, 1]; returns
  (x_hat, x, B').

  An attack that estimates the batch size (the tensor attack without
  ``tell_batch_size``) may return B' != B images: ``metrics.fit_to_batch``
  assigns them to the truth by MSE (missing ones count as flat 0.5 images).
  """
  image_shape = _image_shape(case)
  x = leak_lib.to_unit_range(case.leak, case.truth.images)
  x = np.asarray(x, np.float32).reshape((x.shape[0],) + image_shape)
  x_hat = jnp.clip(leak_lib.to_unit_range(case.leak, rec.images), 0.0, 1.0)
  size = int(np.prod(image_shape))
  if x_hat.size % size:
    raise ValueError(f"reconstruction of shape {tuple(x_hat.shape)} cannot be "
                     f"read as images of shape {image_shape}")
  x_hat = np.asarray(x_hat, np.float32).reshape((-1,) + image_shape)
  n_hat, b = x_hat.shape[0], x.shape[0]
  if n_hat != b:
    logging.warning("The attack returned %d images for a batch of %d; scored "
                    "after assigning them by MSE (missing ones count as flat "
                    "0.5 images).", n_hat, b)
    x_hat = metrics.fit_to_batch(x_hat, x)
  return x_hat, x, n_hat


def _image_shape(case: Case) -> tuple:
  shape = tuple(case.victim.input_shape)
  if len(shape) == 3:
    return shape
  return tuple(case.dataset.images.shape[1:])


def check_leak(leak: leak_lib.Leak, if_empty: str = "warn") -> dict:
  """``leak.message_status``; logs a warning (or refuses) if it is empty."""
  status = leak_lib.message_status(leak)
  if status["empty"]:
    msg = (f"the leaked message carries nothing: all {status['entries']} "
           f"entries are zero ({status['zero']}) or non-finite "
           f"({status['nonfinite']}), e.g. a defense removed everything; a "
           "reconstruction from it is the attack's own starting point")
    if if_empty == "refuse":
      raise EmptyLeakError(msg + " (config.leak.if_empty='refuse')")
    logging.warning("%s", msg)
    status["warning"] = msg
  return status


def run_attack(config: mlc.ConfigDict, workdir: str) -> dict:
  """Runs one attack and writes its run directory.

  Checks the config first (``validate.check_experiment``) and opens the
  workdir with ``rundir.open_run`` (a finished run is returned, not redone).
  Writes ``config.json``, ``metrics.json`` (per image and mean: psnr, ssim,
  mse, label_accuracy, ..., and ``leak``: the message's zero/non-finite
  counts, with a warning when it carries nothing), ``grid.png`` (ground
  truth over reconstruction) and ``log.txt`` into ``workdir``. Returns the
  metrics.
  """
  validate.check_experiment(config)
  run = rundir.open_run(workdir, config, "attack")
  if run.finished is not None:
    return run.finished
  logging.info("Config:\n%s", config)
  t0 = time.time()
  case = make_case(config)
  logging.info("Leak: model=%s protocol=%s B=%s clients=%d defense=%s",
               case.leak.model, case.leak.protocol, case.leak.batch_size,
               case.leak.num_clients, case.leak.defense)
  status = check_leak(case.leak, _plain(config.leak).get("if_empty", "warn"))
  t1 = time.time()
  rec = attack_case(case, config.attack, jax.random.key(config.seed + 2))
  jax.block_until_ready(rec.images)
  t2 = time.time()
  x_hat, x, n_hat = _unit_images(rec, case)
  result = _score(rec, case, config, x_hat, x, n_hat)
  result["leak"] = status
  result["attack_info"] = rec.info
  result["seconds"] = {"setup": t1 - t0, "attack": t2 - t1}
  _save_pictures(run.path, x_hat, x, result)
  run.finish(result)  # Last: metrics.json marks the run finished.
  logging.info("Mean metrics: %s", json.dumps(result["mean"]))
  logging.info("Run directory: %s", run.path)
  return result


def _save_pictures(workdir, x_hat, x, result):
  perm = result.get("permutation")
  if perm is not None:
    x_hat = x_hat[np.asarray(perm)]
  titles = [f"{p:.1f} dB" for p in result["per_image"]["psnr"]]
  report.save_grid(os.path.join(workdir, "grid.png"),
                   [x, x_hat],
                   row_titles=["ground truth", "reconstruction"],
                   image_titles=[None, titles])


def run_benchmark(config: mlc.ConfigDict, workdir: str) -> dict:
  """Runs ``gitjax.benchmarks.<config.benchmark>`` and writes results.json.

  The workdir is opened with ``rundir.open_run``: a finished benchmark is
  returned as stored, never run again over its results.
  """
  name = config.get("benchmark")
  if name not in BENCHMARKS:
    raise InputError(f"config.benchmark: unknown benchmark {name!r}; known: "
                     f"{list(BENCHMARKS)}")
  if "attack" in config and config.attack.get("name") is not None:
    validate.check_attack(config.attack)
  run = rundir.open_run(workdir, config, "benchmark")
  if run.finished is not None:
    return run.finished
  module = importlib.import_module(f"gitjax.benchmarks.{name}")
  t0 = time.time()
  results = module.run(config, run.path)
  results.setdefault("benchmark", name)
  results.setdefault("wall_seconds", time.time() - t0)
  results.setdefault("date", time.strftime("%Y-%m-%d"))
  results.setdefault("device", device_description())
  run.finish(results)
  logging.info("Results written to %s", run.file(run.final_file))
  return results


def device_description() -> str:
  devs = jax.devices()
  kind = devs[0].device_kind
  return f"{len(devs)} x {kind} ({jax.default_backend()}, {os.cpu_count()} " \
         f"host cores)"
