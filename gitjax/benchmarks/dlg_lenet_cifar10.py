"""DLG on DLG's LeNet (sigmoid, uniform(-0.5, 0.5), random init), CIFAR-10.

``bench.num_images`` FedSGD leaks of B = ``data.batch_size`` test images each
(``experiments.make_cases``: one seeded sample, one victim), all attacked in
one compiled program (``experiments.attack_cases``; ``images_per_program``
splits them) with the attack in ``config.attack`` (DLG; any registered
attack runs). Reports PSNR on [0, 1] pixels (median, mean, per image),
label accuracy and seconds per image.

``ig_convnet_cifar10`` reuses ``attack_images`` with its own blocks.
"""

import logging
import time

import jax
import numpy as np

from gitjax import experiments


def attack_images(config, dataset) -> tuple[dict, list, list]:
  """Attacks ``bench.num_images`` leaks of B images each.

  Returns (the scores' summary, the cases, their reconstructions).
  """
  count = config.bench.num_images
  cases = experiments.make_cases(config, dataset, count)
  group = config.bench.images_per_program or count
  t0 = time.time()
  recs = []
  for start in range(0, count, group):
    recs += experiments.attack_cases(
        cases[start:start + group], config.attack,
        jax.random.key(config.seed + 1000 + start))
  jax.block_until_ready([r.images for r in recs])
  seconds = time.time() - t0
  scores = [experiments.evaluate(r, c, config) for r, c in zip(recs, cases)]
  psnr = [p for s in scores for p in s["per_image"]["psnr"]]
  ssim = [p for s in scores for p in s["per_image"]["ssim"]]
  b = cases[0].leak.batch_size
  attack = experiments.plain(config.attack)
  out = dict(
      num_images=count, batch_size=b, images_attacked=len(psnr),
      median_psnr=float(np.median(psnr)), mean_psnr=float(np.mean(psnr)),
      median_ssim=float(np.median(ssim)),
      fraction_psnr_at_least_40=float(np.mean(np.asarray(psnr) >= 40)),
      label_accuracy=float(np.mean([s["label_accuracy"] for s in scores])),
      seconds=seconds, seconds_per_image=seconds / len(psnr),
      per_image_psnr=[round(p, 2) for p in psnr],
      final_losses=[r.info.get("loss") for r in recs],
      label_source=recs[0].info.get("label_source"), attack=attack,
      attack_name=attack["name"], iterations=recs[0].info.get("iterations"),
      first_chunk_seconds=recs[0].info.get("first_chunk_seconds"),
      pixel_range="[0, 1]", victim=cases[0].victim.name,
      victim_config=cases[0].victim.config)
  logging.info("%s: median PSNR %.2f dB over %d images (B=%d), %.1f s/image",
               attack["name"], out["median_psnr"], count, b,
               out["seconds_per_image"])
  return out, cases, recs


def run(config, workdir):
  del workdir
  return attack_images(config, experiments.load_data(config.data))[0]
