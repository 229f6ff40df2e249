"""DLG on DLG's LeNet (sigmoid, uniform(-0.5, 0.5), random init), CIFAR-10.

Samples ``num_images`` CIFAR-10 test images (seeded), simulates one FedSGD
leak per image (B = ``batch_size``), infers labels from each gradient and
attacks all leaks in one compiled program (``gradient_matching.attack_many``:
images x restarts trials vmapped). Reports PSNR on [0, 1] pixels (median,
mean, per image), label accuracy and seconds per image.

``ig_convnet_cifar10`` reuses ``attack_images`` with its own victim/attack.
"""

import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import data as data_lib
from gitjax import leak as leak_lib
from gitjax import metrics
from gitjax import models
from gitjax import victim as victim_lib
from gitjax.attacks import gradient_matching as gm


def load_images(config):
  """``num_images * batch_size`` CIFAR-10 test images (seeded sample).

  ``config.dataset`` "embedded" (smoke runs) uses the bundled photos instead.
  """
  if config.dataset == "embedded":
    ds = data_lib.load("embedded", image_size=config.image_size)
  else:
    path = os.path.join(config.data_dir, "cifar10")
    ds = data_lib.load("cifar10", data_dir=path, split="test",
                       image_size=config.image_size)
  n = config.num_images * config.batch_size
  return data_lib.sample(ds, n, seed=config.seed)


def attack_images(config, victim, defaults, private) -> dict:
  """Attacks ``num_images`` leaks of B images each; returns the scores."""
  variables = victim_lib.init_variables(victim,
                                        jax.random.key(config.victim_seed))
  b = config.batch_size
  xs = jnp.asarray(private.images).reshape(
      (config.num_images, b) + private.images.shape[1:])
  ys = jnp.asarray(private.labels).reshape((config.num_images, b))
  leaks = [leak_lib.simulate(victim, variables, xs[i], ys[i],
                             jax.random.key(config.seed + i))[0]
           for i in range(config.num_images)]
  attack = dict(config.attack)
  attack.pop("name", None)
  groups = config.get("images_per_program") or config.num_images
  t0 = time.time()
  recs = []
  for start in range(0, config.num_images, groups):
    recs += gm.attack_many(leaks[start:start + groups], victim, attack,
                           jax.random.key(config.seed + 1000 + start),
                           defaults)
  jax.block_until_ready([r.images for r in recs])
  seconds = time.time() - t0
  psnr, ssim, label_acc, losses = [], [], [], []
  for i, rec in enumerate(recs):
    s = metrics.score(jnp.clip(rec.images, 0.0, 1.0), xs[i], data_range=1.0,
                      labels_hat=rec.labels, labels=ys[i])
    psnr += s["per_image"]["psnr"]
    ssim += s["per_image"]["ssim"]
    label_acc.append(s["label_accuracy"])
    losses.append(rec.info["loss"])
  out = dict(
      num_images=config.num_images, batch_size=b,
      images_attacked=config.num_images * b,
      median_psnr=float(np.median(psnr)), mean_psnr=float(np.mean(psnr)),
      median_ssim=float(np.median(ssim)),
      fraction_psnr_at_least_40=float(np.mean(np.asarray(psnr) >= 40)),
      label_accuracy=float(np.mean(label_acc)),
      seconds=seconds, seconds_per_image=seconds / (config.num_images * b),
      per_image_psnr=[round(p, 2) for p in psnr],
      final_losses=losses, label_source=recs[0].info["label_source"],
      attack=attack, iterations=recs[0].info["iterations"],
      first_chunk_seconds=recs[0].info["first_chunk_seconds"],
      pixel_range="[0, 1]", victim=victim.name, victim_config=victim.config)
  logging.info("median PSNR %.2f dB over %d images (B=%d), %.1f s/image",
               out["median_psnr"], config.num_images, b,
               out["seconds_per_image"])
  return out


def run(config, workdir):
  del workdir
  private = load_images(config)
  victim = models.make_victim(
      "lenet", input_shape=private.images.shape[1:],
      num_classes=private.num_classes)
  return attack_images(config, victim, gm.DLG_DEFAULTS, private)
