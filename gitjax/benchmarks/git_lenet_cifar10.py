"""GIT on CIFAR-10 / LeNet: against LTI, DLG, IG; GIT + IG; timings.

Inverters (``config.inverters``) come from training workdirs; an empty one
is trained with its ``train`` config (``configs/benchmarks/
git_lenet_cifar10.py`` builds them from ``configs/git_lenet.py`` and
``configs/lti_lenet.py``) into ``dir`` or ``workdir/<name>``. Then, on
``bench.num_test`` CIFAR-10 test images (the same sample as the training
runs' evaluation):

* GIT and LTI test MSE (one forward pass per leak), clean gradients;
* with the noise-trained inverter's Gaussian gradient noise: that inverter,
  and the clean-trained one;
* on the first ``bench.num_attack`` of those leaks
  (``experiments.case_from_batch`` at the inverter's victim), ``config.attack``
  (GIT) and ``config.baselines`` (LTI, DLG, IG, GIT + IG), with and without
  noise, scored by ``experiments.evaluate``; seconds per reconstruction.
"""

import logging
import os
import time

import jax
import ml_collections as mlc
import numpy as np

from gitjax import data as data_lib
from gitjax import experiments
from gitjax import inverter_eval
from gitjax import loading
from gitjax import report
from gitjax import train_inverter
from gitjax.benchmarks import compare

INVERTER_ATTACKS = ("git", "git_ig")  # Take the GIT inverter's workdir.


def trained_inverter(config, name: str, workdir: str):
  """Loads ``config.inverters.<name>.dir``, training it first if needed.

  Returns None when the inverter has neither checkpoints nor a ``train``
  config.
  """
  spec = config.inverters[name]
  directory = spec.dir or os.path.join(workdir, name)
  if not os.path.isdir(os.path.join(directory, loading.CHECKPOINTS)):
    if spec.get("train") is None:
      return None
    logging.info("Training %s into %s", name, directory)
    train_inverter.train_and_evaluate(_config_dict(spec.train), directory)
  return loading.inverter(directory)


def _config_dict(block) -> mlc.ConfigDict:
  """A training config block as a ConfigDict of its own."""
  return mlc.ConfigDict(experiments.plain(block))


def test_images(trained, count: int):
  """The evaluation sample of the training runs: ``count`` test images."""
  ev = dict(trained.config.eval_data.to_dict())
  ds = train_inverter.load_dataset(ev)
  return data_lib.sample(ds, count, seed=ev.get("seed", 0))


def noise_sigma(trained) -> float:
  """The Gaussian gradient noise an inverter was trained with (0: none)."""
  for d in trained.config.leak.defense:
    if dict(d)["name"] == "gaussian":
      return float(dict(d)["sigma"])
  return 0.0


def _summary(mse) -> dict:
  mse = np.asarray(mse)
  return dict(mse=float(mse.mean()), mse_median=float(np.median(mse)),
              psnr=inverter_eval.psnr_from_mse(mse), count=int(mse.size))


def _cases(trained, test, sigma: float) -> list:
  """One FedSGD leak per test image at the inverter's victim (key 1000+i)."""
  setup = trained.setup
  defense = [dict(name="gaussian", sigma=sigma)] if sigma else []
  return [experiments.case_from_batch(
      setup.victim, setup.variables, data_lib.subset(test, [i]),
      jax.random.key(1000 + i), defense=defense, mean=setup.leak.mean,
      std=setup.leak.std) for i in range(len(test.labels))]


def compare_attacks(config, blocks: dict, trained, test,
                    sigma: float) -> tuple[dict, dict]:
  """Runs each attack on the same leaks; returns (scores, images)."""
  scores, pictures = {}, {}
  for i, case in enumerate(_cases(trained, test, sigma)):
    for name, block in blocks.items():
      t0 = time.time()
      rec = experiments.attack_case(case, block, jax.random.key(i))
      jax.block_until_ready(rec.images)
      seconds = time.time() - t0
      m = experiments.evaluate(rec, case, config)["mean"]
      s = dict(mse=m["mse"], psnr=m["psnr"], ssim=m["ssim"],
               seconds=seconds,
               forward_seconds=rec.info.get("forward_seconds"),
               iterations=rec.info.get("iterations"))
      pictures.setdefault(name, []).append(compare.unit_images(case, rec)[0])
      scores.setdefault(name, []).append(s)
      logging.info("sigma=%g image %d %s: mse %.4f psnr %.2f (%.1f s)", sigma,
                   i, name, s["mse"], s["psnr"], s["seconds"])
  out = {}
  for name, rows in scores.items():
    out[name] = {k: float(np.mean([r[k] for r in rows if r[k] is not None]))
                 if any(r[k] is not None for r in rows) else None
                 for k in rows[0]}
    out[name]["per_image_psnr"] = [r["psnr"] for r in rows]
  return out, pictures


def attack_runs(config, git, lti=None) -> dict:
  """The attack blocks by label, with their inverters' workdirs filled in;
  without ``lti``, the LTI blocks are left out."""
  runs = {}
  for label, block in compare.attack_blocks(config).items():
    block = dict(experiments.plain(block))
    if block["name"] == "lti":
      if lti is None:
        continue
      block.setdefault("inverter_dir", lti.workdir)
    elif block["name"] in INVERTER_ATTACKS:
      block.setdefault("inverter_dir", git.workdir)
    runs[label] = block
  return runs


def run(config, workdir):
  git = trained_inverter(config, "git", workdir)
  lti = trained_inverter(config, "lti", workdir)
  git_noise = trained_inverter(config, "git_noise", workdir)
  sigma = noise_sigma(git_noise)
  test = test_images(git, config.bench.num_test)
  x01, ys = test.images, test.labels
  noise = [dict(name="gaussian", sigma=sigma)]
  results = {"num_test": int(len(ys)), "sigma": sigma, "inverters": {}}
  for name, tr in (("git", git), ("lti", lti), ("git_noise", git_noise)):
    hist = train_inverter.read_metrics(tr.workdir)
    rates = [h["examples_per_s"] for h in hist if h.get("examples_per_s")]
    results["inverters"][name] = dict(
        workdir=tr.workdir, step=tr.step,
        examples_per_s=float(np.median(rates)) if rates else None,
        train_wall_s=hist[-1]["wall_s"] if hist else None,
        train_loss=hist[-1]["loss"] if hist else None)
  t = {}
  t["git"] = _summary(inverter_eval.evaluate(git, x01, ys, defense=None,
                                             seed=1)["mse"])
  t["lti"] = _summary(inverter_eval.evaluate(lti, x01, ys, defense=None,
                                             seed=1)["mse"])
  t["git_noise_trained"] = _summary(inverter_eval.evaluate(
      git_noise, x01, ys, defense=noise, seed=1)["mse"])
  t["git_clean_trained_on_noise"] = _summary(inverter_eval.evaluate(
      git, x01, ys, defense=noise, seed=1)["mse"])
  results["test_set"] = t
  logging.info("Test-set MSE: %s", {k: v["mse"] for k, v in t.items()})

  k = int(config.bench.num_attack)
  attacked = data_lib.subset(test, list(range(k)))
  clean, pics = compare_attacks(config, attack_runs(config, git, lti), git,
                                attacked, 0.0)
  noisy, _ = compare_attacks(config, attack_runs(config, git_noise),
                             git_noise, attacked, sigma)
  results["attacks_clean"] = clean
  results[f"attacks_sigma_{sigma:g}"] = noisy
  report.save_grid(
      os.path.join(workdir, "grid.png"),
      [x01[:k]] + [np.stack(pics[n]) for n in pics],
      row_titles=["truth"] + list(pics))
  results["targets"] = _targets(t, clean)
  if {"git", "ig"} <= set(clean):
    ig = clean["ig"]
    results["timing"] = dict(
        git_forward_seconds=clean["git"]["forward_seconds"],
        ig_seconds=ig["seconds"], ig_iterations=ig["iterations"],
        speedup=ig["seconds"] / max(clean["git"]["forward_seconds"] or 0,
                                    1e-9))
  return results


def _targets(t: dict, clean: dict) -> dict:
  out = dict(git_mse_le_0_010=t["git"]["mse"] <= 0.010,
             git_below_lti=t["git"]["mse"] < t["lti"]["mse"],
             git_noise_mse_le_0_012=t["git_noise_trained"]["mse"] <= 0.012)
  if {"ig", "git_ig_quarter", "git_ig"} <= set(clean):
    ig = clean["ig"]["psnr"]
    out["git_ig_quarter_reaches_ig"] = clean["git_ig_quarter"]["psnr"] >= ig
    out["git_ig_ends_higher"] = clean["git_ig"]["psnr"] > ig
  return out
