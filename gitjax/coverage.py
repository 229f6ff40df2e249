"""How well a generator covers images it never saw: its best latent fit.

A generative attack (GGL, GI-SMN) can reconstruct no better than its prior's
best fit to the private image, so a prior's quality is measured as that fit
on held-out images. ``fit`` searches, for every target image, the input that
makes the generator reproduce it best:

* ``dcgan``: the latent z;
* ``style``: the per-layer styles W+ (started from the mapping of a random z
  copied to every layer) and, with ``noise=True``, the noise maps (started
  from N(0, 1) draws, as in sampling): GI-SMN's search space.

Adam (cosine-decayed learning rate) on the mean squared error in [-1, 1]
runs from ``restarts`` random starts per image, through the trial loop every
optimization attack uses (``attacks.engine``: one trial per restart, all
images of a trial in one batch); each image keeps its best restart.
``evaluate`` scores the fits: PSNR on both pixel scales (on [-1, 1] with peak
1, as GGL reports it, ``10 log10(1 / MSE)``; on [0, 1], 6.02 dB more), and
LPIPS when a network is named.
"""

import functools
import time
from typing import NamedTuple

import os

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import generators as gen_lib
from gitjax import metrics
from gitjax import report
from gitjax.attacks import engine
from gitjax.attacks import optimizers

SCALE_GAP_DB = 10.0 * np.log10(4.0)  # PSNR on [0, 1] minus PSNR on [-1, 1].


class Settings(NamedTuple):
  """The latent search (hashable).

  Attributes:
    steps: Adam steps per restart.
    restarts: random starts per image; the best fit of each image is kept.
    lr: Adam's initial learning rate (cosine decay to 0).
    noise: also fit the style generator's noise maps (ignored for dcgan).
    chunk: steps per compiled chunk (progress logs in between).
  """
  steps: int = 300
  restarts: int = 4
  lr: float = 0.05
  noise: bool = True
  chunk: int = 50


def check_settings(s: Settings) -> Settings:
  for name in ("steps", "restarts", "chunk"):
    if int(getattr(s, name)) < 1:
      raise ValueError(f"coverage {name} must be >= 1; got "
                       f"{getattr(s, name)}")
  if not float(s.lr) > 0:
    raise ValueError(f"coverage lr must be > 0; got {s.lr}")
  return s._replace(steps=int(s.steps), restarts=int(s.restarts),
                    chunk=int(s.chunk), lr=float(s.lr), noise=bool(s.noise))


class _Render(NamedTuple):
  """Images in [-1, 1] from one trial's variables (static, hashable)."""
  gen: gen_lib.Generator
  noise: bool

  def __call__(self, v, gen_vars):
    if self.gen.name == "style":
      return self.gen.synthesis(gen_vars, v["ws"],
                                v["noise"] if self.noise else None)
    return self.gen.apply(gen_vars, v["z"], train=False)[0]


class _Loss(NamedTuple):
  """Sum over a trial's images of each image's MSE: every image's gradient
  is its own, and Adam's update is elementwise, so the images of a trial
  are fitted independently."""
  render: _Render

  def __call__(self, v, data):
    x = self.render(v, data["gen"])
    return jnp.sum(jnp.mean(jnp.square(x - data["target"]), axis=(1, 2, 3)))


def init_vars(gen: gen_lib.Generator, gen_vars, n: int, restarts: int, key,
              noise: bool = True):
  """Random starts: leaves [restarts, n, ...]."""
  k_z, k_n = jax.random.split(key)
  z = jax.random.normal(k_z, (restarts, n, gen.latent_dim))
  if gen.name != "style":
    return {"z": z}
  w = gen.mapping(gen_vars, z.reshape(-1, gen.latent_dim))
  ws = jnp.broadcast_to(w[:, None], (w.shape[0], gen.num_ws, gen.w_dim))
  v = {"ws": ws.reshape((restarts, n) + ws.shape[1:])}
  if noise:
    maps = gen_lib.sample_noise(gen, k_n, restarts * n)
    v["noise"] = [m.reshape((restarts, n) + m.shape[1:]) for m in maps]
  return v


@functools.partial(jax.jit, static_argnums=(0,))
def _per_image_mse(render: _Render, v, gen_vars, target):
  """[R, N] MSE in [-1, 1] of every restart's fit to every image."""
  x = jax.vmap(lambda u: render(u, gen_vars))(v)
  return jnp.mean(jnp.square(x - target[None]), axis=(2, 3, 4)), x


def fit(gen: gen_lib.Generator, gen_vars, targets, key,
        settings: Settings = Settings(), progress: bool = False):
  """Best fits of ``targets`` [N, H, W, C] in [-1, 1].

  Returns:
    (fits [N, H, W, C] in [-1, 1], info): ``info`` has ``mse`` [N] (on
    [-1, 1]), ``restart`` [N] (the restart each image kept),
    ``restart_mse`` [R, N] (every restart's final fit), ``seconds``.
  """
  s = check_settings(settings)
  targets = jnp.asarray(targets, jnp.float32)
  if tuple(targets.shape[1:]) != tuple(gen.image_shape):
    raise ValueError(f"coverage targets have shape {tuple(targets.shape[1:])}"
                     f" but the generator makes {tuple(gen.image_shape)}")
  t0 = time.time()
  render = _Render(gen, s.noise and gen.name == "style")
  init = init_vars(gen, gen_vars, targets.shape[0], s.restarts, key,
                   render.noise)
  tx = optimizers.transformation("adam", s.lr, s.steps,
                                 schedule_name="cosine")
  options = engine.Options(iterations=s.steps, chunk=min(s.chunk, s.steps),
                           keep="last", progress=progress,
                           trial_axis="vmap")
  v, _ = engine.optimize(_Loss(render), init, tx,
                         dict(gen=gen_vars, target=targets),
                         options=options, desc="coverage", select=False)
  mse, x = _per_image_mse(render, v, gen_vars, targets)
  best = jnp.argmin(mse, axis=0)  # [N]
  n = jnp.arange(targets.shape[0])
  fits = x[best, n]
  info = dict(mse=np.asarray(mse[best, n]), restart=np.asarray(best),
              restart_mse=np.asarray(mse), seconds=time.time() - t0)
  return fits, info


def psnr_pm1(mse) -> np.ndarray:
  """PSNR on the [-1, 1] scale (peak 1: GGL's figure) from MSE there."""
  return -10.0 * np.log10(np.maximum(np.asarray(mse, np.float64), 1e-12))


def evaluate(gen: gen_lib.Generator, gen_vars, targets, key,
             settings: Settings = Settings(), lpips_net: str | None = None,
             progress: bool = False) -> tuple[dict, jax.Array]:
  """Scores the best fits to ``targets`` (in [-1, 1]).

  Returns:
    (scores, fits). ``scores``: ``psnr_pm1`` and ``psnr_01`` (means over
    images of each image's PSNR on [-1, 1] and on [0, 1]), their medians,
    ``mse_pm1`` (mean MSE on [-1, 1]), ``lpips`` (mean, with ``lpips_net``),
    ``count``, ``seconds`` and the settings.
  """
  fits, info = fit(gen, gen_vars, targets, key, settings, progress)
  p = psnr_pm1(info["mse"])
  scores = dict(psnr_pm1=float(p.mean()), psnr_01=float(p.mean()
                                                        + SCALE_GAP_DB),
                psnr_pm1_median=float(np.median(p)),
                psnr_01_median=float(np.median(p) + SCALE_GAP_DB),
                mse_pm1=float(np.mean(info["mse"])), count=int(p.size),
                seconds=info["seconds"],
                settings=check_settings(settings)._asdict())
  if lpips_net:
    scores["lpips"] = float(np.mean(metrics.lpips(
        gen_lib.to_unit(fits), gen_lib.to_unit(jnp.asarray(targets)),
        net=lpips_net)))
  return scores, fits


def save_fits(workdir: str, targets, fits, per_row: int = 16) -> str:
  """``coverage_fits.png``: rows of targets over their fits ([-1, 1])."""
  rows = [np.asarray(targets), np.asarray(fits)]
  grid = [r[i:i + per_row] for i in range(0, len(rows[0]), per_row)
          for r in rows]
  return report.save_grid(os.path.join(workdir, "coverage_fits.png"), grid,
                          value_range=(-1.0, 1.0), cell_px=48)
