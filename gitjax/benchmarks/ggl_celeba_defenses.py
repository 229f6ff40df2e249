"""GGL against four defenses on CelebA 32x32, with IG on the same leaks.

For each defense and each attacked image (B = 1): simulate the leak on a
random-init 2-class ResNet-18 (inputs normalized with mean = std = 0.5, as
GGL), run GGL (CMA-ES through the trained DCGAN) and Inverting Gradients
(the matching engine) on the same leak, and score on [0, 1] (PSNR, SSIM,
LPIPS) and on GGL's [-1, 1] scale (``psnr_ggl``). Also times one CMA-ES
generation: the population in one vmapped call against one call per
candidate.
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
from gitjax import report
from gitjax import victim as victim_lib
from gitjax.attacks import ggl
from gitjax.attacks import gradient_matching


def plain(x):
  return x.to_dict() if hasattr(x, "to_dict") else dict(x)


def score(leak, x_hat, x, lpips_net):
  """Metrics of victim-space reconstructions against victim-space truth."""
  a = jnp.clip(leak_lib.to_unit_range(leak, x_hat), 0.0, 1.0)
  b = leak_lib.to_unit_range(leak, x)
  net = lpips_net if lpips_net and metrics.lpips_available() else None
  return metrics.score(a, b, data_range=1.0, lpips_net=net)


def summarize(rows: list[dict]) -> dict:
  keys = rows[0]["mean"].keys()
  return {k: float(np.mean([r["mean"][k] for r in rows])) for k in keys}


def time_generation(prob, population, repeats=3) -> dict:
  """Seconds for one generation: one vmapped call vs one call per candidate."""
  zs = jax.random.normal(jax.random.key(0), (population, prob.dim))
  key = jax.random.key(1)
  batched = jax.jit(jax.vmap(prob.loss, in_axes=(0, None)))
  single = jax.jit(prob.loss)
  jax.block_until_ready(batched(zs, key))
  jax.block_until_ready(single(zs[0], key))

  def best(fn):
    out = []
    for _ in range(repeats):
      t = time.perf_counter()
      fn()
      out.append(time.perf_counter() - t)
    return min(out)

  t_vmap = best(lambda: jax.block_until_ready(batched(zs, key)))
  t_loop = best(lambda: [jax.block_until_ready(single(z, key)) for z in zs])
  return {"population": population, "vmapped_s": t_vmap, "loop_s": t_loop,
          "speedup": t_loop / t_vmap}


def run(config, workdir):
  d = plain(config.data)
  ds = data_lib.load(d["name"], data_dir=d["data_dir"],
                     image_size=d["image_size"], channels=3,
                     **dict(d.get("options") or {}))
  idx = list(range(config.num_images))
  private = data_lib.subset(ds, idx)
  mean, std = tuple(d["mean"]), tuple(d["std"])
  xs = jnp.asarray(data_lib.normalize(private.images, mean, std))
  ys = jnp.asarray(private.labels)
  vkw = plain(config.victim)
  victim = models.make_victim(vkw.pop("name"), input_shape=xs.shape[1:],
                              num_classes=ds.num_classes, **vkw)
  variables = victim_lib.init_variables(victim,
                                        jax.random.key(config.victim_seed))
  generator, gen_vars = ggl.cached_generator(config.generator_dir)
  results = {"num_images": len(idx), "victim": plain(config.victim),
             "ggl": plain(config.attack), "ig": plain(config.ig),
             "defenses": {}}
  timed = False
  for name, spec in config.defenses.items():
    spec = [dict(s) for s in spec]
    rows_ggl, rows_ig, norms = [], [], []
    grid_true, grid_ggl, grid_ig = [], [], []
    for i in range(len(idx)):
      leak, truth = leak_lib.simulate(
          victim, variables, xs[i:i + 1], ys[i:i + 1],
          jax.random.key(1000 + i), defense=spec, mean=mean, std=std)
      norms.append(float(jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in
                                      jax.tree.leaves(leak.message)))))
      key = jax.random.key(2000 + i)
      if not timed:
        prob = ggl.make_problem(leak, victim, generator, gen_vars,
                                config.attack)
        results["cmaes_generation_timing"] = time_generation(
            prob, config.attack.population)
        logging.info("CMA-ES generation timing: %s",
                     results["cmaes_generation_timing"])
        timed = True
      t = time.time()
      rec = ggl.reconstruct(leak, victim, generator, gen_vars, config.attack,
                            key)
      s = score(leak, rec.images, truth.images, config.lpips_net)
      s["seconds"], s["loss"] = time.time() - t, rec.info["loss"]
      rows_ggl.append(s)
      t = time.time()
      ig = gradient_matching.inverting_gradients(leak, victim, config.ig, key)
      s_ig = score(leak, ig.images, truth.images, config.lpips_net)
      s_ig["seconds"] = time.time() - t
      rows_ig.append(s_ig)
      logging.info("%s image %d: GGL psnr %.2f (ggl %.2f) | IG psnr %.2f "
                   "(ggl %.2f)", name, i, s["mean"]["psnr"],
                   s["mean"]["psnr_ggl"], s_ig["mean"]["psnr"],
                   s_ig["mean"]["psnr_ggl"])
      grid_true.append(leak_lib.to_unit_range(leak, truth.images)[0])
      grid_ggl.append(jnp.clip(leak_lib.to_unit_range(leak, rec.images)[0],
                               0, 1))
      grid_ig.append(jnp.clip(leak_lib.to_unit_range(leak, ig.images)[0], 0,
                              1))
    report.save_grid(os.path.join(workdir, f"grid_{name}.png"),
                     [np.stack(grid_true), np.stack(grid_ggl),
                      np.stack(grid_ig)],
                     row_titles=["truth", "GGL", "IG"])
    results["defenses"][name] = {
        "spec": spec, "observed_grad_norm_mean": float(np.mean(norms)),
        "ggl": summarize(rows_ggl), "ig": summarize(rows_ig),
        "ggl_per_image_psnr_ggl": [r["mean"]["psnr_ggl"] for r in rows_ggl],
        "ig_per_image_psnr_ggl": [r["mean"]["psnr_ggl"] for r in rows_ig],
        "ggl_seconds": float(np.sum([r["seconds"] for r in rows_ggl])),
        "ig_seconds": float(np.sum([r["seconds"] for r in rows_ig])),
    }
    report.write_json(workdir, "partial.json", results)
    logging.info("%s: %s", name, results["defenses"][name])
  results["published_ggl_psnr_ggl"] = dict(
      noise=11.0766, clip=11.1902, prune=11.1466, soteria=10.1434)
  return results
