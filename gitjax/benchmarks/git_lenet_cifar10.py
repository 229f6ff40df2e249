"""GIT on CIFAR-10 / LeNet: against LTI, DLG, IG; GIT + IG; timings.

Inverters come from training workdirs (``git_dir``, ``lti_dir``,
``git_noise_dir``); an empty one is trained here into ``workdir/<name>``
with ``configs/git_lenet.py`` / ``configs/lti_lenet.py`` at
``config.budget``. Then, on ``num_test`` CIFAR-10 test images (the same
sample as the training runs' evaluation):

* GIT and LTI test MSE (one forward pass per leak), clean gradients;
* with Gaussian gradient noise ``sigma``: the GIT inverter trained with that
  noise, and the clean-trained one;
* on the first ``num_attack`` of those leaks, DLG and IG (short budgets)
  beside GIT and LTI, with and without noise; GIT + IG for a quarter of
  IG's iterations and for all of them; seconds per reconstruction.
"""

import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import git_lenet
from configs import lti_lenet
from gitjax import attacks
from gitjax import data as data_lib
from gitjax import leak as leak_lib
from gitjax import metrics
from gitjax import report
from gitjax import train_inverter


def trained_inverter(config, name: str, workdir: str, sigma: float = 0.0):
  """Loads ``config.<name>_dir``, training it first if it is empty."""
  directory = config.get(f"{name}_dir") or os.path.join(workdir, name)
  path = os.path.join(directory, "checkpoints")
  if not config.get(f"{name}_dir") or not os.path.isdir(path):
    module = lti_lenet if name.startswith("lti") else git_lenet
    arg = f"data_dir={config.data_dir},budget={config.budget}"
    if sigma:
      arg += f",sigma={sigma}"
    logging.info("Training %s (%s) into %s", name, arg, directory)
    train_inverter.train_and_evaluate(module.get_config(arg), directory)
  return train_inverter.load(directory)


def test_images(trained, count: int):
  """The evaluation sample of the training runs: ``count`` test images."""
  ev = dict(trained.config.eval_data.to_dict())
  ds = train_inverter.load_dataset(ev)
  return data_lib.sample(ds, count, seed=ev.get("seed", 0))


def _summary(mse) -> dict:
  mse = np.asarray(mse)
  return dict(mse=float(mse.mean()), mse_median=float(np.median(mse)),
              psnr=train_inverter.psnr_from_mse(mse), count=int(mse.size))


def _leak(trained, x01, y, sigma: float, seed: int):
  """One FedSGD leak of a single image at the inverter's victim."""
  setup = trained.setup
  defense = [dict(name="gaussian", sigma=sigma)] if sigma else []
  xs = (jnp.asarray(x01)[None] - jnp.asarray(setup.leak.mean)) / jnp.asarray(
      setup.leak.std)
  leak, _ = leak_lib.simulate(
      setup.victim, setup.variables, xs, jnp.asarray([y]),
      jax.random.key(seed), defense=defense, mean=setup.leak.mean,
      std=setup.leak.std)
  return leak


def _score(rec, leak, x01) -> dict:
  x_hat = jnp.clip(leak_lib.to_unit_range(leak, rec.images), 0.0, 1.0)
  s = metrics.score(x_hat, jnp.asarray(x01)[None], data_range=1.0)
  return dict(mse=s["mean"]["mse"], psnr=s["mean"]["psnr"],
              ssim=s["mean"]["ssim"], image=np.asarray(x_hat[0]))


def compare_attacks(runs: dict, trained, images, labels,
                    sigma: float) -> tuple[dict, dict]:
  """Runs each attack on the same leaks; returns (scores, images)."""
  scores, pictures = {}, {}
  for i, (x01, y) in enumerate(zip(images, labels)):
    leak = _leak(trained, x01, int(y), sigma, seed=1000 + i)
    for name, (attack, cfg) in runs.items():
      t0 = time.time()
      rec = attacks.get(attack)(leak, trained.setup.victim, cfg,
                                jax.random.key(i))
      jax.block_until_ready(rec.images)
      s = _score(rec, leak, x01)
      s["seconds"] = time.time() - t0
      s["forward_seconds"] = rec.info.get("forward_seconds")
      s["iterations"] = rec.info.get("iterations")
      pictures.setdefault(name, []).append(s.pop("image"))
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


def _attack_runs(config, git_dir, lti_dir=None) -> dict:
  it = int(config.ig_iterations)
  runs = {"git": ("git", dict(inverter_dir=git_dir))}
  if lti_dir:
    runs["lti"] = ("lti", dict(inverter_dir=lti_dir))
  runs["dlg"] = ("dlg", dict(iterations=int(config.dlg_iterations),
                             progress=False))
  runs["ig"] = ("ig", dict(iterations=it, progress=False))
  runs["git_ig_quarter"] = ("git_ig", dict(
      inverter_dir=git_dir, iterations=max(it // 4, 1), progress=False,
      proximity=config.proximity))
  runs["git_ig"] = ("git_ig", dict(inverter_dir=git_dir, iterations=it,
                                   progress=False,
                                   proximity=config.proximity))
  return runs


def run(config, workdir):
  git = trained_inverter(config, "git", workdir)
  lti = trained_inverter(config, "lti", workdir)
  git_noise = trained_inverter(config, "git_noise", workdir,
                               sigma=config.sigma)
  test = test_images(git, config.num_test)
  x01, ys = test.images, test.labels
  noise = [dict(name="gaussian", sigma=config.sigma)]
  results = {"num_test": int(len(ys)), "sigma": config.sigma,
             "inverters": {}}
  for name, tr in (("git", git), ("lti", lti), ("git_noise", git_noise)):
    hist = train_inverter.read_metrics(tr.workdir)
    results["inverters"][name] = dict(
        workdir=tr.workdir, step=tr.step,
        examples_per_s=float(np.median([h["examples_per_s"] for h in hist
                                        if h.get("examples_per_s")])),
        train_wall_s=hist[-1]["wall_s"] if hist else None,
        train_loss=hist[-1]["loss"] if hist else None)
  t = {}
  t["git"] = _summary(train_inverter.evaluate(git, x01, ys, defense=None,
                                              seed=1)["mse"])
  t["lti"] = _summary(train_inverter.evaluate(lti, x01, ys, defense=None,
                                              seed=1)["mse"])
  t["git_noise_trained"] = _summary(train_inverter.evaluate(
      git_noise, x01, ys, defense=noise, seed=1)["mse"])
  t["git_clean_trained_on_noise"] = _summary(train_inverter.evaluate(
      git, x01, ys, defense=noise, seed=1)["mse"])
  results["test_set"] = t
  logging.info("Test-set MSE: %s", {k: v["mse"] for k, v in t.items()})

  k = int(config.num_attack)
  clean, pics = compare_attacks(
      _attack_runs(config, git.workdir, lti.workdir), git, x01[:k], ys[:k],
      0.0)
  noisy, _ = compare_attacks(
      _attack_runs(config, git_noise.workdir), git_noise, x01[:k], ys[:k],
      config.sigma)
  results["attacks_clean"] = clean
  results[f"attacks_sigma_{config.sigma:g}"] = noisy
  report.save_grid(
      os.path.join(workdir, "grid.png"),
      [x01[:k]] + [np.stack(pics[n]) for n in pics],
      row_titles=["truth"] + list(pics))
  ig, quarter, full = clean["ig"], clean["git_ig_quarter"], clean["git_ig"]
  results["targets"] = dict(
      git_mse_le_0_010=t["git"]["mse"] <= 0.010,
      git_below_lti=t["git"]["mse"] < t["lti"]["mse"],
      git_noise_mse_le_0_012=t["git_noise_trained"]["mse"] <= 0.012,
      git_ig_quarter_reaches_ig=quarter["psnr"] >= ig["psnr"],
      git_ig_ends_higher=full["psnr"] > ig["psnr"])
  results["timing"] = dict(
      git_forward_seconds=clean["git"]["forward_seconds"],
      ig_seconds=ig["seconds"], ig_iterations=int(config.ig_iterations),
      speedup=ig["seconds"] / max(clean["git"]["forward_seconds"], 1e-9))
  return results
