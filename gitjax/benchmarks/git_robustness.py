"""How GIT's reconstructions degrade: noise, pruning, distribution shift, and
parameter discrepancy. Writes one PNG plot per sweep.

All sweeps use a trained inverter (``config.inverters.git``: its ``dir``,
trained here with its ``train`` config when it has no checkpoints) and
``bench.num_test`` test images; every point is a test MSE (one forward pass
per leak):

* ``noise.png``: Gaussian gradient noise sigma (curves for the clean-trained
  inverter and, given ``inverters.git_noise.dir``, the one trained with
  noise);
* ``prune.png``: magnitude pruning rate of the leaked gradient;
* ``shift.png``: images from other datasets than the training one
  (``bench.shift_datasets``), and, given ``inverters.shift`` (an inverter
  trained on some classes only: its ``dir``, or trained with its ``train``
  config), test images of the training classes against the other classes;
* ``discrepancy.png``: the client's victim trained k more SGD steps on public
  data than the parameters the inverter was trained at.
"""

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from gitjax import data as data_lib
from gitjax import inverter_eval
from gitjax import report
from gitjax import train_inverter
from gitjax import victim as victim_lib
from gitjax.benchmarks import git_lenet_cifar10 as main_benchmark


def _mse(trained, x01, ys, **kw) -> float:
  return float(np.mean(inverter_eval.evaluate(trained, x01, ys, seed=3,
                                               **kw)["mse"]))


def train_victim_further(trained, images, labels, steps: int, lr: float,
                         batch: int, seed: int = 0):
  """The victim after ``steps`` more SGD steps on public images [0, 1]."""
  setup = trained.setup
  x_all = (jnp.asarray(images) - jnp.asarray(setup.leak.mean)) / jnp.asarray(
      setup.leak.std)
  return victim_lib.sgd_trajectory(setup.victim, setup.variables, x_all,
                                   jnp.asarray(labels), [steps], lr=lr,
                                   batch=batch, seed=seed)[0]


def _relative_change(a, b) -> float:
  num = sum(float(jnp.sum(jnp.square(x - y))) for x, y in
            zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  den = sum(float(jnp.sum(jnp.square(y))) for y in jax.tree.leaves(b))
  return float(np.sqrt(num / den))


def _bar_plot(path, labels, values, ylabel, title):
  fig = Figure(figsize=(7, 4), dpi=100)
  ax = fig.add_subplot()
  ax.bar(range(len(values)), values, color="tab:blue")
  ax.set_xticks(range(len(values)), labels=labels, rotation=20, ha="right")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(True, axis="y", alpha=0.3)
  fig.tight_layout()
  return report.save_figure(fig, path)


def _dataset(spec: dict, shape) -> data_lib.Dataset:
  spec = dict(spec)
  spec.setdefault("image_size", shape[0])
  spec.setdefault("channels", shape[-1])
  return train_inverter.load_dataset(spec)


def run(config, workdir):
  git = main_benchmark.trained_inverter(config, "git", workdir)
  noisy = main_benchmark.trained_inverter(config, "git_noise", workdir)
  bench = config.bench
  test = main_benchmark.test_images(git, bench.num_test)
  x01, ys = test.images, test.labels
  out = {"num_test": int(len(ys)), "git_dir": git.workdir}

  # Gradient noise.
  sig = list(bench.noise_sigmas)
  curves = {"trained without noise": [
      _mse(git, x01, ys, defense=[dict(name="gaussian", sigma=s)] if s
           else None) for s in sig]}
  if noisy is not None:
    s_tr = main_benchmark.noise_sigma(noisy)
    curves[f"trained with sigma={s_tr:g}"] = [
        _mse(noisy, x01, ys, defense=[dict(name="gaussian", sigma=s)] if s
             else None) for s in sig]
  out["noise"] = dict(sigma=sig, mse=curves)
  report.plot_curves(os.path.join(workdir, "noise.png"),
                     [max(s, 1e-4) for s in sig], curves,
                     "gradient noise sigma (0 plotted at 1e-4)", "test MSE",
                     logx=True, title="GIT under Gaussian gradient noise")
  logging.info("noise: %s", curves)

  # Pruning.
  rates = list(bench.prune_rates)
  pr = [_mse(git, x01, ys, defense=[dict(name="prune", rate=r)] if r
             else None) for r in rates]
  out["prune"] = dict(rate=rates, mse=pr)
  report.plot_curves(os.path.join(workdir, "prune.png"), rates,
                     {"GIT": pr}, "pruning rate", "test MSE",
                     title="GIT under gradient pruning")
  logging.info("prune: %s", pr)

  # Distribution shift: other datasets, other classes.
  shape = git.setup.image_shape
  names, values = ["training data (test split)"], [
      _mse(git, x01, ys, defense=None)]
  for spec in bench.shift_datasets:
    spec = dict(spec)
    label = spec.pop("label")
    ds = _dataset(spec, shape)
    ds = data_lib.sample(ds, min(bench.num_test, len(ds.labels)), seed=0)
    names.append(label)
    values.append(_mse(git, ds.images, ds.labels, defense=None))
  shifted = main_benchmark.trained_inverter(config, "shift", workdir)
  if shifted is not None:
    classes = tuple(shifted.config.data.classes or ())
    seen = np.isin(ys, np.asarray(classes))
    for label, mask in (("trained on classes %s: same classes", seen),
                        ("trained on classes %s: other classes", ~seen)):
      names.append(label % "-".join(str(c) for c in classes))
      values.append(_mse(shifted, x01[mask], ys[mask], defense=None))
  out["shift"] = dict(zip(names, values))
  _bar_plot(os.path.join(workdir, "shift.png"), names, values, "test MSE",
            "GIT under distribution shift")
  logging.info("shift: %s", out["shift"])

  # Parameter discrepancy: the client's model trained further.
  train = train_inverter.load_dataset(dict(git.config.data.to_dict()))
  # A server whose model moves: an inverter trained on perturbed victims.
  moving = main_benchmark.trained_inverter(config, "moving", workdir)
  ks, mses, changes = list(bench.discrepancy_steps), [], []
  moved = []
  for k in ks:
    v = train_victim_further(git, train.images, train.labels, k,
                             bench.discrepancy_lr, bench.discrepancy_batch)
    changes.append(_relative_change(v["params"], git.setup.variables[
        "params"]))
    mses.append(_mse(git, x01, ys, defense=None, variables=v))
    if moving is not None:
      moved.append(_mse(moving, x01, ys, defense=None, variables=v))
  curves = {"GIT (fixed victim)": mses}
  out["discrepancy"] = dict(steps=ks, mse=mses, relative_param_change=changes,
                            lr=bench.discrepancy_lr,
                            batch=bench.discrepancy_batch)
  if moving is not None:
    lk = moving.config.leak
    label = (f"GIT (trajectory victims, up to {lk.trajectory.steps} steps)"
             if lk.victim_params == "trajectory" else
             f"GIT ({lk.victim_params} victims, scale {lk.perturb_scale:g})")
    curves[label] = moved
    out["discrepancy"].update(
        mse_moving=moved, moving_dir=moving.workdir,
        moving_within_2x_of_fixed=[m <= 2 * mses[0] for m in moved])
  report.plot_curves(os.path.join(workdir, "discrepancy.png"),
                     [max(k, 1) for k in ks], curves,
                     "victim SGD steps after the inverter's parameters "
                     "(0 plotted at 1)", "test MSE", logx=True,
                     title="GIT under parameter discrepancy")
  logging.info("discrepancy: %s, moving %s (relative change %s)", mses,
               moved, changes)
  return out
