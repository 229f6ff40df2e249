"""The gradient-matching engine shared by DLG, Inverting Gradients, GIT+IG, GI-SMN.

Two levels, both pure in their inputs:

``optimize(loss_fn, init_vars, settings, data=None, project=None)``
  Minimizes ``loss_fn(vars, data) -> scalar`` over an arbitrary pytree
  ``vars`` for R independent trials at once (restarts are the leading vmap
  axis of every leaf of ``init_vars``). Optax does the steps (Adam on signed
  gradients, SGD, or L-BFGS with a zoom line search), with step-decay (x0.1 at
  3/8, 5/8, 7/8 of the iterations), cosine or constant schedules and
  optional warmup; ``project(vars, data) -> vars`` runs after every step (box
  constraints). Each trial keeps its best iterate by objective; a trial whose
  loss or gradient becomes NaN/Inf stops there (its best finite iterate stays
  a candidate) and is reported in ``info["nonfinite_trials"]``. The best trial
  is the one with the lowest kept objective. The loop runs as jitted chunks of
  ``settings.chunk`` iterations (one compiled program per chunk, no
  per-iteration Python), returning to Python between chunks to log progress.
  ``loss_fn`` and ``project`` are static jit arguments: pass the same
  (hashable) objects to reuse the compiled program; data that changes between
  calls goes through ``data`` (traced).

``run(leak, victim, x_init, labels, config, key, *, render=None,
penalty=None, objective=None, aux=None) -> Result``
  Gradient matching on a ``Leak``. ``x_init`` is [R, N, *input_shape] (N =
  clients x batch) or, with ``render``, any pytree with a leading [R] axis.
  The trial message is recomputed from the trial images with the leak's
  protocol: the FedSGD gradient, or the FedAvg update (the client's local SGD
  steps of ``protocols.fedavg_update`` unrolled and differentiated), averaged
  over clients; the attacker's model of a known defense is applied to it
  (prune/soteria: the leak's zero pattern; clip, clip_per_layer, dp_sgd's
  per-example clipping; noise, sign and quantization: nothing). Its distance
  to the leak (``objective``: cosine, l2, l1; ``layer_weights``) plus the
  image priors (``tv``, ``l2``, ``bn_prior``: DeepInversion's BatchNorm
  statistics matching) is minimized.

  * ``labels``: [N] ints, [N, C] soft labels, or None to optimize label
    logits jointly (DLG; soft labels are their softmax).
  * ``render(vars, aux) -> images [N, ...]``: optimize any parameterization
    (generator latents for GI-SMN) instead of pixels; no box projection then.
  * ``penalty(vars, images, aux) -> scalar``: an extra term, e.g. the
    proximity ``||x - x_prior||^2`` of GIT+IG (``aux`` holds x_prior).
  * ``objective(images, labels, aux) -> scalar``: replaces the gradient
    distance (the priors, labels, restarts and box still apply).
  * ``aux``: any pytree handed to the callbacks (traced, so changing it does
    not recompile; closures over arrays work too but recompile each call).

  Returns ``Result(images [N, ...], labels, variables, loss, info)`` for the
  best trial; ``info`` is JSON-able (per-trial losses, history, timings).

``run_many(leaks, victim, x_init [M, R, N, ...], labels [M, N], config)``
  M independent leaks of one victim in one compiled program (M x R trials,
  per-trial data); returns M ``Result``s. ``make_step`` / ``run_chunk`` /
  ``init_carry`` expose the compiled loop for benchmarks.

Example, GIT+IG starting from a generator's output ``x_git`` [N, H, W, C]::

  cfg = dict(ig_defaults, iterations=2000, restarts=1)
  prox = lambda v, x, aux: 1e-2 * jnp.sum(jnp.square(x - aux))
  res = matching.run(leak, victim, x_git[None], labels, cfg, key,
                     penalty=prox, aux=x_git)
"""

import functools
import logging
import time
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from gitjax import defenses
from gitjax import leak as leak_lib
from gitjax import protocols
from gitjax import report
from gitjax import victim as victim_lib
from gitjax.attacks import objectives

OPTIMIZERS = ("adam", "sgd", "lbfgs")
TRIAL_AXES = ("auto", "vmap", "map")
MAX_UNROLLED_TRIALS = 32
LOOPS = ("auto", "device", "host")
SCHEDULES = ("step", "cosine", "constant")
LINESEARCHES = ("zoom", "backtracking", "none")
# Defenses the attacker can model on its trial message; the rest (noise,
# sign, quantization) are left alone.
MODELED_DEFENSES = ("prune", "soteria", "clip", "clip_per_layer", "dp_sgd")


class Settings(NamedTuple):
  """Engine settings (hashable: a static jit argument).

  Attributes:
    objective: gradient distance, one of ``objectives.DISTANCES``.
    layer_weights: per-tensor weights: a sequence in leaf order, a mapping
      from top-level layer name (e.g. "conv0", "head") to weight (others
      1), or None.
    optimizer: "adam", "sgd" (momentum 0.9) or "lbfgs".
    lr: step size (L-BFGS: scale of the line-searched step).
    signed: Adam/SGD on the sign of the gradient (Inverting Gradients).
    schedule: "step" (x0.1 at 3/8, 5/8, 7/8), "cosine" or "constant".
    warmup: linear warmup iterations.
    iterations: optimizer steps per trial.
    restarts: R, trials run side by side as a vmap axis.
    box: project images into the leak's [0, 1] pixel box after each step.
    tv, l2, bn_prior: weights of total variation, the L2 norm and the
      BatchNorm statistics prior.
    grad_clip: clip the (unsigned) gradient to this global norm (0: off).
    lbfgs_memory: L-BFGS history size.
    linesearch: L-BFGS line search, "zoom" (strong Wolfe), "backtracking"
      (Armijo; usually one evaluation per step) or "none" (fixed lr steps,
      as torch's L-BFGS in DLG). The value and gradient the line search
      computed at the accepted point are reused for the next step.
    chunk: iterations per compiled chunk between progress reports.
    progress: show a progress bar (logging happens regardless).
    shard_trials: spread the R trials over all devices (R must be a
      multiple of the device count): restarts or images run in parallel on
      a multi-GPU host or a TPU slice.
    trial_axis: how one compiled step runs the R trials: "vmap" (side by
      side: one batched program, the fast path on GPU/TPU), "map" (one after
      another inside the program: unrolled up to ``MAX_UNROLLED_TRIALS``,
      ``lax.map`` beyond) or "auto" ("map" on CPU, else "vmap"). On XLA:CPU
      a vmapped trial axis turns the weight-gradient convolutions into
      grouped convolutions that run far slower (BUILD_NOTES).
      ``shard_trials`` always uses "vmap".
    loop: where the iterations of a chunk loop: "device" (one compiled
      ``fori_loop`` per chunk), "host" (a Python loop over the compiled
      step; dispatch is asynchronous, so the host syncs once per chunk) or
      "auto" ("host" on CPU, else "device"). XLA:CPU runs convolutions
      inside a while loop ~8x slower than the same convolutions outside one
      (IG on ConvNet: 870 vs 105 ms per iteration; BUILD_NOTES).
  """
  objective: str = "cosine"
  layer_weights: tuple | None = None
  optimizer: str = "adam"
  lr: float = 0.1
  signed: bool = True
  schedule: str = "step"
  warmup: int = 0
  iterations: int = 4000
  restarts: int = 1
  box: bool = True
  tv: float = 0.0
  l2: float = 0.0
  bn_prior: float = 0.0
  grad_clip: float = 0.0
  lbfgs_memory: int = 10
  linesearch: str = "zoom"
  chunk: int = 100
  progress: bool = True
  shard_trials: bool = False
  trial_axis: str = "auto"
  loop: str = "auto"


def make_settings(config=None, **overrides) -> Settings:
  """Builds Settings from a dict/ConfigDict; unknown keys raise ValueError."""
  cfg = dict(config.to_dict() if hasattr(config, "to_dict") else
             (config or {}))
  cfg.update(overrides)
  unknown = set(cfg) - set(Settings._fields)
  if unknown:
    raise ValueError(f"unknown gradient-matching setting(s) {sorted(unknown)}; "
                     f"known: {sorted(Settings._fields)}")
  lw = cfg.get("layer_weights")
  if lw is not None:
    if hasattr(lw, "items"):
      cfg["layer_weights"] = tuple(sorted((str(k), float(w))
                                          for k, w in lw.items()))
    else:
      cfg["layer_weights"] = tuple(float(w) for w in lw)
  s = Settings(**cfg)
  objectives.distance(s.objective)  # Raises on an unknown name.
  if s.optimizer not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {s.optimizer!r}; known: {OPTIMIZERS}")
  if s.linesearch not in LINESEARCHES:
    raise ValueError(f"unknown linesearch {s.linesearch!r}; known: "
                     f"{LINESEARCHES}")
  if s.schedule not in SCHEDULES:
    raise ValueError(f"unknown schedule {s.schedule!r}; known: {SCHEDULES}")
  if s.loop not in LOOPS:
    raise ValueError(f"unknown loop {s.loop!r}; known: {LOOPS}")
  if s.trial_axis not in TRIAL_AXES:
    raise ValueError(f"unknown trial_axis {s.trial_axis!r}; known: "
                     f"{TRIAL_AXES}")
  for name in ("iterations", "restarts", "chunk"):
    if int(getattr(s, name)) < 1:
      raise ValueError(f"{name} must be >= 1; got {getattr(s, name)}")
  return s._replace(iterations=int(s.iterations), restarts=int(s.restarts),
                    chunk=int(s.chunk), warmup=int(s.warmup),
                    lr=float(s.lr), tv=float(s.tv), l2=float(s.l2),
                    bn_prior=float(s.bn_prior))


def schedule(s: Settings) -> optax.Schedule:
  """The learning-rate schedule of ``s`` (breaching's step-lr milestones)."""
  n = s.iterations
  if s.schedule == "step":
    bounds = sorted({max(1, int(n * f)) for f in (3 / 8, 5 / 8, 7 / 8)})
    base = optax.piecewise_constant_schedule(s.lr, {b: 0.1 for b in bounds})
  elif s.schedule == "cosine":
    base = optax.cosine_decay_schedule(s.lr, n)
  else:
    base = optax.constant_schedule(s.lr)
  if s.warmup <= 0:
    return base
  return lambda t: base(t) * jnp.minimum(1.0, (t + 1) / s.warmup)


def make_optimizer(s: Settings) -> optax.GradientTransformationExtraArgs:
  """The Optax transformation of ``s``."""
  pre = []
  if s.grad_clip:
    pre.append(optax.clip_by_global_norm(s.grad_clip))
  if s.optimizer == "lbfgs":
    if s.linesearch == "zoom":
      search = optax.scale_by_zoom_linesearch(
          max_linesearch_steps=15, initial_guess_strategy="one")
    elif s.linesearch == "backtracking":
      search = optax.scale_by_backtracking_linesearch(
          max_backtracking_steps=15, store_grad=True)
    else:
      search = None
    return optax.chain(*pre, optax.lbfgs(schedule(s),
                                         memory_size=s.lbfgs_memory,
                                         linesearch=search))
  if s.signed:
    pre.append(optax.scale_by_sign())
  if s.optimizer == "adam":
    return optax.chain(*pre, optax.adam(schedule(s)))
  return optax.chain(*pre, optax.sgd(schedule(s), momentum=0.9))


# ---------------------------------------------------------------------------
# The generic optimizer over R trials.


class Carry(NamedTuple):
  """Loop state; every leaf has a leading [R] axis except ``step``."""
  vars: Any
  opt_state: Any
  best_vars: Any
  best_loss: jax.Array  # [R]
  alive: jax.Array  # [R] bool
  died_at: jax.Array  # [R] int32, -1 while alive
  step: jax.Array  # [] int32


def _where(c, a, b):
  return jax.tree.map(lambda x, y: jnp.where(
      jnp.reshape(c, c.shape + (1,) * (x.ndim - c.ndim)), x, y), a, b)


def _all_finite(tree):
  return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x))
                              for x in jax.tree.leaves(tree)]))


def _reuses_linesearch(settings, project):
  return (settings.optimizer == "lbfgs" and settings.linesearch != "none"
          and project is None)


def _trial_step(loss_fn, project, settings, step, data, v, opt_state, best_v,
                best_l, alive, died):
  """One optimizer step of one trial (vmapped over trials)."""
  tx = make_optimizer(settings)
  value_fn = lambda u: loss_fn(u, data)
  if _reuses_linesearch(settings, project):
    # The line search already evaluated the loss and gradient at v.
    loss, g = jax.lax.cond(
        step == 0, lambda: jax.value_and_grad(value_fn)(v),
        lambda: (otu.tree_get(opt_state, "value"),
                 otu.tree_get(opt_state, "grad")))
  else:
    loss, g = jax.value_and_grad(value_fn)(v)
  ok = jnp.isfinite(loss) & _all_finite(g)
  now_alive = alive & ok
  better = now_alive & (loss < best_l)
  best_v = _where(better, v, best_v)
  best_l = jnp.where(better, loss, best_l)
  if settings.optimizer == "lbfgs":
    updates, new_os = tx.update(g, opt_state, v, value=loss, grad=g,
                                value_fn=value_fn)
  else:
    updates, new_os = tx.update(g, opt_state, v)
  new_v = optax.apply_updates(v, updates)
  if project is not None:
    new_v = project(new_v, data)
  v = _where(now_alive, new_v, v)
  opt_state = _where(now_alive, new_os, opt_state)
  died = jnp.where(alive & ~ok, step, died)
  return v, opt_state, best_v, best_l, now_alive, died, loss


@functools.partial(jax.jit, static_argnames=("settings",))
def _init_carry(init_vars, settings):
  tx = make_optimizer(settings)
  r = jax.tree.leaves(init_vars)[0].shape[0]
  carry = Carry(
      vars=init_vars, opt_state=jax.vmap(tx.init)(init_vars),
      best_vars=init_vars, best_loss=jnp.full((r,), jnp.inf),
      alive=jnp.ones((r,), bool), died_at=jnp.full((r,), -1, jnp.int32),
      step=jnp.zeros((), jnp.int32))
  # Strong types, so that the chunk compiled for the first call is reused.
  return jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype), carry)


def trial_axis(settings: Settings) -> str:
  """The resolved ``settings.trial_axis``: "vmap" or "map"."""
  if settings.shard_trials:
    return "vmap"
  if settings.trial_axis == "auto":
    return "map" if jax.default_backend() == "cpu" else "vmap"
  return settings.trial_axis


def over_trials(fn: Callable, in_axes: tuple, settings: Settings) -> Callable:
  """``fn`` of one trial lifted to R trials (axis 0 where in_axes is 0).

  Like ``jax.vmap(fn, in_axes)``; with ``trial_axis(settings) == "map"`` the
  trials run one after another: unrolled in the program for up to
  ``MAX_UNROLLED_TRIALS`` trials (each trial's convolutions stay plain
  convolutions outside any loop body), ``lax.map`` beyond.
  """
  if trial_axis(settings) == "vmap":
    return jax.vmap(fn, in_axes=in_axes)

  def mapped(*args):
    trial_args = [a for a, ax in zip(args, in_axes) if ax == 0]

    def one(per_trial_args):
      it = iter(per_trial_args)
      return fn(*[next(it) if ax == 0 else a for a, ax in zip(args, in_axes)])

    r = jax.tree.leaves(trial_args)[0].shape[0]
    if r > MAX_UNROLLED_TRIALS:
      return jax.lax.map(one, trial_args)
    outs = [one(jax.tree.map(lambda x, i=i: x[i], trial_args))
            for i in range(r)]
    return jax.tree.map(lambda *o: jnp.stack(o), *outs)

  return mapped


def make_step(loss_fn, project, settings: Settings, per_trial=False):
  """One iteration of all R trials: ``(carry, data) -> (carry, losses [R])``.

  The body of the compiled loop, exposed for benchmarks (cost analysis).
  """
  step = over_trials(
      functools.partial(_trial_step, loss_fn, project, settings),
      (None, 0 if per_trial else None, 0, 0, 0, 0, 0, 0), settings)

  def one(c, data):
    v, os, bv, bl, al, died, loss = step(c.step, data, c.vars, c.opt_state,
                                         c.best_vars, c.best_loss, c.alive,
                                         c.died_at)
    return Carry(v, os, bv, bl, al, died, c.step + 1), loss

  return one


def init_carry(init_vars, settings: Settings) -> Carry:
  """The loop state for R trials starting at ``init_vars`` (leading [R])."""
  return _init_carry(init_vars, settings)


@functools.partial(jax.jit, static_argnames=("loss_fn", "project",
                                             "settings", "per_trial"))
def _run_chunk(carry, data, n, *, loss_fn, project, settings, per_trial):
  """Runs ``n`` (traced, <= settings.chunk) steps; returns losses [R, chunk]."""
  step = make_step(loss_fn, project, settings, per_trial)
  r = carry.best_loss.shape[0]

  def body(i, c_buf):
    c, buf = c_buf
    c, loss = step(c, data)
    buf = jax.lax.dynamic_update_slice(buf, loss[:, None], (0, i))
    return c, buf

  buf = jnp.full((r, settings.chunk), jnp.nan, carry.best_loss.dtype)
  return jax.lax.fori_loop(0, n, body, (carry, buf))


def loop_kind(settings: Settings) -> str:
  """The resolved ``settings.loop``: "device" or "host"."""
  if settings.loop == "auto":
    return "host" if jax.default_backend() == "cpu" else "device"
  return settings.loop


@functools.partial(jax.jit, static_argnames=("loss_fn", "project",
                                             "settings", "per_trial"))
def _one_step(carry, data, *, loss_fn, project, settings, per_trial):
  return make_step(loss_fn, project, settings, per_trial)(carry, data)


def run_chunk(carry, data, n, *, loss_fn, project, settings, per_trial):
  """Runs ``n`` (<= settings.chunk) steps; returns (carry, losses [R, chunk]).

  Columns past ``n`` of the losses are NaN. Loops on the device or the host
  according to ``loop_kind(settings)``.
  """
  if loop_kind(settings) == "device":
    return _run_chunk(carry, data, n, loss_fn=loss_fn, project=project,
                      settings=settings, per_trial=per_trial)
  losses = []
  for _ in range(int(n)):
    carry, loss = _one_step(carry, data, loss_fn=loss_fn, project=project,
                            settings=settings, per_trial=per_trial)
    losses.append(loss)
  buf = jnp.stack(losses, axis=1)
  pad = settings.chunk - buf.shape[1]
  if pad > 0:
    buf = jnp.pad(buf, ((0, 0), (0, pad)), constant_values=jnp.nan)
  return carry, buf


@functools.partial(jax.jit, static_argnames=("loss_fn", "per_trial",
                                             "settings"))
def _finish(carry, data, *, loss_fn, per_trial, settings):
  """Scores the last iterates (after the final step) and picks the best."""
  loss = over_trials(loss_fn, (0, 0 if per_trial else None), settings)(
      carry.vars, data)
  better = carry.alive & jnp.isfinite(loss) & (loss < carry.best_loss)
  best_v = _where(better, carry.vars, carry.best_vars)
  best_l = jnp.where(better, loss, carry.best_loss)
  best_l = jnp.where(jnp.isfinite(best_l), best_l, jnp.inf)
  return best_v, best_l, loss


class _Progress:
  """Logs each chunk, and advances a ``report.progress`` bar if asked."""

  def __init__(self, total, desc, show):
    self.total, self.desc = total, desc
    self.bar = report.progress(total, desc, disable=not show)

  def update(self, done, n, loss, t0):
    rate = done / max(time.time() - t0, 1e-9)
    eta = (self.total - done) / max(rate, 1e-9)
    logging.info("%s it %d/%d loss %.5g (%.1f it/s, ETA %.0f s)", self.desc,
                 done, self.total, loss, rate, eta)
    self.bar.record(loss=loss)
    self.bar.advance(n)

  def close(self):
    self.bar.close()


def shard(carry: Carry, data, per_trial: bool):
  """Places the trial axis of ``carry`` (and of per-trial data) on a mesh."""
  n = jax.device_count()
  r = carry.best_loss.shape[0]
  if r % n:
    raise ValueError(f"shard_trials needs a trial count divisible by the "
                     f"{n} devices; got {r} trials")
  mesh = jax.make_mesh((n,), ("trials",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  split = jax.NamedSharding(mesh, jax.P("trials"))
  whole = jax.NamedSharding(mesh, jax.P())
  carry = carry._replace(**{
      f: jax.device_put(getattr(carry, f), split)
      for f in Carry._fields if f != "step"})
  carry = carry._replace(step=jax.device_put(carry.step, whole))
  data = jax.device_put(data, split if per_trial else whole)
  return carry, data


def optimize(loss_fn: Callable, init_vars, settings: Settings, data=None,
             project: Callable | None = None, desc: str = "matching", *,
             per_trial: bool = False, select: bool = True):
  """Minimizes ``loss_fn(vars, data)`` from R initial points at once.

  Args:
    loss_fn: ``(vars, data) -> scalar`` for one trial; hashable (static).
    init_vars: pytree whose leaves have a leading [R] axis.
    settings: ``Settings`` (``settings.restarts`` is not used here; R comes
      from ``init_vars``).
    data: traced pytree passed to ``loss_fn`` and ``project``.
    project: optional ``(vars, data) -> vars`` after each step.
    desc: label for progress logs.
    per_trial: ``data`` has a leading [R] axis, one slice per trial (several
      independent problems solved in one program, e.g. 16 leaks x restarts).
    select: return the best trial only; False returns every trial's best
      iterate (leading [R]) for the caller to select, e.g. per problem.

  Returns:
    (best_vars, info dict). ``info`` has ``loss`` (the chosen trial's
    objective), ``best_trial``, ``trial_losses`` [R] (each trial's best
    objective; inf if it never had a finite one), ``final_losses`` [R],
    ``nonfinite_trials`` and ``died_at`` (iteration), ``history`` (iteration
    and per-trial loss at each chunk end), timings.
  """
  t0 = time.time()
  carry = _init_carry(init_vars, settings)
  if settings.shard_trials:
    carry, data = shard(carry, data, per_trial)
  total, done = settings.iterations, 0
  hist_it, hist_loss, compile_s = [], [], None
  bar = _Progress(total, desc, settings.progress)
  t_loop = time.time()
  try:
    while done < total:
      n = min(settings.chunk, total - done)
      carry, buf = run_chunk(carry, data, n, loss_fn=loss_fn,
                             project=project, settings=settings,
                             per_trial=per_trial)
      buf = np.asarray(buf)[:, :n]  # [R, n]; blocks until the chunk is done.
      if compile_s is None:
        compile_s = time.time() - t_loop
      done += n
      hist_it.append(done)
      hist_loss.append([float(x) for x in buf[:, -1]])
      finite = buf[:, -1][np.isfinite(buf[:, -1])]
      bar.update(done, n, float(finite.min()) if finite.size else np.nan,
                 t_loop)
  finally:
    bar.close()
  best_v, best_l, final = _finish(carry, data, loss_fn=loss_fn,
                                  per_trial=per_trial, settings=settings)
  best_l = np.asarray(best_l)
  r = int(np.argmin(best_l))
  died = np.asarray(carry.died_at)
  seconds = time.time() - t0
  info = dict(
      loss=float(best_l[r]), best_trial=r,
      trial_losses=[float(x) for x in best_l],
      final_losses=[float(x) for x in np.asarray(final)],
      nonfinite_trials=[int(i) for i in np.flatnonzero(died >= 0)],
      died_at=[int(x) for x in died], iterations=total,
      restarts=int(best_l.shape[0]),
      history=dict(iteration=hist_it, loss=hist_loss),
      seconds=seconds, first_chunk_seconds=compile_s,
      seconds_per_iteration=seconds / total)
  if not np.isfinite(best_l[r]):
    logging.warning("%s: no trial reached a finite objective", desc)
  if not select:
    return best_v, info
  return jax.tree.map(lambda x: x[r], best_v), info


# ---------------------------------------------------------------------------
# Gradient matching on a leak.


def bn_statistics(victim, variables, xs):
  """Batch statistics at the input of every BatchNorm layer (eval forward).

  Returns:
    A list of (mean [F], var [F], running_mean [F], running_var [F]) in call
    order, computed with flax's ``nn.intercept_methods`` around
    ``victim.apply`` (no change to the victim needed).
  """
  stats = []

  def interceptor(next_fun, args, kwargs, context):
    mod = context.module
    if isinstance(mod, nn.BatchNorm) and context.method_name == "__call__":
      h = args[0]
      axes = tuple(range(h.ndim - 1))
      stats.append((jnp.mean(h, axes), jnp.var(h, axes),
                    mod.get_variable("batch_stats", "mean"),
                    mod.get_variable("batch_stats", "var")))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    victim.apply(variables, xs)
  return stats


def bn_prior(victim, variables, xs, first_scale: float = 10.0):
  """DeepInversion's prior: sum_l ||mu_l - m_l|| + ||var_l - v_l||.

  The first layer is weighted by ``first_scale`` (breaching's choice).
  """
  stats = bn_statistics(victim, variables, xs)
  total = 0.0
  for i, (mu, var, m, v) in enumerate(stats):
    w = first_scale if i == 0 else 1.0
    total += w * (jnp.linalg.norm(mu - m) + jnp.linalg.norm(var - v))
  return total


def _freeze(d):
  return tuple(sorted((k, _freeze(v) if isinstance(v, dict) else v)
                      for k, v in dict(d).items()))


def defense_model(defense) -> tuple:
  """The part of a leak's defense list the attacker models, frozen."""
  out = []
  for spec in defenses.as_list(defense):
    spec = dict(spec)
    name = spec.pop("name")
    if name in MODELED_DEFENSES:
      out.append((name, _freeze(spec)))
  return tuple(out)


class GradientMatching(NamedTuple):
  """The gradient-matching objective on a leak (static, hashable).

  Called as ``problem(vars, data) -> scalar``; ``vars`` is
  ``{"x": images or render's variables, "y": label logits (joint only)}``;
  ``data`` holds the leak's arrays (see ``make_data``).
  """
  victim: Any
  protocol: str = "fedsgd"
  protocol_config: tuple = ()
  num_clients: int = 1
  defense: tuple = ()
  distance: str = "cosine"
  layer_weights: tuple | None = None
  tv: float = 0.0
  l2: float = 0.0
  bn_prior: float = 0.0
  joint_labels: bool = False
  box: bool = True
  render: Callable | None = None
  penalty: Callable | None = None
  objective: Callable | None = None

  def images_labels(self, v, data):
    x = v["x"] if self.render is None else self.render(v["x"], data["aux"])
    if not self.joint_labels:
      return x, data["labels"]
    if self.victim.loss == "squared":
      return x, v["y"]
    return x, jax.nn.softmax(v["y"], axis=-1)

  def client_message(self, xs, ys, data):
    """The trial message of one client's batch (before defenses)."""
    params, state = data["params"], data["state"]
    cfg = dict(self.protocol_config)
    train = cfg.pop("train", False)
    if self.protocol == "fedavg":
      return protocols.fedavg_update(self.victim, params, state, xs, ys,
                                     train=train, **cfg)
    dp = [dict(s) for n, s in self.defense if n == "dp_sgd"]
    if not dp:
      return victim_lib.batch_grad(self.victim, params, state, xs, ys, train)
    g = victim_lib.per_example_grads(self.victim, params, state, xs, ys)
    norms = jnp.sqrt(sum(jnp.sum(jnp.square(l.reshape(l.shape[0], -1)), 1)
                         for l in jax.tree.leaves(g)))  # [B]
    scale = jnp.minimum(1.0, dp[0]["clip_norm"] / (norms + 1e-12))
    return jax.tree.map(
        lambda l: jnp.mean(l * scale.reshape((-1,) + (1,) * (l.ndim - 1)), 0),
        g)

  def message(self, xs, ys, data):
    """The trial message: all clients, then the modeled defenses."""
    k = self.num_clients
    if k == 1:
      m = self.client_message(xs, ys, data)
    else:
      xs_k = xs.reshape((k, -1) + xs.shape[1:])
      ys_k = ys.reshape((k, -1) + ys.shape[1:])
      m = protocols.aggregate(jax.vmap(
          lambda a, b: self.client_message(a, b, data))(xs_k, ys_k))
    for name, spec in self.defense:
      spec = dict(spec)
      if name in ("prune", "soteria"):
        m = jax.tree.map(jnp.multiply, m, data["mask"])
      elif name == "clip":
        m = defenses.clip(m, max_norm=spec["max_norm"])
      elif name == "clip_per_layer":
        m = defenses.clip_per_layer(m, max_norm=spec["max_norm"])
    return m

  def regularizer(self, x, data):
    r = 0.0
    if self.tv:
      r += self.tv * objectives.total_variation(x)
    if self.l2:
      r += self.l2 * objectives.l2_norm(x)
    if self.bn_prior:
      variables = victim_lib.merge(data["params"], data["state"])
      r += self.bn_prior * bn_prior(self.victim, variables, x)
    return r

  def __call__(self, v, data):
    x, y = self.images_labels(v, data)
    if self.objective is not None:
      loss = self.objective(x, y, data["aux"])
    else:
      trial = self.message(x, y, data)
      weights = layer_weight_list(self.layer_weights, data["message"])
      loss = objectives.distance(self.distance)(trial, data["message"],
                                                weights)
    loss = loss + self.regularizer(x, data)
    if self.penalty is not None:
      loss = loss + self.penalty(v["x"], x, data["aux"])
    return loss


class BoxProjection(NamedTuple):
  """Clips ``vars[key]`` into ``[data["lo"], data["hi"]]`` (hashable)."""
  key: str = "x"

  def __call__(self, v, data):
    return {**v, self.key: jnp.clip(v[self.key], data["lo"], data["hi"])}


def layer_weight_list(layer_weights, message):
  """Per-leaf weights (leaf order) from Settings.layer_weights, or None."""
  if layer_weights is None:
    return None
  if not layer_weights or not isinstance(layer_weights[0], tuple):
    return list(layer_weights)
  table = dict(layer_weights)
  paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(message)[0]]
  names = [str(getattr(p[0], "key", p[0])) for p in paths]
  unknown = set(table) - set(names)
  if unknown:
    raise ValueError(f"layer_weights names unknown layers {sorted(unknown)}; "
                     f"layers: {sorted(set(names))}")
  return [table.get(n, 1.0) for n in names]


def make_data(leak, labels=None, aux=None) -> dict:
  """The traced arrays of a gradient-matching problem."""
  lo, hi = leak_lib.box(leak)
  mask = None
  if any(s["name"] in ("prune", "soteria") for s in
         defenses.as_list(leak.defense)):
    mask = jax.tree.map(lambda m: (m != 0).astype(m.dtype), leak.message)
  return dict(message=leak.message, params=leak.params, state=leak.state,
              labels=None if labels is None else jnp.asarray(labels),
              mask=mask, lo=lo, hi=hi, aux=aux)


def make_problem(leak, victim, settings: Settings, joint_labels=False,
                 render=None, penalty=None, objective=None):
  """The static ``GradientMatching`` for a leak and settings."""
  if leak.protocol not in protocols.PROTOCOLS:
    raise ValueError(f"unknown protocol {leak.protocol!r}; known: "
                     f"{protocols.PROTOCOLS}")
  if settings.tv and len(victim.input_shape) != 3:
    raise ValueError("tv needs image inputs [H, W, C]; victim input shape "
                     f"is {tuple(victim.input_shape)}")
  if settings.bn_prior and "batch_stats" not in leak.variables:
    raise ValueError(f"bn_prior needs a victim with BatchNorm; "
                     f"{victim.name!r} has no batch_stats")
  return GradientMatching(
      victim=victim, protocol=leak.protocol,
      protocol_config=_freeze(leak.protocol_config),
      num_clients=int(leak.num_clients), defense=defense_model(leak.defense),
      distance=settings.objective, layer_weights=settings.layer_weights,
      tv=settings.tv, l2=settings.l2, bn_prior=settings.bn_prior,
      joint_labels=joint_labels, box=settings.box, render=render,
      penalty=penalty, objective=objective)


class Result(NamedTuple):
  images: jax.Array  # [N, *input_shape], victim space.
  labels: jax.Array  # [N] ints, [N, C] soft labels, or [N] targets.
  variables: Any  # The best trial's optimized variables.
  loss: float
  info: dict


def run(leak, victim, x_init, labels, config, key=None, *, render=None,
        penalty=None, objective=None, aux=None) -> Result:
  """Gradient matching on ``leak``; see the module docstring.

  Args:
    leak: the ``Leak`` (message, attacker's variables, protocol, defense).
    victim: the model the leak came from.
    x_init: [R, N, *input_shape] initial images (victim space), or with
      ``render`` a pytree of variables with leading [R].
    labels: [N] ints, [N, C] soft labels, or None (joint optimization).
    config: ``Settings`` or a dict of its fields.
    key: randomness for the joint label logits' init.
    render, penalty, objective, aux: see the module docstring.

  Returns:
    ``Result`` of the best trial.
  """
  s = config if isinstance(config, Settings) else make_settings(config)
  r = jax.tree.leaves(x_init)[0].shape[0]
  problem = make_problem(leak, victim, s, labels is None, render, penalty,
                         objective)
  if render is None:
    victim_lib.check_images(victim, x_init[0], "x_init[r]")
  init = {"x": x_init}
  if labels is None:
    init["y"] = _label_logits(problem, x_init, r, aux, key)
  data = make_data(leak, labels, aux)
  project = BoxProjection() if s.box and render is None else None
  best, info = optimize(problem, init, s, data, project,
                        desc=f"{victim.name}/{s.objective}/{s.optimizer}")
  x, y = problem.images_labels(best, data)
  return Result(images=x, labels=y, variables=best["x"], loss=info["loss"],
                info=info)


def _label_logits(problem, x_init, r, aux, key):
  if problem.render is None:
    n = x_init.shape[1]
  else:
    n = jax.eval_shape(lambda v: problem.render(v, aux),
                       jax.tree.map(lambda a: a[0], x_init)).shape[0]
  key = jax.random.key(0) if key is None else key
  victim = problem.victim
  shape = (r, n) if victim.loss == "squared" else (r, n, victim.num_classes)
  return jax.random.normal(key, shape)


def run_many(leaks, victim, x_init, labels, config, key=None) -> list[Result]:
  """Attacks M independent leaks of one victim in one compiled program.

  The M x R trials run side by side (vmapped; per-trial data), which on a
  CPU or GPU costs far less than M sequential runs for small victims.

  Args:
    leaks: M leaks with the same model, protocol and defense.
    victim: their victim.
    x_init: [M, R, N, *input_shape] initial images.
    labels: [M, N] (or [M, N, C]) labels, or None for joint optimization.
    config: ``Settings`` or a dict of its fields.
    key: randomness for joint label logits.

  Returns:
    M ``Result``s; each ``info`` has the shared history and timings and its
    own per-restart losses.
  """
  s = config if isinstance(config, Settings) else make_settings(config)
  m, r = x_init.shape[:2]
  if len(leaks) != m:
    raise ValueError(f"{len(leaks)} leaks but x_init has {m} problems")
  problem = make_problem(leaks[0], victim, s, labels is None)
  for lk in leaks[1:]:
    if make_problem(lk, victim, s, labels is None) != problem:
      raise ValueError("run_many needs leaks with the same model, protocol "
                       "and defense")
  flat = lambda a: a.reshape((m * r,) + a.shape[2:])
  init = {"x": flat(x_init)}
  if labels is None:
    init["y"] = _label_logits(problem, init["x"], m * r, None, key)
  datas = [make_data(lk, None if labels is None else labels[i])
           for i, lk in enumerate(leaks)]
  data = jax.tree.map(lambda *a: jnp.repeat(jnp.stack(a), r, axis=0), *datas)
  project = BoxProjection() if s.box else None
  best, info = optimize(problem, init, s, data, project, per_trial=True,
                        select=False,
                        desc=f"{m} x {victim.name}/{s.objective}/"
                        f"{s.optimizer}")
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
    out.append(Result(images=x, labels=y, variables=b["x"],
                      loss=inf["loss"], info=inf))
  return out
