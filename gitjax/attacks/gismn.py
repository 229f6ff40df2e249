"""GI-SMN: gradient inversion through a style-based generator (Qian 2024).

Optimizes the per-layer styles w (W+, one row per layer) and the noise
inputs of a style-based generator so that the generated batch reproduces
the observed gradient (papers.md B.2):

* init: z ~ N(0, I), w = w_avg + psi (mapping(z) - w_avg) with psi = 0.5,
  copied to every layer; noise maps ~ N(0, 1);
* Adam, lr 0.1, constant;
* iterations t < (4/9) T: L = D(trial gradient, observed) (L1 by default);
* afterwards L = D / 2 + tv TV(x) + l2 ||x||_2 / HW + group ||x - x_g||_2 / HW
  with tv = l2 = group = 1e-4 and x_g a snapshot of the reconstruction taken
  ``group_every`` iterations before the switch and refreshed every
  ``group_every`` iterations (T / 36: GI-SMN's 1500 / 100 for T = 3600);
* labels inferred from the gradient (``labels.infer``) for batches up to 16;
* ``restarts`` > 1 (GI-SMN's code has the knob, default 1, as inversefed):
  the whole run from that many latent draws, one after another (each its
  own group snapshots), keeping the one whose final gradient distance D is
  lowest; the first start is the one a single run takes;
* ``finalists`` F < ``restarts`` R (successive halving, not in GI-SMN): all
  R starts run the first ``select_at`` T steps (default a quarter), and only
  the F with the lowest D there run on to T (R s + F (T - s) steps in all,
  s = round(select_at T); 6 starts and 2 finalists cost 3 full runs). A
  paused and resumed start is the same run as one straight through;
* ``refine`` (not in GI-SMN; None: off): a block of gradient-matching
  settings (``gradient_matching.refine``: Inverting Gradients' with lr
  0.01) run in pixel space from the generator's images, so the leak can
  put back the detail a prior of limited coverage smooths away; ``info``
  keeps GI-SMN's own final distance and the refinement's.

The trial message, with the attacker's model of a known defense (pruning
and Soteria masks, clipping, DP-SGD's per-example clipping), comes from the
gradient-matching objective (``matching.make_problem`` with a ``render``);
the loop is ``engine.optimize``: chunks end at the group snapshots, where its
``on_chunk`` hook refreshes the snapshot and switches the stage, and the
last iterate is kept (the objective changes at the switch). The noise inputs
are frozen by an optax mask when ``optimize_noise`` is off. Generator outputs
in [-1, 1] go to [0, 1], then to the victim's normalized space; they need no
box projection.
"""

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gitjax import attacks
from gitjax import generators as gen_lib
from gitjax import loading
from gitjax import static
from gitjax.attacks import Reconstruction
from gitjax.attacks import engine
from gitjax.attacks import gradient_matching
from gitjax.attacks import labels as labels_lib
from gitjax.attacks import matching
from gitjax.attacks import objectives

DEFAULTS = dict(
    name="gismn",
    generator_dir=None,
    steps=3600,
    lr=0.1,
    distance="l1",
    switch=4.0 / 9.0,  # Fraction of the steps spent on pure matching.
    tv=1e-4,
    l2=1e-4,
    group=1e-4,
    group_every=None,  # None: steps / 36 (GI-SMN: 100 of 3600).
    truncation=0.5,
    optimize_noise=True,
    label_method="auto",
    restarts=1,
    finalists=None,  # None: every start runs to the end.
    select_at=0.25,  # Fraction of the steps after which finalists go on.
    refine=None,  # Gradient matching from GI-SMN's images (docstring).
)


def _plain(config) -> dict:
  return attacks.settings(config, DEFAULTS, "gismn")


class Render(static.Keyed):
  """(vars, aux) -> victim-space images; a static jit argument.

  Equal and hashed by the generator, the identity of its variables' arrays
  (``static.held``; ``loading.generator`` caches them) and the
  normalization, so every attack with the same prior reuses one compiled
  step.
  """

  def __init__(self, generator, gen_vars, mean, std):
    self.generator, self.gen_vars = generator, gen_vars
    self.mean, self.std = tuple(mean), tuple(std)
    self._key = (generator, static.held(gen_vars), self.mean, self.std)

  def __call__(self, v, aux=None):
    del aux
    x = self.generator.synthesis(self.gen_vars, v["ws"], v["noise"])
    return gen_lib.to_victim_space(x, self.mean, self.std)


def initial_latents(generator, gen_vars, key, batch: int,
                    truncation: float = 0.5) -> dict:
  """{"ws": [B, num_ws, w_dim], "noise": [B, h, w, 1] maps} to start from."""
  if generator.mapping is None:
    raise ValueError(f"GI-SMN needs a style-based generator; "
                     f"{generator.name!r} has no mapping network")
  k_z, k_avg, k_n = jax.random.split(key, 3)
  z = jax.random.normal(k_z, (batch, generator.latent_dim))
  w = generator.mapping(gen_vars, z)
  w_avg = gen_lib.w_average(generator, gen_vars, k_avg)
  w = w_avg + truncation * (w - w_avg)
  ws = jnp.broadcast_to(w[:, None], (batch, generator.num_ws,
                                     generator.w_dim))
  return {"ws": ws, "noise": gen_lib.sample_noise(generator, k_n, batch)}


class StagedLoss(NamedTuple):
  """D before the switch, D / 2 + regularizers after (hashable).

  ``data["stage"]`` holds ``late`` (0 or 1) and the ``group`` snapshot.
  """
  problem: matching.GradientMatching
  render: Render
  tv: float
  l2: float
  group: float

  def __call__(self, v, data):
    d = self.problem({"x": v}, data)
    x = self.render(v)
    reg = (self.tv * objectives.total_variation(x)
           + self.l2 * objectives.l2_norm(x)
           + self.group * objectives.group_distance(x, data["stage"]["group"]))
    late = data["stage"]["late"]
    return (1.0 - 0.5 * late) * d + late * reg


@functools.lru_cache(maxsize=8)
def transformation(lr: float, optimize_noise: bool):
  """Adam on W+ (and the noise maps unless frozen); cached, so the engine's
  compiled step (keyed by ``tx``) is reused across attacks."""
  adam = optax.adam(lr)
  if optimize_noise:
    return adam
  frozen = lambda v: {"ws": False, "noise": jax.tree.map(lambda _: True,
                                                         v["noise"])}
  return optax.chain(optax.masked(optax.set_to_zero(), frozen), adam)


@functools.partial(jax.jit, static_argnums=0)
def _draw(render, v):
  return render(v)


@functools.partial(jax.jit, static_argnums=0)
def _distance(problem, v, data):
  return problem({"x": v}, data)


def _start_keys(key, restarts: int) -> list:
  """``key`` itself first (a single run's start), then fresh keys."""
  return [key] + list(jax.random.split(jax.random.fold_in(key, 1),
                                       restarts - 1))


def _is_count(x, most: int | None = None) -> bool:
  """An int (not a bool) in [1, most]."""
  return (isinstance(x, int) and not isinstance(x, bool) and x >= 1
          and (most is None or x <= most))


def _counts(cfg) -> tuple[int, int]:
  """(restarts, finalists), checked with ``select_at``."""
  restarts, finalists = cfg["restarts"], cfg["finalists"]
  if not 0.0 < float(cfg["select_at"]) < 1.0:
    raise ValueError(f"gismn select_at must be in (0, 1); got "
                     f"{cfg['select_at']!r}")
  if not _is_count(restarts):
    raise ValueError(f"gismn restarts must be an integer >= 1; got "
                     f"{restarts!r}")
  if finalists is None:
    return restarts, restarts
  if not _is_count(finalists, restarts):
    raise ValueError(f"gismn finalists must be an integer in [1, restarts = "
                     f"{restarts}] or None; got {finalists!r}")
  return restarts, finalists


def reconstruct(leak, victim, generator, gen_vars, config,
                key) -> Reconstruction:
  """GI-SMN with an in-memory generator (``attack`` loads it from disk)."""
  cfg = _plain(config)
  t0 = time.time()
  if leak.batch_size is None:
    raise ValueError("GI-SMN needs the batch size (leak.batch_size is None)")
  n = leak.batch_size * leak.num_clients
  if tuple(generator.image_shape) != tuple(leak.input_shape):
    raise ValueError(
        f"generator makes images of shape {generator.image_shape} but the "
        f"victim takes {tuple(leak.input_shape)}")
  steps = int(cfg["steps"])
  if steps < 1:
    raise ValueError(f"gismn steps must be >= 1; got {steps}")
  restarts, finalists = _counts(cfg)
  if cfg["refine"] is not None:  # Its keys checked before any work.
    gradient_matching.refine_settings(cfg["refine"])
  ys, label_source = labels_lib.from_leak_with_fallback(
      leak, victim, cfg["label_method"])
  render = Render(generator, gen_vars, leak.mean, leak.std)
  settings = matching.make_settings(objective=cfg["distance"], box=False)
  problem = matching.make_problem(leak, victim, settings, render=render)
  switch = int(round(cfg["switch"] * steps))
  every = int(cfg["group_every"] or max(1, round(steps / 36)))
  snap_start = max(0, switch - every)
  draw = functools.partial(_draw, render)
  leak_data = matching.make_data(leak, ys)
  loss = StagedLoss(problem, render, float(cfg["tv"]), float(cfg["l2"]),
                    float(cfg["group"]))
  tx = transformation(float(cfg["lr"]), bool(cfg["optimize_noise"]))
  options = engine.Options(iterations=steps, chunk=every,
                           stops=(snap_start,), keep="last", progress=False)
  distance = functools.partial(_distance, problem)

  latest = []  # The data the last hook call made (for a resume).

  def stage(step, v, d):
    if step < snap_start or (step - snap_start) % every:
      return None
    snap = draw(jax.tree.map(lambda a: a[0], v))  # Before step ``step``.
    late = jnp.asarray(float(step >= switch), jnp.float32)  # Strong type.
    latest[:] = [dict(d, stage=dict(late=late, group=snap))]
    return latest[0]

  run = functools.partial(engine.optimize, loss, tx=tx, on_chunk=stage,
                          desc="gismn", options=options)
  # Every start to the selection (or the end), then the finalists resume.
  pause = int(round(float(cfg["select_at"]) * steps))
  pause = pause if 0 < pause < steps and finalists < restarts else None
  starts = []
  for k in _start_keys(key, restarts):
    v0 = initial_latents(generator, gen_vars, k, n, cfg["truncation"])
    data = dict(leak_data, stage=dict(late=jnp.zeros(()), group=draw(v0)))
    latest[:] = [data]
    v, info = run(jax.tree.map(lambda a: a[None], v0), data=data,
                  until=pause)
    starts.append(dict(d0=float(distance(v0, data)), data=latest[0], v=v,
                       info=info, d=float(distance(v, data))))
  at_pause = [s["d"] for s in starts] if pause else None
  if pause:
    for i in np.argsort(_finite(at_pause))[:finalists]:
      s = starts[i]
      first = s["info"]["history"]
      s["v"], s["info"] = run(None, data=s["data"],
                              resume=s["info"].pop("carry"))
      s["info"]["history"] = {k: first[k] + s["info"]["history"][k]
                              for k in first}
      s["d"] = float(distance(s["v"], s["data"]))
  final = [s["d"] if "carry" not in s["info"] else None for s in starts]
  best = int(np.argmin(_finite(final)))
  s = starts[best]
  info = {"initial_distance": s["d0"], "distance": s["d"],
          "loss": s["info"]["loss"], "history": s["info"]["history"],
          "restart": best, "restart_distances": final,
          "selection_distances": at_pause, "selected_at": pause,
          "finalists": finalists,
          "switch": switch, "group_every": every,
          "labels": [int(y) for y in np.asarray(ys)],
          "label_source": label_source}
  rec = Reconstruction(draw(s["v"]), ys, info)
  if cfg["refine"] is not None:
    res = gradient_matching.refine(leak, victim, rec, cfg["refine"],
                                   jax.random.fold_in(key, 2))
    info = dict(info, refine=res.info)
    rec = Reconstruction(res.images, ys, info)
  info["seconds"] = time.time() - t0
  return rec


def _finite(distances) -> list:
  """Distances with None, NaN and Inf as +Inf (for ranking)."""
  return [d if d is not None and np.isfinite(d) else np.inf
          for d in distances]


def attack(leak, victim, config, key) -> Reconstruction:
  """GI-SMN through the common interface; needs ``config.generator_dir``."""
  cfg = _plain(config)
  generator, gen_vars = loading.generator(cfg["generator_dir"])
  return reconstruct(leak, victim, generator, gen_vars, cfg, key)
