"""GI-SMN against Inverting Gradients on CIFAR-10, random-init ResNet-18.

Cases (``config.cases``): batch sizes without a defense, and B = 1 under 90%
pruning and under Gaussian (DP-style) noise. Each case attacks
``num_batches`` batches of distinct-label test images with GI-SMN (the
trained style generator) and IG with the same iteration budget, on the same
leaks, and scores on [0, 1] after Hungarian matching (PSNR, SSIM, LPIPS).
"""

import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import data as data_lib
from gitjax import leak as leak_lib
from gitjax import models
from gitjax import report
from gitjax import victim as victim_lib
from gitjax.attacks import gismn
from gitjax.attacks import gradient_matching
from gitjax.benchmarks import ggl_celeba_defenses as common


def run(config, workdir):
  d = common.plain(config.data)
  ds = data_lib.load(d["name"], data_dir=d["data_dir"], split="test",
                     image_size=d["image_size"], channels=3)
  mean, std = tuple(d["mean"]), tuple(d["std"])
  vkw = common.plain(config.victim)
  victim = models.make_victim(vkw.pop("name"), input_shape=tuple(ds.images.shape[1:]),
                              num_classes=ds.num_classes, **vkw)
  variables = victim_lib.init_variables(victim,
                                        jax.random.key(config.victim_seed))
  generator, gen_vars = gismn.cached_generator(config.generator_dir)
  results = {"victim": common.plain(config.victim),
             "gismn": common.plain(config.attack),
             "ig": common.plain(config.ig), "cases": {}}
  for name, case in config.cases.items():
    case = common.plain(case)
    b, spec = case["batch_size"], [dict(s) for s in case["defense"]]
    rows_g, rows_i, grids = [], [], []
    for j in range(config.num_batches):
      private = data_lib.sample(ds, b, seed=100 * j + b,
                                distinct_labels=True)
      xs = jnp.asarray(data_lib.normalize(private.images, mean, std))
      ys = jnp.asarray(private.labels)
      leak, truth = leak_lib.simulate(
          victim, variables, xs, ys, jax.random.key(10 + j), defense=spec,
          mean=mean, std=std)
      key = jax.random.key(20 + j)
      t = time.time()
      rec = gismn.reconstruct(leak, victim, generator, gen_vars,
                              config.attack, key)
      s = common.score(leak, rec.images, truth.images, config.lpips_net)
      s["seconds"] = time.time() - t
      s["label_source"] = rec.info["label_source"]
      rows_g.append(s)
      t = time.time()
      ig = gradient_matching.inverting_gradients(leak, victim, config.ig,
                                                 key)
      s_i = common.score(leak, ig.images, truth.images, config.lpips_net)
      s_i["seconds"] = time.time() - t
      rows_i.append(s_i)
      logging.info("%s batch %d: GI-SMN psnr %.2f | IG psnr %.2f", name, j,
                   s["mean"]["psnr"], s_i["mean"]["psnr"])
      if j == 0:
        perm_g = np.asarray(s["permutation"])
        perm_i = np.asarray(s_i["permutation"])
        grids = [leak_lib.to_unit_range(leak, truth.images),
                 jnp.clip(leak_lib.to_unit_range(leak, rec.images), 0,
                          1)[perm_g],
                 jnp.clip(leak_lib.to_unit_range(leak, ig.images), 0,
                          1)[perm_i]]
    report.save_grid(os.path.join(workdir, f"grid_{name}.png"),
                     [np.asarray(g) for g in grids],
                     row_titles=["truth", "GI-SMN", "IG"])
    results["cases"][name] = {
        "batch_size": b, "defense": spec,
        "gismn": common.summarize(rows_g), "ig": common.summarize(rows_i),
        "gismn_per_batch_psnr": [r["mean"]["psnr"] for r in rows_g],
        "ig_per_batch_psnr": [r["mean"]["psnr"] for r in rows_i],
        "gismn_seconds": float(np.sum([r["seconds"] for r in rows_g])),
        "ig_seconds": float(np.sum([r["seconds"] for r in rows_i])),
        "label_sources": [r["label_source"] for r in rows_g],
    }
    report.write_json(workdir, "partial.json", results)
    logging.info("%s: %s", name, results["cases"][name])
  results["published_gismn_best_psnr"] = 36.98
  return results
