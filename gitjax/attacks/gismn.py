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
* labels inferred from the gradient (``labels.infer``) for batches up to 16.

The trial message, with the attacker's model of a known defense (pruning
and Soteria masks, clipping, DP-SGD's per-example clipping), comes from the
shared gradient-matching engine (``matching.make_problem`` with a
``render``); the two-stage schedule and the group snapshot need the
iteration number, so the loop itself is a small optax loop here (one jitted
step). Generator outputs in [-1, 1] go to [0, 1], then to the victim's
normalized space; they need no box projection.
"""

import functools
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gitjax import generators as gen_lib
from gitjax import attacks
from gitjax.attacks import Reconstruction
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
    log_every=100,
)


def _plain(config) -> dict:
  return attacks.settings(config, DEFAULTS, "gismn")


class Render:
  """(vars, aux) -> victim-space images; hashable for the matching engine."""

  def __init__(self, generator, gen_vars, mean, std):
    self.generator, self.gen_vars = generator, gen_vars
    self.mean, self.std = tuple(mean), tuple(std)

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


def _group_term(x, ref):
  hw = x.shape[1] * x.shape[2]
  diff = (x - ref).reshape(x.shape[0], -1)
  return jnp.sum(jnp.linalg.norm(diff, axis=1)) / hw


def make_step(problem, render, tx, cfg, switch: int):
  """The jitted GI-SMN step: (v, opt, group, step, data) -> (..., D, L)."""
  optimize_noise = cfg["optimize_noise"]

  def loss_fn(v, group, step, data):
    x = render(v)
    d = problem({"x": v}, data)
    reg = (cfg["tv"] * objectives.total_variation(x)
           + cfg["l2"] * objectives.l2_norm(x)
           + cfg["group"] * _group_term(x, group))
    late = (step >= switch).astype(d.dtype)
    return (1.0 - 0.5 * late) * d + late * reg, (d, x)

  @jax.jit
  def step_fn(v, opt, group, step, data):
    (loss, (d, x)), g = jax.value_and_grad(loss_fn, has_aux=True)(
        v, group, step, data)
    if not optimize_noise:
      g = {**g, "noise": jax.tree.map(jnp.zeros_like, g["noise"])}
    updates, opt = tx.update(g, opt, v)
    return optax.apply_updates(v, updates), opt, d, loss, x

  return step_fn


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
  ys, label_source = labels_lib.from_leak_with_fallback(
      leak, victim, cfg["label_method"])
  render = Render(generator, gen_vars, leak.mean, leak.std)
  settings = matching.make_settings(objective=cfg["distance"], tv=0.0,
                                    l2=0.0, box=False)
  problem = matching.make_problem(leak, victim, settings, render=render)
  data = matching.make_data(leak, ys)
  switch = int(round(cfg["switch"] * steps))
  every = int(cfg["group_every"] or max(1, round(steps / 36)))
  snap_start = max(0, switch - every)
  tx = optax.adam(cfg["lr"])
  step_fn = make_step(problem, render, tx, cfg, switch)
  v = initial_latents(generator, gen_vars, key, n, cfg["truncation"])
  opt = tx.init(v)
  x = render(v)
  group = x
  history, d0 = [], None
  for t in range(steps):
    if t >= snap_start and (t - snap_start) % every == 0:
      group = jax.lax.stop_gradient(x)  # The reconstruction before step t.
    v, opt, d, loss, x = step_fn(v, opt, group, jnp.asarray(t), data)
    if d0 is None:
      d0 = float(d)
    if cfg["log_every"] and ((t + 1) % cfg["log_every"] == 0
                             or t + 1 == steps):
      history.append({"step": t + 1, "distance": float(d),
                      "loss": float(loss)})
      logging.info("gismn step %d/%d: distance %.5g loss %.5g", t + 1,
                   steps, float(d), float(loss))
  final_d = float(problem({"x": v}, data))
  images = render(v)
  info = {"initial_distance": d0, "distance": final_d, "history": history,
          "switch": switch, "group_every": every,
          "labels": [int(y) for y in np.asarray(ys)],
          "label_source": label_source,
          "seconds": time.time() - t0}
  return Reconstruction(images, ys, info)


@functools.lru_cache(maxsize=4)
def cached_generator(directory: str):
  from gitjax import train_prior  # Lazy: pulls in the data stack.
  return train_prior.load_generator(directory)


def attack(leak, victim, config, key) -> Reconstruction:
  """GI-SMN through the common interface; needs ``config.generator_dir``."""
  cfg = _plain(config)
  generator, gen_vars = cached_generator(cfg["generator_dir"])
  return reconstruct(leak, victim, generator, gen_vars, cfg, key)
