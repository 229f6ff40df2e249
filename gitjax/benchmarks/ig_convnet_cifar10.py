"""Inverting Gradients on IG's ConvNet (random init), CIFAR-10, B = 1 and 4.

For each case of ``bench.cases`` (a batch size, as a ``data`` override):
``bench.num_images`` FedSGD leaks of B CIFAR-10 test images, labels inferred
(iDLG for B = 1, LLG-style counts for B > 1), all leaks attacked in one
vmapped program (``images_per_program`` splits them), PSNR on [0, 1] pixels
after order matching (``dlg_lenet_cifar10.attack_images``).

Also, per batch size, the gradient-match reference: the same cosine distance
for the true images plus white noise at ``reference_psnr`` dB (30 and 40 by
default). A reconstruction whose final loss is below the 30 dB reference
matches the gradient as well as a 30 dB image does; if its PSNR is still far
below 30 dB, the objective, not the optimizer, is what limits the attack.
"""

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import experiments
from gitjax import victim as victim_lib
from gitjax.attacks import objectives
from gitjax.benchmarks import dlg_lenet_cifar10 as common


def noise_reference(victim, variables, xs, ys, psnr_db: float,
                    key) -> list[float]:
  """Cosine gradient distance between x + noise and x, per batch.

  xs: [M, B, H, W, C] images in [0, 1]; ys: [M, B]. The noise is white with
  sigma = 10^(-psnr_db / 20), so the noisy batch's PSNR is ``psnr_db``.
  """
  params, state = victim_lib.split(variables)
  sigma = 10.0 ** (-psnr_db / 20.0)

  @jax.jit
  def one(x, y, k):
    g = victim_lib.batch_grad(victim, params, state, x, y)
    xn = x + sigma * jax.random.normal(k, x.shape)
    return objectives.cosine(victim_lib.batch_grad(victim, params, state, xn,
                                                   y), g)

  keys = jax.random.split(key, xs.shape[0])
  return [float(one(xs[i], ys[i], keys[i])) for i in range(xs.shape[0])]


def run(config, workdir):
  del workdir
  dataset = experiments.load_data(config.data)
  results = {"width": config.victim.get("width"), "batch_sizes": []}
  for name, overrides in config.bench.cases.items():
    cfg = experiments.with_overrides(config, overrides,
                                     f"config.bench.cases.{name}")
    row, cases, _ = common.attack_images(cfg, dataset)
    results["batch_sizes"].append(row["batch_size"])
    xs = jnp.stack([c.truth.images for c in cases])
    ys = jnp.stack([c.truth.labels for c in cases])
    row["final_loss_median"] = float(np.median(row["final_losses"]))
    row["noise_reference"] = {}
    for p in config.bench.reference_psnr:
      losses = noise_reference(cases[0].victim, cases[0].variables, xs, ys,
                               p, jax.random.key(int(p)))
      row["noise_reference"][f"{p:g}dB"] = dict(
          median_loss=float(np.median(losses)), losses=losses)
    results[name] = row
  return results
