"""GradInversion (Yin et al., CVPR 2021, "See through Gradients").

Gradient matching with image priors made for BatchNorm victims, run by the
shared engine without a loop of its own:

  L(x_r) = D(grad(x_r), observed) + tv TV(x_r) + l2 ||x_r|| / HW
           + bn_prior R_BN(x_r) + group ||x_r - mean_s(x_s)|| / HW,

for R restarts x_1..x_R side by side. R_BN is DeepInversion's BatchNorm
statistics prior (the batch's feature mean and variance at every BatchNorm
layer against the victim's running statistics; ``objectives.bn_prior``);
the group-consistency term pulls every restart towards the restarts'
pixel-wise mean, which the engine's ``on_chunk`` hook refreshes every
``group_every`` iterations (the "lazy" consensus of Yin et al.; they also
register the restarts before averaging, which is not done here). Adam with
cosine decay, warmup and Langevin noise on the updates (``langevin``:
``optax.add_noise``), box constraint; labels from the gradient.

Defaults follow breaching's ``seethroughgradients.yaml`` (its partial
GradInversion, without group consistency): squared-L2 distance weighted
0.5 x 1e-4, Adam 0.1 (unsigned), cosine decay, warmup 50, Langevin noise
0.01, TV 1e-4, L2 1e-6, BN prior 0.1, 20,000 iterations; plus Yin et al.'s
group term (weight 0.01, refreshed every 100 iterations) over 4 restarts.
The BN prior only means something when the victim's running statistics do
(a trained or calibrated victim, not a fresh init whose statistics are 0 and
1). Attack fields: every ``matching.Settings`` field, ``init``, ``labels``,
``batch_size`` (as ``gradient_matching``) and ``group``, ``group_every``.
"""

import math
from typing import NamedTuple

import jax.numpy as jnp

from gitjax.attacks import gradient_matching as gm
from gitjax.attacks import objectives
from gitjax.attacks import Reconstruction

DEFAULTS = dict(
    objective="l2", distance_scale=0.5e-4, optimizer="adam", lr=0.1,
    signed=False, schedule="cosine", warmup=50, langevin=0.01,
    iterations=20000, restarts=4, box=True, tv=1e-4, l2=1e-6, bn_prior=0.1,
    init="randn", labels="auto")
GROUP_FIELDS = dict(group=0.01, group_every=100)


class GroupConsistency(NamedTuple):
  """``weight * objectives.group_distance(x, aux)``; hashable (static)."""
  weight: float

  def __call__(self, v, x, aux):
    del v
    return self.weight * objectives.group_distance(x, aux)


def consensus_hook(every: int):
  """``on_chunk``: the restarts' mean image into ``data["aux"]`` every
  ``every`` steps (the engine calls it before each chunk)."""
  def hook(step, v, data):
    if step % every:
      return None
    return dict(data, aux=jnp.mean(v["x"], axis=0))
  return hook


def _split(config) -> tuple[dict, dict]:
  cfg = dict(config.to_dict() if hasattr(config, "to_dict") else
             (config or {}))
  group = {k: cfg.pop(k, v) for k, v in GROUP_FIELDS.items()}
  if int(group["group_every"]) < 1:
    raise ValueError(f"gradinversion group_every must be >= 1; got "
                     f"{group['group_every']}")
  return cfg, group


def attack(leak, victim, config, key) -> Reconstruction:
  """GradInversion through the common interface."""
  cfg, group = _split(config)
  every = int(group["group_every"])
  # Chunks end at every consensus refresh.
  cfg["chunk"] = math.gcd(int(cfg.get("chunk", every)), every)

  consensus = consensus_hook(every)
  weight = float(group["group"])
  rec = gm.run_attack(leak, victim, cfg, key, DEFAULTS,
                      penalty=GroupConsistency(weight) if weight else None,
                      on_chunk=consensus if weight else None)
  return rec._replace(info=dict(rec.info, group=weight, group_every=every))
