"""Gradient matching on M independent leaks of one victim at once.

``run_many(leaks, victim, x_init [M, R, N, ...], labels [M, N], config)``
  M x R trials in one compiled program (vmapped, per-trial data); returns
  M ``matching.Result``s. ``matching.run`` is the one-leak case.
"""

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import models
from gitjax.attacks import engine
from gitjax.attacks import matching


def run_many(leaks, victim, x_init, labels, config,
             key=None) -> list[matching.Result]:
  """Attacks M independent leaks of one victim in one compiled program.

  The M x R trials run side by side (vmapped; per-trial data), which on a
  CPU or GPU costs far less than M sequential runs for small victims.

  Args:
    leaks: M leaks with the same model, protocol and defense.
    victim: their victim.
    x_init: [M, R, N, *input_shape] initial images.
    labels: [M, N] (or [M, N, C]) labels, or None for joint optimization.
    config: ``matching.Settings`` or a dict of its fields.
    key: randomness for joint label logits.

  Returns:
    M ``matching.Result``s; each ``info`` has the shared history and
    timings and its own per-restart losses.
  """
  s = (config if isinstance(config, matching.Settings)
       else matching.make_settings(config))
  if s.conv == "auto":  # Side by side (vmapped) with per-problem weights:
    # XLA's convolutions would become grouped ones; the platform's default.
    s = s._replace(conv=models.common.resolve_conv("auto"))
  m, r = x_init.shape[:2]
  if len(leaks) != m:
    raise ValueError(f"{len(leaks)} leaks but x_init has {m} problems")
  problem = matching.make_problem(leaks[0], victim, s, labels is None)
  for lk in leaks[1:]:
    if matching.make_problem(lk, victim, s, labels is None) != problem:
      raise ValueError("run_many needs leaks with the same model, protocol "
                       "and defense")
  flat = lambda a: a.reshape((m * r,) + a.shape[2:])
  init = {"x": flat(x_init)}
  if labels is None:
    init["y"] = matching.label_logits(problem, init["x"], m * r, None, key)
  datas = [problem.with_factors(matching.make_data(
      lk, None if labels is None else labels[i]), init["x"][0])
           for i, lk in enumerate(leaks)]
  if len({jax.tree.structure(d) for d in datas}) > 1 or any(
      a.shape != b.shape for d in datas[1:]
      for a, b in zip(jax.tree.leaves(d), jax.tree.leaves(datas[0]))):
    datas = [dict(d, factors={}) for d in datas]  # Ranks differ: none.
  data = jax.tree.map(lambda *a: jnp.repeat(jnp.stack(a), r, axis=0), *datas)
  project = matching.BoxProjection() if s.box else None
  best, info = engine.optimize(
      problem, init, matching.transformation(s), data,
      options=matching.options(s, problem), project=project,
      per_trial=True, select=False,
      desc=f"{m} x {victim.name}/{s.objective}/{s.optimizer}")
  losses = np.asarray(info["trial_losses"]).reshape(m, r)
  out = []
  for i in range(m):
    j = i * r + int(np.argmin(losses[i]))
    b = jax.tree.map(lambda a: a[j], best)
    d = jax.tree.map(lambda a: a[j], data)
    x, y = problem.images_labels(b, d)
    inf = dict(info, loss=float(losses[i].min()), best_trial=j - i * r,
               trial_losses=[float(v) for v in losses[i]],
               final_losses=info["final_losses"][i * r:(i + 1) * r],
               nonfinite_trials=[t - i * r for t in info["nonfinite_trials"]
                                 if i * r <= t < (i + 1) * r],
               died_at=info["died_at"][i * r:(i + 1) * r],
               problems=m)
    out.append(matching.Result(images=x, labels=y, variables=b["x"],
                               loss=inf["loss"], info=inf))
  return out
