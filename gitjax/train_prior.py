"""Trains a generative prior (WGAN-GP) for the generative attacks.

``train_and_evaluate(config, workdir)`` trains ``config.generator`` against a
``generators.Critic`` with the WGAN-GP loss (Gulrajani et al. 2017) on a
gitjax dataset, and writes into ``workdir``:

* ``config.json``: the training config (``gitjax.loading.generator``
  rebuilds the generator from it, with ``gitjax.prior_setup``);
* ``checkpoints/``: Orbax checkpoints of the whole training state; a run
  started again on the same workdir resumes where it stopped, identically
  (batches and noise are functions of the seed and the step);
* ``samples_<step>.png``: grids of 64 samples from fixed latents;
* ``metrics.jsonl``: one line of losses per log step, and ``losses.png``.

One training step is one jitted function: ``n_critic`` critic updates (each
with its own real batch and a gradient penalty computed with ``jax.grad``)
followed by one generator update.

Besides the losses, ``coverage_mse`` tracks the generator as a prior: the
mean over held-out real images of the smallest MSE (on [-1, 1]) to any of a
fixed set of samples. Lower is better; it is what a latent search can reach
without optimizing. With ``config.coverage`` (see ``coverage_settings``),
the prior's real measure, the PSNR of its best latent fit to held-out images
(``gitjax.coverage``), is logged every ``coverage.every`` steps with the
training's wall time (``coverage.png``: PSNR against minutes), and scored on
``coverage.final_images`` held-out images at the end (``coverage.json``,
``coverage_fits.png``: targets over fits).
"""

import functools
import logging
import os
import time

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax

from gitjax import checkpoint as ckpt_lib
from gitjax import coverage as coverage_lib
from gitjax import data as data_lib
from gitjax import generators as gen_lib
from gitjax import prior_setup
from gitjax import report
from gitjax import rundir


METRICS_LOG = "metrics.jsonl"
# Config fields that may change when an unfinished run is resumed.
MUTABLE = ("log_every", "sample_every", "checkpoint_every",
           "keep_checkpoints", "max_minutes", "progress", "coverage")


def _critic_loss(models, critic_params, real, fake, key, gp_weight, drift):
  apply = lambda x: models.critic.apply({"params": critic_params}, x)
  d_real, d_fake = apply(real), apply(fake)
  eps = jax.random.uniform(key, (real.shape[0], 1, 1, 1))
  mix = eps * real + (1.0 - eps) * fake
  g = jax.grad(lambda x: jnp.sum(apply(x)))(mix)  # Per example: [B, ...].
  norms = jnp.sqrt(jnp.sum(jnp.square(g), axis=(1, 2, 3)) + 1e-12)
  gp = jnp.mean(jnp.square(norms - 1.0))
  wasserstein = jnp.mean(d_real) - jnp.mean(d_fake)
  loss = -wasserstein + gp_weight * gp + drift * jnp.mean(jnp.square(d_real))
  return loss, (wasserstein, gp)


@functools.partial(jax.jit, static_argnums=(0,), donate_argnums=(1,))
def train_step(models: prior_setup.Models, state: dict, reals: jax.Array, key,
               gp_weight: float = 10.0, drift: float = 1e-3):
  """One WGAN-GP step: len(reals) critic updates, then one generator update.

  Args:
    models: the generator, critic and optimizers (static).
    state: the training state (``prior_setup.create_train_state``);
      donated.
    reals: [n_critic, B, H, W, C] real batches in [-1, 1].
    key: this step's randomness.
    gp_weight: gradient penalty weight (10 in WGAN-GP).
    drift: weight of E[D(real)^2], which keeps the critic's outputs bounded.

  Returns:
    (new state, metrics dict of scalars).
  """
  gen = models.gen
  b = reals.shape[1]
  k_critic, k_gen = jax.random.split(key)

  def critic_update(carry, inp):
    cparams, copt = carry
    real, k = inp
    kz, ke = jax.random.split(k)
    z = jax.random.normal(kz, (b, gen.latent_dim))
    fake, _ = gen.apply(state["gen"], z, train=True)
    fake = jax.lax.stop_gradient(fake)
    (loss, (w, gp)), grads = jax.value_and_grad(_critic_loss, argnums=1,
                                                has_aux=True)(
        models, cparams, real, fake, ke, gp_weight, drift)
    updates, copt = models.critic_tx.update(grads, copt, cparams)
    return (optax.apply_updates(cparams, updates), copt), (loss, w, gp)

  keys = jax.random.split(k_critic, reals.shape[0])
  carry = (state["critic"]["params"], state["critic_opt"])
  for i in range(reals.shape[0]):  # Unrolled: XLA:CPU runs a scan slowly.
    carry, (c_loss, w, gp) = critic_update(carry, (reals[i], keys[i]))
  cparams, copt = carry

  def gen_loss(gparams):
    z = jax.random.normal(k_gen, (b, gen.latent_dim))
    variables = {**state["gen"], "params": gparams}
    fake, upd = gen.apply(variables, z, train=True)
    d_fake = models.critic.apply({"params": cparams}, fake)
    return -jnp.mean(d_fake), upd

  (g_loss, upd), grads = jax.value_and_grad(gen_loss, has_aux=True)(
      state["gen"]["params"])
  updates, gopt = models.gen_tx.update(grads, state["gen_opt"],
                                       state["gen"]["params"])
  gparams = optax.apply_updates(state["gen"]["params"], updates)
  gen_vars = {**state["gen"], **upd, "params": gparams}
  new_state = {
      "gen": gen_vars,
      "critic": {**state["critic"], "params": cparams},
      "gen_opt": gopt,
      "critic_opt": copt,
      "step": state["step"] + 1,
  }
  if models.ema:
    new_state["gen_ema"] = prior_setup.ema_update(
        models, state["gen_ema"], gen_vars, state["step"])
  metrics = {"critic_loss": c_loss, "wasserstein": w, "gp": gp,
             "gen_loss": g_loss}
  return new_state, metrics


def batch_indices(n: int, batch_size: int, seed: int, step: int,
                  n_critic: int) -> np.ndarray:
  """[n_critic, B] example indices of a step: a pure function of the step.

  Epochs are fresh permutations seeded by (seed, epoch), so a resumed run
  sees the same batches as an uninterrupted one.
  """
  per_epoch = n // batch_size
  out = []
  for i in range(step * n_critic, (step + 1) * n_critic):
    epoch, j = divmod(i, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    out.append(perm[j * batch_size:(j + 1) * batch_size])
  return np.stack(out)


def generate(gen: gen_lib.Generator, variables, z) -> jax.Array:
  """Eval-mode samples in [-1, 1]."""
  return gen.apply(variables, z, train=False)[0]


@functools.partial(jax.jit, static_argnums=(0,))
def coverage_mse(gen: gen_lib.Generator, variables, z, reals) -> jax.Array:
  """Mean over reals of the smallest MSE to a sample G(z) (all in [-1, 1])."""
  fakes = generate(gen, variables, z).reshape(z.shape[0], -1)  # [S, D]
  r = reals.reshape(reals.shape[0], -1)  # [R, D]
  d = (jnp.sum(r * r, 1)[:, None] - 2 * r @ fakes.T
       + jnp.sum(fakes * fakes, 1)[None]) / r.shape[1]
  return jnp.mean(jnp.min(d, axis=1))


def load_data(config) -> data_lib.Dataset:
  d = prior_setup.plain(config.data)
  ds = data_lib.load(
      d["name"], data_dir=d.get("data_dir"), split=d.get("split", "train"),
      image_size=d.get("image_size"), channels=d.get("channels"),
      limit=d.get("limit"), **dict(d.get("options") or {}))
  return ds


def _check(config, ds, gen):
  if tuple(ds.images.shape[1:]) != tuple(gen.image_shape):
    raise ValueError(
        f"dataset images have shape {tuple(ds.images.shape[1:])} but the "
        f"generator makes {gen.image_shape}; set config.data.image_size/"
        "channels or the generator's image_size/channels to match")
  need = config.batch_size + config.holdout
  if len(ds.images) < need:
    raise ValueError(f"dataset has {len(ds.images)} images; training needs "
                     f"at least batch_size + holdout = {need}")


def _save_samples(workdir, name, images):
  rows = np.asarray(images).reshape((8, -1) + images.shape[1:])
  report.save_grid(os.path.join(workdir, name), list(rows),
                   value_range=(-1.0, 1.0), cell_px=48)


def coverage_settings(config, final: bool = False):
  """(Settings, image count) of the in-training (or final) latent fit from
  ``config.coverage``: ``every`` (steps; 0: none during training),
  ``images``, ``steps``, ``restarts``, ``lr``, ``noise``, and for the end
  ``final_images``, ``final_steps``, ``final_restarts`` (0: no final
  score) and ``lpips_net``; None without ``config.coverage``."""
  c = config.get("coverage")
  if not c:
    return None
  n = c.get("final_images", 0) if final else c.get("images", 16)
  if not n:
    return None
  s = coverage_lib.Settings(
      steps=c.get("final_steps", 300) if final else c.get("steps", 100),
      restarts=c.get("final_restarts", 4) if final else c.get("restarts", 2),
      lr=c.get("lr", 0.05), noise=c.get("noise", True))
  return coverage_lib.check_settings(s), int(n)


def _coverage_log(models, state, holdout, config, key) -> dict:
  s, n = coverage_settings(config)
  scores, _ = coverage_lib.evaluate(models.gen,
                                    prior_setup.prior_variables(state),
                                    holdout[:n],
                                    key, s)
  return {"coverage_psnr_pm1": scores["psnr_pm1"],
          "coverage_psnr_01": scores["psnr_01"],
          "coverage_fit_s": scores["seconds"]}


def final_coverage(models, state, holdout, config, key, workdir) -> dict:
  """The end-of-training coverage score: ``coverage.json`` and a picture."""
  s, n = coverage_settings(config, final=True)
  lp = config.coverage.get("lpips_net") or None
  scores, fits = coverage_lib.evaluate(models.gen,
                                       prior_setup.prior_variables(state),
                                       holdout[:n], key, s, lpips_net=lp,
                                       progress=config.get("progress", True))
  scores["step"] = int(state["step"])
  coverage_lib.save_fits(workdir, holdout[:n], fits)
  return scores


def train_and_evaluate(config: mlc.ConfigDict, workdir: str,
                       dataset: data_lib.Dataset | None = None, *,
                       resume: str = "latest",
                       stop_at: int | None = None) -> dict:
  """Trains (or resumes) a generator; returns the final metrics.

  ``dataset`` (images in [0, 1]) replaces ``config.data`` when given. The
  workdir is opened with ``rundir.open_run``: a different config is refused
  before anything is written, and a finished run (``final.json``, written
  once ``config.steps`` are done) is returned as stored. A run stopped by
  ``max_minutes`` writes ``latest.json`` instead and resumes when started
  again. ``resume="intact"`` resumes from the newest intact checkpoint when
  the latest is corrupt. ``stop_at`` stops after that step as if killed
  (for tests).
  """
  run = rundir.open_run(workdir, config, "train_prior", mutable=MUTABLE)
  if run.finished is not None:
    return run.finished
  workdir = run.path
  models = prior_setup.make_models(config)
  ds = dataset if dataset is not None else load_data(config)
  _check(config, ds, models.gen)
  images = ds.images * 2.0 - 1.0  # [N, H, W, C] in [-1, 1].
  holdout = jnp.asarray(images[-config.holdout:])
  train = images[:-config.holdout]
  root = jax.random.key(config.seed)
  k_init, k_fixed, k_steps = jax.random.split(root, 3)
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                               every=config.checkpoint_every,
                               keep=config.keep_checkpoints)
  state, start = ckpt.restore_or(prior_setup.create_train_state(models, k_init),
                                 resume=resume)
  run.trim_jsonl(METRICS_LOG, start)
  if start:
    logging.info("Resumed from step %d in %s", start, workdir)
  z_fixed = jax.random.normal(k_fixed, (64, models.gen.latent_dim))
  z_cover = jax.random.normal(jax.random.fold_in(k_fixed, 1),
                              (config.coverage_samples,
                               models.gen.latent_dim))
  cover_every = config.coverage.every if coverage_settings(config) else 0
  t0 = time.time()
  metrics, history = {}, run.read_jsonl(METRICS_LOG) if start else []
  end = config.steps if stop_at is None else min(stop_at, config.steps)
  bar = report.progress(range(start, end), "train_prior",
                        log_every=config.log_every,
                        disable=not config.get("progress", True))
  with bar:
    for step in bar:
      idx = batch_indices(len(train), config.batch_size, config.seed, step,
                          config.n_critic)
      state, metrics = train_step(
          models, state, jnp.asarray(train[idx]),
          jax.random.fold_in(k_steps, step), config.gp_weight, config.drift)
      bar.record(**metrics)
      done = step + 1
      cover = bool(cover_every) and (done % cover_every == 0
                                     or done == config.steps)
      if done % config.log_every == 0 or done == config.steps or cover:
        m = {k: float(v) for k, v in metrics.items()}
        m["coverage_mse"] = float(coverage_mse(
            models.gen, prior_setup.prior_variables(state), z_cover, holdout))
        if cover:
          m.update(_coverage_log(models, state, holdout, config,
                                 jax.random.fold_in(k_fixed, 2)))
        m["step"], m["seconds"] = done, time.time() - t0
        history.append(m)
        run.append_jsonl(METRICS_LOG, m)
        if not all(np.isfinite(v) for v in m.values()):
          raise FloatingPointError(f"training diverged at step {done}: {m}")
      if config.sample_every and done % config.sample_every == 0:
        _save_samples(workdir, f"samples_{done:06d}.png",
                      generate(models.gen, prior_setup.prior_variables(state),
                               z_fixed))
      ckpt.save(done, state)
      if config.max_minutes and time.time() - t0 > 60 * config.max_minutes:
        logging.info("Stopping at step %d: max_minutes=%s reached", done,
                     config.max_minutes)
        break
  if ckpt.latest_step() != int(state["step"]):
    ckpt.save(int(state["step"]), state, force=True)
  ckpt.close()
  _save_samples(workdir, "samples_final.png",
                generate(models.gen, prior_setup.prior_variables(state),
                         z_fixed))
  if history:
    report.plot_curves(
        os.path.join(workdir, "losses.png"), [h["step"] for h in history],
        {k: [h[k] for h in history]
         for k in ("wasserstein", "gen_loss", "coverage_mse")},
        "generator step", "value")
    cov = [h for h in history if "coverage_psnr_pm1" in h]
    if cov:
      report.plot_curves(
          os.path.join(workdir, "coverage.png"),
          [h["seconds"] / 60 for h in cov],
          {"PSNR [-1, 1] (GGL's scale)": [h["coverage_psnr_pm1"] for h in cov],
           "PSNR [0, 1]": [h["coverage_psnr_01"] for h in cov]},
          "training minutes (this run's)", "best latent fit, dB")
  final = {
      "step": int(state["step"]),
      "coverage_mse": float(coverage_mse(
          models.gen, prior_setup.prior_variables(state), z_cover, holdout)),
      "seconds": time.time() - t0,
      **({k: float(v) for k, v in metrics.items()}),
  }
  if coverage_settings(config, final=True):
    final["coverage"] = final_coverage(models, state, holdout, config,
                                       jax.random.fold_in(k_fixed, 3),
                                       workdir)
    run.write_json("coverage.json", final["coverage"])
  if final["step"] == config.steps:
    run.finish(final)
  else:
    run.write_json("latest.json", final)
  logging.info("%s: %s", "Final" if final["step"] == config.steps
               else "Stopped early", final)
  return final
