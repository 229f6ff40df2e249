"""Experiment bodies that the launchers call: ``run_attack``, ``run_benchmark``.

``make_case`` turns a config into one attacked round (data, victim, leak,
ground truth); ``attack_case`` runs the configured attack on it; ``evaluate``
scores the result. Benchmarks build many rounds with ``make_cases`` (one
dataset load, one victim), sweep blocks with ``with_overrides``, and attack
many rounds with ``attack_cases``. Configs are read field by field, so a
field that nothing reads is one that a test can find
(``tests/test_benchmarks.py``).
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
from gitjax import cases as cases_lib
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
    "git_robustness", "ggl_celeba_defenses", "gismn_cifar10",
    "gradinversion_resnet18", "train_speed", "prior_coverage")


# Per-case block overrides (sweeps): see ``gitjax.cases``.
with_overrides = cases_lib.with_overrides
CASE_FIELDS = cases_lib.CASE_FIELDS


class Case(NamedTuple):
  """One simulated round: what the attacker sees and what it should find."""
  victim: victim_lib.Victim
  variables: Any  # The server's global model.
  leak: leak_lib.Leak
  truth: leak_lib.GroundTruth
  dataset: data_lib.Dataset  # The sampled private images, in [0, 1].
  status: dict | None = None  # ``check_leak``: zero/non-finite counts.


def plain(x):
  """A config block (ConfigDict) as a dict; other values as they are."""
  return x.to_dict() if hasattr(x, "to_dict") else x


_plain = plain


def load_data(cfg_data) -> data_lib.Dataset:
  """Loads the dataset named in ``config.data``."""
  d = cfg_data
  return data_lib.load(
      d.get("name"), data_dir=d.get("data_dir"), split=d.get("split", "test"),
      image_size=d.get("image_size"), channels=d.get("channels"),
      **dict(_plain(d.get("options")) or {}))


def make_victim(config, dataset: data_lib.Dataset) -> victim_lib.Victim:
  kw = dict(_plain(config.victim))
  name = kw.pop("name")
  kw.setdefault("input_shape", tuple(dataset.images.shape[1:]))
  if name != "two_layer":
    kw.setdefault("num_classes", dataset.num_classes)
  return models.make_victim(name, **kw)


def make_case(config, dataset: data_lib.Dataset | None = None) -> Case:
  """Samples the private batch, builds the victim, and simulates the leak."""
  return make_cases(config, dataset)[0]


def make_cases(config, dataset: data_lib.Dataset | None = None,
               count: int = 1, *, sample_seeds=None) -> list[Case]:
  """``count`` attacked rounds of one victim, from one dataset load.

  Round i attacks n = batch_size x num_clients private images: entries
  [i n, (i + 1) n) of ``config.data.index`` when it is set, else the i-th
  slice of one seeded sample of count x n images (seed ``config.seed``), or,
  given ``sample_seeds``, a sample of its own (seed ``sample_seeds[i]``).
  The victim is initialized once (``config.victim_seed``); round i's leak
  is simulated with key ``config.seed + 1 + i`` (``make_case`` is
  ``make_cases(config)[0]``) and checked with ``check_leak`` (``config.leak.if_empty``).
  """
  d, lk = config.data, config.leak
  dataset = dataset if dataset is not None else load_data(d)
  privates = _private_batches(d, dataset, count, config.seed, sample_seeds)
  victim = make_victim(config, dataset)
  validate.check_victim_input(victim)
  variables = victim_lib.init_variables(victim,
                                        jax.random.key(config.victim_seed))
  mean, std = tuple(d.get("mean", (0.0,))), tuple(d.get("std", (1.0,)))
  if config.get("calibration"):
    variables = calibrate(config, dataset, victim, variables, mean, std)
  kw = dict(
      protocol=lk.get("protocol", "fedsgd"),
      protocol_config=dict(_plain(lk.get("protocol_config")) or {}),
      defense=_plain(lk.get("defense")),
      labels_shared=lk.get("labels_shared", False),
      defense_known=lk.get("defense_known", True),
      discrepancy=_plain(lk.get("discrepancy")),
      num_clients=d.get("num_clients", 1),
      tell_batch_size=lk.get("tell_batch_size", True), mean=mean, std=std)
  if_empty = lk.get("if_empty", "warn")
  cases = []
  for i, private in enumerate(privates):
    case = case_from_batch(victim, variables, private,
                           jax.random.key(config.seed + 1 + i), **kw)
    cases.append(case._replace(status=check_leak(case.leak, if_empty)))
  return cases


def calibrate(config, dataset, victim, variables, mean, std):
  """The victim with BatchNorm running statistics of public images.

  ``config.calibration``: ``num_images`` images (0: off) sampled with seed
  ``config.victim_seed`` from ``split`` of the data block's dataset (None:
  the attacked dataset itself), as a server that trained its model on its
  own data would hold (``victim.calibrate_batch_stats``).
  """
  c = config.calibration
  n = int(c.get("num_images", 0))
  if n <= 0:
    return variables
  split = c.get("split")
  public = dataset if split is None else load_data(
      dict(_plain(config.data), split=split))
  if n > len(public.labels):
    raise InputError(f"config.calibration.num_images = {n} but the "
                     f"calibration data has {len(public.labels)} images")
  sample = data_lib.sample(public, n, seed=config.victim_seed)
  xs = jnp.asarray(data_lib.normalize(sample.images, mean, std))
  if "batch_stats" not in variables:
    raise InputError(f"config.calibration: victim {victim.name!r} has no "
                     "BatchNorm statistics to calibrate")
  return victim_lib.calibrate_batch_stats(victim, variables, xs)


def case_from_batch(victim, variables, private: data_lib.Dataset, key,
                    **simulate_kw) -> Case:
  """One round on given [0, 1] images: normalized by ``mean``/``std`` (in
  ``simulate_kw``, which goes to ``leak.simulate``) and leaked."""
  mean = tuple(simulate_kw.get("mean", (0.0,)))
  std = tuple(simulate_kw.get("std", (1.0,)))
  xs = jnp.asarray(data_lib.normalize(private.images, mean, std))
  ys = jnp.asarray(private.labels)
  if victim.loss == "squared":
    ys = ys.astype(jnp.float32)
  leak, truth = leak_lib.simulate(victim, variables, xs, ys, key,
                                  **simulate_kw)
  return Case(victim, variables, leak, truth, private)


def _private_batches(d, dataset, count, seed, sample_seeds) -> list:
  """The private images of each round (see ``make_cases``)."""
  n = d.get("batch_size", 1) * d.get("num_clients", 1)
  classes, distinct = d.get("classes"), d.get("distinct_labels", False)
  index = d.get("index")
  if index:
    if classes or distinct:
      raise InputError("config.data.classes / distinct_labels choose a "
                       "sample; config.data.index lists the images: set one")
    index = [int(i) for i in index]
    if len(index) < count * n:
      raise InputError(f"config.data.index has {len(index)} entries; "
                       f"{count} round(s) of batch_size x num_clients = "
                       f"{n} images need {count * n}")
    bad = [i for i in index[:count * n] if not 0 <= i < len(dataset.labels)]
    if bad:
      raise InputError(f"config.data.index {bad} out of range: dataset "
                       f"{dataset.name!r} has {len(dataset.labels)} images")
    return [data_lib.subset(dataset, index[i * n:(i + 1) * n])
            for i in range(count)]
  need = n if sample_seeds is not None else count * n
  if need > len(dataset.labels):
    raise InputError(f"config.data.batch_size x num_clients = {need} but "
                     f"dataset {dataset.name!r} has only "
                     f"{len(dataset.labels)} images ({count} round(s))")
  if sample_seeds is not None:
    return [data_lib.sample(dataset, n, s, classes=classes,
                            distinct_labels=distinct) for s in sample_seeds]
  pool = data_lib.sample(dataset, count * n, seed, classes=classes,
                         distinct_labels=distinct)
  return [data_lib.subset(pool, list(range(i * n, (i + 1) * n)))
          for i in range(count)]


def attack_case(case: Case, attack_config, key) -> attacks.Reconstruction:
  """Validates the leak and runs the attack named in ``attack_config``."""
  cfg = _plain(attack_config)
  fn = attacks.get(cfg["name"])
  leak_lib.validate(case.leak, case.victim)
  return fn(case.leak, case.victim, cfg, key)


def attack_cases(cases: list[Case], attack_config,
                 key) -> list[attacks.Reconstruction]:
  """Attacks many rounds of one victim.

  With one ``key``, the gradient-matching attacks ("dlg", "ig",
  "gradient_matching") attack all rounds in one compiled program
  (``gradient_matching.attack_many``); other attacks run round by round
  with ``fold_in(key, i)``. With a list of keys (one per round), every
  attack runs round by round, round i with ``key[i]``.
  """
  cfg = _plain(attack_config)
  if isinstance(key, (list, tuple)):
    if len(key) != len(cases):
      raise ValueError(f"{len(key)} keys for {len(cases)} cases")
    return [attack_case(c, cfg, k) for c, k in zip(cases, key)]
  if cfg["name"] in _ONE_PROGRAM:
    from gitjax.attacks import gradient_matching as gm  # pylint: disable=g-import-not-at-top
    if any(c.victim is not cases[0].victim for c in cases):
      raise ValueError("attack_cases: one program needs one victim")
    for c in cases:
      leak_lib.validate(c.leak, c.victim)
    defaults = getattr(gm, _ONE_PROGRAM[cfg["name"]])
    rest = {k: v for k, v in cfg.items() if k != "name"}
    return gm.attack_many([c.leak for c in cases], cases[0].victim, rest,
                          key, defaults)
  return [attack_case(c, cfg, jax.random.fold_in(key, i))
          for i, c in enumerate(cases)]


# Attacks that ``attack_cases`` runs in one program, with their defaults.
_ONE_PROGRAM = {"dlg": "DLG_DEFAULTS", "ig": "IG_DEFAULTS",
                "gradient_matching": "IG_DEFAULTS"}


def evaluate(rec: attacks.Reconstruction, case: Case, config) -> dict:
  """Scores a reconstruction against the ground truth, on [0, 1] pixels."""
  return _score(rec, case, config, *_unit_images(rec, case))


def _score(rec, case, config, x_hat, x, n_hat) -> dict:
  ev = config.eval
  labels = None if case.victim.loss == "squared" else case.truth.labels
  result = metrics.score(
      x_hat, x, data_range=ev.get("data_range", 1.0),
      labels_hat=rec.labels if labels is not None else None, labels=labels,
      lpips_net=ev.get("lpips_net"), lpips_also=ev.get("lpips_also"))
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
  status = case.status
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

  Checks the config first (``check_benchmark``). The workdir is opened with
  ``rundir.open_run``: a finished benchmark is returned as stored, never run
  again over its results.
  """
  name = check_benchmark(config)
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


def check_benchmark(config) -> str:
  """Checks a benchmark config before any work; returns its name.

  The experiment blocks (``validate.check_experiment`` when the config has
  data, victim, leak and attack; else ``check_attack`` on its attack), every
  attack block in ``config.baselines``, each case of ``config.bench.cases``
  (block overrides, ``with_overrides``; its baselines too), and
  ``config.eval``'s LPIPS nets (``validate.check_eval``). Raises InputError
  naming the field.
  """
  name = config.get("benchmark")
  if name not in BENCHMARKS:
    raise InputError(f"config.benchmark: unknown benchmark {name!r}; known: "
                     f"{list(BENCHMARKS)}")
  full = all(k in config for k in ("data", "victim", "leak", "attack"))
  if full:
    validate.check_experiment(config)  # Its eval block too.
  else:
    if "attack" in config:
      validate.check_attack(config.attack)
    validate.check_eval(config)
  check_labels(config)
  for k, block in (config.get("baselines") or {}).items():
    validate.check_attack(block, f"config.baselines.{k}")
  bench = config.get("bench") or {}
  for k, overrides in (bench.get("cases") or {}).items():
    field = f"config.bench.cases.{k}"
    case = with_overrides(config, overrides, field)
    if full:
      try:
        validate.check_experiment(case)
      except InputError as e:
        raise InputError(f"{field}: {e}") from None
    if "baselines" in _plain(overrides):
      for b, block in case.baselines.items():
        validate.check_attack(block, f"{field}.baselines.{b}")
  return name


def check_labels(config) -> None:
  """A comparison's labels (its rows and image files): no baseline is
  labelled "truth" or as ``config.attack``'s name."""
  taken = ("truth", config.get("attack", {}).get("name"))
  for k in (config.get("baselines") or {}).keys():
    if k in taken:
      raise InputError(f"config.baselines.{k}: the label is taken (the "
                       "truth's or config.attack's name); rename it")


def device_description() -> str:
  devs = jax.devices()
  kind = devs[0].device_kind
  return f"{len(devs)} x {kind} ({jax.default_backend()}, {os.cpu_count()} " \
         f"host cores)"
