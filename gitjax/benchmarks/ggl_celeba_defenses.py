"""GGL against four defenses on CelebA 32x32, with IG on the same leaks.

For each defense (``bench.cases``, a ``leak.defense`` each) and each
attacked image (B = 1; ``experiments.make_cases`` from the config's blocks):
simulate the leak on a random-init 2-class ResNet-18 (inputs normalized with
mean = std = 0.5, as GGL), run ``config.attack`` (GGL: CMA-ES through the
trained DCGAN) and each ``config.baselines`` block (IG) on the same leak,
and score with ``experiments.evaluate`` on [0, 1] (PSNR, SSIM, LPIPS) and on
GGL's [-1, 1] scale (``psnr_ggl``). Also times one CMA-ES generation: the
population in one vmapped call, in one lax.map call, and one call per
candidate (under the first defense, with that case's attack settings).
With CMA-ES restarts, each row keeps every image's restart latents
(``ggl_restart_latents``; in the results, not the log) for analysis of the
answers.
"""

import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import experiments
from gitjax import loading
from gitjax import report
from gitjax.attacks import ggl
from gitjax.benchmarks import compare


def time_generation(prob, population, repeats=3) -> dict:
  """Seconds for one generation: one vmapped call, one lax.map call, and one
  call per candidate."""
  zs = jax.random.normal(jax.random.key(0), (population, prob.dim))
  key = jax.random.key(1)
  batched = ggl.population(prob, "vmap", constants=True)  # The attack's.
  mapped = ggl.population(prob, "map", constants=True)
  single = jax.jit(prob.search_loss)
  jax.block_until_ready(batched(zs, key))
  jax.block_until_ready(mapped(zs, key))
  jax.block_until_ready(single(zs[0], key))

  def best(fn):
    out = []
    for _ in range(repeats):
      t = time.perf_counter()
      fn()
      out.append(time.perf_counter() - t)
    return min(out)

  t_vmap = best(lambda: jax.block_until_ready(batched(zs, key)))
  t_map = best(lambda: jax.block_until_ready(mapped(zs, key)))
  t_loop = best(lambda: [jax.block_until_ready(single(z, key)) for z in zs])
  ggl.release()
  return {"population": population, "vmapped_s": t_vmap, "mapped_s": t_map,
          "loop_s": t_loop, "speedup": t_loop / t_vmap}


def run(config, workdir):
  dataset = experiments.load_data(config.data)
  count = config.bench.num_images
  keys = [jax.random.key(config.seed + 1001 + i) for i in range(count)]
  blocks = compare.attack_blocks(config)
  main = config.attack.name
  results = {"num_images": count, "victim": experiments.plain(config.victim),
             **{k: experiments.plain(b) for k, b in blocks.items()},
             "defenses": {}}
  for name, overrides in config.bench.cases.items():
    cfg = experiments.with_overrides(config, overrides,
                                     f"config.bench.cases.{name}")
    cases = experiments.make_cases(cfg, dataset, count)
    if "cmaes_generation_timing" not in results and main == "ggl":
      results["cmaes_generation_timing"] = _timing(cases[0], cfg)
    # A case may also set attack fields (GGL's mask model under pruning).
    runs = compare.run_attacks(cases, compare.attack_blocks(cfg), keys)
    row = {"spec": experiments.plain(cfg.leak.defense),
           "attack_overrides": experiments.plain(overrides).get("attack", {}),
           "victim": experiments.plain(cfg.victim),
           "observed_grad_norm_mean": float(np.mean(
               [_norm(c.leak.message) for c in cases]))}
    grid = [np.stack([compare.truth_images(c)[0] for c in cases])]
    for label, (recs, seconds) in runs.items():
      scores = [experiments.evaluate(r, c, cfg) for r, c in zip(recs, cases)]
      row[label] = compare.summarize(scores)
      row[f"{label}_per_image_psnr_ggl"] = [s["mean"]["psnr_ggl"]
                                            for s in scores]
      row[f"{label}_seconds"] = seconds
      latents = [r.info.get("restart_latents") for r in recs]
      if any(latents):  # Each image's restarts, for the answers' analysis.
        row[f"{label}_restart_latents"] = latents
      grid.append(np.stack([compare.unit_images(c, r)[0]
                            for c, r in zip(cases, recs)]))
    report.save_grid(os.path.join(workdir, f"grid_{name}.png"), grid,
                     row_titles=["truth"] + [k.upper() for k in runs])
    results["defenses"][name] = row
    report.write_json(workdir, "partial.json", results)
    logging.info("%s: %s", name, {k: v for k, v in row.items()
                                  if not k.endswith("_restart_latents")})
  results["published_ggl_psnr_ggl"] = dict(
      noise=11.0766, clip=11.1902, prune=11.1466, soteria=10.1434)
  return results


def _timing(case, config) -> dict:
  generator, gen_vars = loading.generator(config.attack.generator_dir)
  prob = ggl.make_problem(case.leak, case.victim, generator, gen_vars,
                          experiments.plain(config.attack))
  out = time_generation(prob, config.attack.population,
                        config.bench.timing_repeats)
  logging.info("CMA-ES generation timing: %s", out)
  return out


def _norm(message) -> float:
  return float(jnp.sqrt(sum(jnp.sum(jnp.square(g))
                            for g in jax.tree.leaves(message))))
