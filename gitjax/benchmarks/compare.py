"""Several attacks on the same leaks: ``config.attack`` and its baselines.

A comparison benchmark's attacks are full attack blocks: ``config.attack``
(labelled by its name) and ``config.baselines`` (labelled by their keys),
each checked by ``experiments.check_benchmark`` before any work.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import experiments
from gitjax import leak as leak_lib


def attack_blocks(config) -> dict:
  """{label: attack block}: ``config.attack`` first, then the baselines."""
  blocks = {config.attack.name: config.attack}
  for label, block in (config.get("baselines") or {}).items():
    if label in blocks:
      raise ValueError(f"config.baselines.{label}: the label is "
                       "config.attack's name; rename the baseline")
    blocks[label] = block
  return blocks


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


def unit_images(case, rec, score=None) -> np.ndarray:
  """A reconstruction on [0, 1], in the truth's order when ``score`` has a
  Hungarian permutation."""
  x = np.asarray(jnp.clip(leak_lib.to_unit_range(case.leak, rec.images),
                          0.0, 1.0))
  perm = (score or {}).get("permutation")
  return x if perm is None else x[np.asarray(perm)]


def truth_images(case) -> np.ndarray:
  return np.asarray(leak_lib.to_unit_range(case.leak, case.truth.images))
