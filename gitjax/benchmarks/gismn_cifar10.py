"""GI-SMN against Inverting Gradients on CIFAR-10, random-init ResNet-18.

Cases (``config.bench.cases``: a ``data.batch_size`` and a ``leak.defense``
each): batch sizes without a defense, and B = 1 under 90% pruning and under
Gaussian (DP-style) noise. Each case attacks ``bench.num_batches`` batches of
distinct-label test images (``experiments.make_cases``, batch j sampled with
seed 100 j + B) with ``config.attack`` (GI-SMN, the trained style generator)
and each ``config.baselines`` block (IG with the same iteration budget), on
the same leaks, and scores with ``experiments.evaluate`` on [0, 1] after
Hungarian matching (PSNR, SSIM, LPIPS).
"""

import logging
import os

import jax
import numpy as np

from gitjax import experiments
from gitjax import report
from gitjax.benchmarks import compare


def run(config, workdir):
  dataset = experiments.load_data(config.data)
  count = config.bench.num_batches
  keys = [jax.random.key(config.seed + 11 + j) for j in range(count)]
  blocks = compare.attack_blocks(config)
  results = {"victim": experiments.plain(config.victim),
             **{k: experiments.plain(b) for k, b in blocks.items()},
             "cases": {}}
  for name, overrides in config.bench.cases.items():
    cfg = experiments.with_overrides(config, overrides,
                                     f"config.bench.cases.{name}")
    b = cfg.data.batch_size
    cases = experiments.make_cases(
        cfg, dataset, count, sample_seeds=[100 * j + b for j in range(count)])
    runs = compare.run_attacks(cases, blocks, keys)
    row = {"batch_size": b, "defense": experiments.plain(cfg.leak.defense)}
    grid = [compare.truth_images(cases[0])]
    for label, (recs, seconds) in runs.items():
      scores = [experiments.evaluate(r, c, cfg) for r, c in zip(recs, cases)]
      row[label] = compare.summarize(scores)
      row[f"{label}_per_batch_psnr"] = [s["mean"]["psnr"] for s in scores]
      row[f"{label}_seconds"] = seconds
      row.setdefault("label_sources", [r.info.get("label_source")
                                       for r in recs])
      grid.append(compare.unit_images(cases[0], recs[0], scores[0]))
    report.save_grid(os.path.join(workdir, f"grid_{name}.png"), grid,
                     row_titles=["truth"] + [
                         "GI-SMN" if k == "gismn" else k.upper()
                         for k in runs])
    results["cases"][name] = row
    report.write_json(workdir, "partial.json", results)
    logging.info("%s: %s", name, row)
  results["published_gismn_best_psnr"] = 36.98
  return results
