"""GIT on CIFAR-10 / LeNet: against LTI, DLG, IG; GIT + IG; timings.

Inverters (``config.inverters``) come from training workdirs; an empty one
is trained with its ``train`` config (``configs/benchmarks/
git_lenet_cifar10.py`` builds them from ``configs/git_lenet.py`` and
``configs/lti_lenet.py``) into ``dir`` or ``workdir/<name>``. Then, on
``bench.num_test`` CIFAR-10 test images (the same sample as the training
runs' evaluation):

* test MSE (Hungarian-matched for B > 1) and LPIPS of every clean-trained
  inverter (GIT, LTI and, when configured, the flat-MLP ablation), one
  forward pass per leak;
* with the noise-trained inverter's Gaussian gradient noise: that inverter,
  and the clean-trained one;
* on the first ``bench.num_attack`` of those leaks
  (``experiments.case_from_batch`` at the inverter's victim), ``config.attack``
  (GIT) and ``config.baselines`` (LTI, DLG, IG, GIT + IG), with and without
  noise, scored by ``experiments.evaluate``; seconds per reconstruction;
* with a ``git_posterior`` block in ``config.baselines``: GIT + the
  posterior step on every test leak, clean (the clean GIT) and noisy (the
  noise-trained one), scored like the attacks (``posterior_scores``); a
  block without ``prior`` gets one fit to the GIT inverter's training
  images (``bench.prior_rank`` directions);
* with ``bench.ig_budgets``: IG run at each of those iteration budgets on
  the same leaks, and the seconds IG needs to reach GIT's and GIT + IG's
  PSNR (or that it does not reach it within the largest budget).

Leaks hold B = the GIT inverter's ``leak.batch_size`` images (test images
``B * i .. B * i + B - 1``).
"""

import logging
import os
import time

import jax
import ml_collections as mlc
import numpy as np

from gitjax import data as data_lib
from gitjax import experiments
from gitjax import gaussian_prior
from gitjax import inverter_eval
from gitjax import loading
from gitjax import metrics
from gitjax import pretrained
from gitjax import report
from gitjax import train_inverter
from gitjax.benchmarks import compare

# These take the GIT inverter's workdir.
INVERTER_ATTACKS = ("git", "git_ig", "git_posterior")


def trained_inverter(config, name: str, workdir: str):
  """Loads ``config.inverters.<name>.dir``, training it first if needed.

  ``dir`` may name shipped weights (``gitjax/weights``). Returns None when
  the inverter has neither checkpoints nor a ``train`` config.
  """
  spec = config.inverters[name]
  directory = spec.dir or os.path.join(workdir, name)
  if pretrained.is_name(directory):
    return loading.inverter(directory)
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


def _summary(mse, scored=None, lpips_net=None) -> dict:
  """Mean/median MSE and PSNR; with ``scored`` (``inverter_eval.evaluate``'s
  result) and ``lpips_net``, also LPIPS of each image after matching."""
  mse = np.asarray(mse)
  out = dict(mse=float(mse.mean()), mse_median=float(np.median(mse)),
             psnr=inverter_eval.psnr_from_mse(mse), count=int(mse.size))
  if scored is not None and lpips_net:
    values = np.concatenate([
        metrics.score(xh, x, data_range=1.0, lpips_net=lpips_net,
                      match=xh.shape[0] > 1)["per_image"]["lpips"]
        for xh, x in zip(scored["x_hat"], scored["x"])])
    out.update(lpips=float(values.mean()),
               lpips_median=float(np.median(values)))
  return out


def _cases(trained, test, sigma: float) -> list:
  """One FedSGD leak per B test images at the inverter's victim (key
  1000+i)."""
  setup = trained.setup
  b = setup.leak.batch_size
  defense = [dict(name="gaussian", sigma=sigma)] if sigma else []
  return [experiments.case_from_batch(
      setup.victim, setup.variables,
      data_lib.subset(test, list(range(b * i, b * i + b))),
      jax.random.key(1000 + i), defense=defense, mean=setup.leak.mean,
      std=setup.leak.std) for i in range(len(test.labels) // b)]


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
      score = experiments.evaluate(rec, case, config)
      m = score["mean"]
      s = dict(mse=m["mse"], psnr=m["psnr"], ssim=m["ssim"],
               lpips=m.get("lpips"),
               seconds=seconds,
               forward_seconds=rec.info.get("forward_seconds"),
               iterations=rec.info.get("iterations"))
      pictures.setdefault(name, []).extend(
          compare.unit_images(case, rec, score))
      scores.setdefault(name, []).append(s)
      logging.info("sigma=%g image %d %s: mse %.4f psnr %.2f (%.1f s)", sigma,
                   i, name, s["mse"], s["psnr"], s["seconds"])
  out = {}
  for name, rows in scores.items():
    out[name] = {k: float(np.mean([r[k] for r in rows if r[k] is not None]))
                 if any(r[k] is not None for r in rows) else None
                 for k in rows[0]}
    out[name]["per_image_psnr"] = [r["psnr"] for r in rows]
    out[name]["mse_median"] = float(np.median([r["mse"] for r in rows]))
    # The first image's call includes compiling; the median does not.
    out[name]["seconds_median"] = float(np.median([r["seconds"]
                                                   for r in rows]))
  return out, pictures


def attack_runs(config, git, lti=None, posterior=None) -> dict:
  """The attack blocks by label, with their inverters' workdirs filled in;
  without ``lti``, the LTI blocks are left out; ``posterior`` replaces the
  ``git_posterior`` block (``posterior_block``: its prior filled in)."""
  runs = {}
  for label, block in compare.attack_blocks(config).items():
    block = dict(experiments.plain(block))
    if label == "git_posterior" and posterior is not None:
      block = dict(posterior)
    if block["name"] == "lti":
      if lti is None:
        continue
      block.setdefault("inverter_dir", lti.workdir)
    elif block["name"] in INVERTER_ATTACKS:
      block.setdefault("inverter_dir", git.workdir)
    runs[label] = block
  return runs


def _train_record(tr) -> dict:
  name = loading.shipped_name(tr.workdir)
  if name:  # Shipped: no run directory; the manifest's last metrics.
    hist = [pretrained.entry(name).get("metrics") or {}]
  else:
    hist = train_inverter.read_metrics(tr.workdir)
  rates = [h["examples_per_s"] for h in hist if h.get("examples_per_s")]
  leaves = jax.tree.leaves(tr.params)
  return dict(workdir=tr.workdir, step=tr.step,
              inverter=tr.config.inverter.name,
              params=int(sum(np.size(l) for l in leaves)),
              examples_per_s=float(np.median(rates)) if rates else None,
              train_wall_s=hist[-1].get("wall_s") if hist else None,
              train_loss=hist[-1].get("loss") if hist else None)


def test_set_scores(config, trained: dict, test, sigma: float) -> dict:
  """MSE (and LPIPS) on the test leaks: every clean-trained inverter on
  clean leaks, the noise-trained one and the clean GIT on noisy ones."""
  lp = config.eval.get("lpips_net")
  x01, ys = test.images, test.labels
  noise = [dict(name="gaussian", sigma=sigma)]
  t = {}
  for name, tr in trained.items():
    if name == "git_noise":
      continue
    r = inverter_eval.evaluate(tr, x01, ys, defense=None, seed=1)
    t[name] = _summary(r["mse"], r, lp)
  if "git_noise" in trained:
    r = inverter_eval.evaluate(trained["git_noise"], x01, ys, defense=noise,
                               seed=1)
    t["git_noise_trained"] = _summary(r["mse"], r, lp)
    r = inverter_eval.evaluate(trained["git"], x01, ys, defense=noise,
                               seed=1)
    t["git_clean_trained_on_noise"] = _summary(r["mse"], r, lp)
  return t


def posterior_block(config, git, workdir: str) -> dict | None:
  """The ``git_posterior`` baseline, with a prior fit to GIT's training
  images when it names none; None without one."""
  block = config.baselines.get("git_posterior")
  if block is None:
    return None
  block = dict(experiments.plain(block))
  if not block.get("prior"):
    rank = int(config.bench.get("prior_rank", 32))
    path = os.path.join(workdir, f"gaussian_prior_rank{rank}.npz")
    if not os.path.exists(path):
      images = train_inverter.load_dataset(
          dict(git.config.data.to_dict())).images
      gaussian_prior.save(gaussian_prior.fit(images, rank), path)
    block["prior"] = path
  return block


def posterior_scores(config, block, trained: dict, test,
                     sigma: float) -> dict:
  """GIT + the posterior step (``block``) on every test leak, scored as
  ``compare_attacks`` scores the attacks: the clean GIT on clean leaks,
  the noise-trained GIT on noisy ones."""
  if block is None:
    return {}
  runs = [("git_posterior", trained["git"], 0.0)]
  if "git_noise" in trained:
    runs.append(("git_posterior_noise", trained["git_noise"], sigma))
  out = {}
  for name, tr, s in runs:
    scores, _ = compare_attacks(
        config, {name: dict(block, inverter_dir=tr.workdir)}, tr, test, s)
    out[name] = scores[name]
  return out


def ig_budget_timing(config, git, attacked, clean: dict) -> dict:
  """IG at each of ``bench.ig_budgets`` iterations on the clean leaks, and
  the seconds IG needs to reach GIT's and GIT + IG's mean PSNR (medians
  over the leaks of seconds per call: the first call also compiles)."""
  budgets = [int(k) for k in config.bench.get("ig_budgets") or ()]
  if not budgets or "ig" not in config.baselines:
    return {}
  base = dict(experiments.plain(config.baselines.ig))
  blocks = {f"ig_{k}": dict(base, iterations=k) for k in budgets}
  scores, _ = compare_attacks(config, blocks, git, attacked, 0.0)
  curve = [dict(iterations=k, psnr=scores[f"ig_{k}"]["psnr"],
                lpips=scores[f"ig_{k}"]["lpips"],
                seconds=scores[f"ig_{k}"]["seconds_median"])
           for k in budgets]
  out = dict(ig_curve=curve)
  for name in ("git", "git_ig"):
    if name not in clean:
      continue
    target = clean[name]["psnr"]
    reached = [c for c in curve if c["psnr"] >= target]
    out[f"{name}_psnr"] = target
    out[f"{name}_seconds"] = clean[name]["seconds_median"]
    out[f"ig_seconds_to_reach_{name}"] = (
        min(c["seconds"] for c in reached) if reached else None)
  return out


def run(config, workdir):
  trained = {}
  for name in config.inverters:
    tr = trained_inverter(config, name, workdir)
    if tr is not None:
      trained[name] = tr
  if "git" not in trained:
    raise ValueError("config.inverters.git has neither checkpoints nor a "
                     "train config")
  git, lti = trained["git"], trained.get("lti")
  git_noise = trained.get("git_noise")
  sigma = noise_sigma(git_noise) if git_noise is not None else 0.0
  b = git.setup.leak.batch_size
  # num_test images (the training runs' evaluation sample), num_test // B
  # leaks: at B = 4, 1,000 test images hold 250 leaks, not 256.
  test = test_images(git, config.bench.num_test)
  results = {"num_test": int(len(test.labels)), "batch_size": b,
             "sigma": sigma,
             "inverters": {k: _train_record(v) for k, v in trained.items()}}
  t = results["test_set"] = test_set_scores(config, trained, test, sigma)
  post = posterior_block(config, git, workdir)
  t.update(posterior_scores(config, post, trained, test, sigma))
  logging.info("Test-set MSE: %s", {k: v["mse"] for k, v in t.items()})

  k = int(config.bench.num_attack)
  attacked = data_lib.subset(test, list(range(k * b)))
  clean, pics = compare_attacks(config, attack_runs(config, git, lti, post),
                                git, attacked, 0.0)
  results["attacks_clean"] = clean
  if git_noise is not None:
    noisy, _ = compare_attacks(config,
                               attack_runs(config, git_noise, posterior=post),
                               git_noise, attacked, sigma)
    results[f"attacks_sigma_{sigma:g}"] = noisy
  report.save_grid(
      os.path.join(workdir, "grid.png"),
      [attacked.images] + [np.stack(pics[n]) for n in pics],
      row_titles=["truth"] + list(pics))
  results["targets"] = _targets(t, clean)
  if {"git", "ig"} <= set(clean):
    ig = clean["ig"]
    results["timing"] = dict(
        git_forward_seconds=clean["git"]["forward_seconds"],
        ig_seconds=ig["seconds"], ig_iterations=ig["iterations"],
        speedup=ig["seconds"] / max(clean["git"]["forward_seconds"] or 0,
                                    1e-9),
        **ig_budget_timing(config, git, attacked, clean))
  return results


def _targets(t: dict, clean: dict) -> dict:
  out = {}
  if "lti" in t:
    out["git_below_lti"] = t["git"]["mse"] < t["lti"]["mse"]
  if "flat" in t:
    out["git_below_flat"] = t["git"]["mse"] < t["flat"]["mse"]
  out["git_mse_le_0_010"] = t["git"]["mse"] <= 0.010
  if "git_noise_trained" in t:
    out["git_noise_mse_le_0_012"] = t["git_noise_trained"]["mse"] <= 0.012
  if "git_posterior_noise" in t:
    out["git_posterior_noise_mse_le_0_012"] = (
        t["git_posterior_noise"]["mse"] <= 0.012)
  if {"ig", "git_ig_quarter", "git_ig"} <= set(clean):
    ig = clean["ig"]["psnr"]
    out["git_ig_quarter_reaches_ig"] = clean["git_ig_quarter"]["psnr"] >= ig
    out["git_ig_ends_higher"] = clean["git_ig"]["psnr"] > ig
  return out
