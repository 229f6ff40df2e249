"""Several attacks on the same leaks: ``config.attack`` and its baselines.

A comparison benchmark's attacks are full attack blocks: ``config.attack``
(labelled by its name) and ``config.baselines`` (labelled by their keys),
each checked by ``experiments.check_benchmark`` before any work.
"""

import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import experiments
from gitjax import leak as leak_lib
from gitjax import report


def attack_blocks(config) -> dict:
  """{label: attack block}: ``config.attack`` first, then the baselines
  (labels checked by ``experiments.check_labels``)."""
  experiments.check_labels(config)
  return {config.attack.name: config.attack,
          **(config.get("baselines") or {})}


def run_attacks(cases, blocks: dict, keys) -> dict:
  """{label: (reconstructions, seconds)}: each attack on every case.

  ``keys``: one per case (each attack uses the same key on a case).
  """
  out = {}
  for label, block in blocks.items():
    t = time.time()
    recs = experiments.attack_cases(cases, block, list(keys))
    jax.block_until_ready([r.images for r in recs])
    out[label] = (recs, time.time() - t)
  return out


def summarize(scores: list[dict]) -> dict:
  """The mean over cases of each case's mean metrics."""
  keys = scores[0]["mean"].keys()
  return {k: float(np.mean([s["mean"][k] for s in scores])) for k in keys}


def per_image(scores: list[dict]) -> dict:
  """{metric: [value per image]}: the cases' images one after another."""
  keys = scores[0]["per_image"].keys()
  return {k: [float(v) for s in scores for v in np.ravel(s["per_image"][k])]
          for k in keys}


def unit_images(case, rec, score=None) -> np.ndarray:
  """A reconstruction on [0, 1], in the truth's order when ``score`` has a
  Hungarian permutation."""
  x = np.asarray(jnp.clip(leak_lib.to_unit_range(case.leak, rec.images),
                          0.0, 1.0))
  perm = (score or {}).get("permutation")
  return x if perm is None else x[np.asarray(perm)]


def truth_images(case) -> np.ndarray:
  return np.asarray(leak_lib.to_unit_range(case.leak, case.truth.images))


def sample_seeds(config, count: int) -> list[int]:
  """The sample seeds of a case's ``count`` batches (``sweep``)."""
  first = config.bench.get("first_batch", 0)
  if isinstance(first, bool) or not isinstance(first, int) or first < 0:
    raise ValueError(f"config.bench.first_batch must be an integer >= 0; "
                     f"got {first!r}")
  b = config.data.batch_size
  return [100 * (first + j) + b for j in range(count)]


def sweep(config, workdir, titles: dict | None = None) -> dict:
  """Every attack block on the same leaks of every case of a sweep.

  ``config.bench.cases``: block overrides per case (a ``data.batch_size``,
  a ``leak.defense``, and ``attack`` or ``baselines`` fields, whose blocks
  the case's row records as ``<label>_block`` when they differ from the
  config's); ``bench.num_batches`` rounds per case (a case's
  ``bench.num_batches`` overrides it), batch j of a
  case with B images sampled with seed 100 j + B, every attack's key
  ``seed + 11 + j``; ``bench.first_batch`` = f (default 0) starts at
  batch f: other images (a held-out set), the same keys. Scores with ``experiments.evaluate`` (Hungarian
  matching for B > 1); a grid per case (truth, then each attack;
  ``titles`` renames rows), ``images_<case>.npz`` (``truth`` and each
  attack's images on [0, 1] in the truth's order, [batches, B, H, W, C],
  to score or look at again without rerunning) and ``partial.json``
  after each case. A row holds each attack's mean metrics, per batch
  PSNR and per image every metric (``<label>_per_image``, batch after
  batch, the order of the npz).
  """
  dataset = experiments.load_data(config.data)
  blocks = attack_blocks(config)
  results = {"victim": experiments.plain(config.victim),
             **{k: experiments.plain(b) for k, b in blocks.items()},
             "cases": {}}
  for name, overrides in config.bench.cases.items():
    cfg = experiments.with_overrides(config, overrides,
                                     f"config.bench.cases.{name}")
    b = cfg.data.batch_size
    count = cfg.bench.num_batches  # A case may set its own.
    keys = [jax.random.key(config.seed + 11 + j) for j in range(count)]
    cases = experiments.make_cases(cfg, dataset, count,
                                   sample_seeds=sample_seeds(cfg, count))
    case_blocks = attack_blocks(cfg)  # With the case's overrides.
    runs = run_attacks(cases, case_blocks, keys)
    row = {"batch_size": b, "num_batches": count,
           "defense": experiments.plain(cfg.leak.defense)}
    for label, block in case_blocks.items():
      if experiments.plain(block) != results[label]:
        row[f"{label}_block"] = experiments.plain(block)
    images = {"truth": np.stack([truth_images(c) for c in cases])}
    for label, (recs, seconds) in runs.items():
      scores = [experiments.evaluate(r, c, cfg) for r, c in zip(recs, cases)]
      row[label] = summarize(scores)
      row[f"{label}_per_batch_psnr"] = [s["mean"]["psnr"] for s in scores]
      row[f"{label}_per_image"] = per_image(scores)
      row[f"{label}_seconds"] = seconds
      row.setdefault("label_sources", [r.info.get("label_source")
                                       for r in recs])
      images[label] = np.stack([unit_images(c, r, s) for r, c, s
                                in zip(recs, cases, scores)])
    report.save_npz(os.path.join(workdir, f"images_{name}.npz"), images)
    grid = [images[k][0] for k in images]
    report.save_grid(os.path.join(workdir, f"grid_{name}.png"), grid,
                     row_titles=["truth"] + [(titles or {}).get(k, k)
                                             for k in runs])
    results["cases"][name] = row
    report.write_json(workdir, "partial.json", results)
    logging.info("%s: %s", name, row)
  return results

