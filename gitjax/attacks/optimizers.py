"""Optimizer and schedule names turned into optax objects, in one place.

Configs name an optimizer ("adam", "sgd", "lbfgs"), a schedule ("step",
"cosine", "constant", "ggl") and a few modifiers (signed gradients, warmup,
gradient clipping, Langevin noise); ``transformation`` builds the optax
``GradientTransformation`` the trial loop (``engine.optimize``) runs. It is
cached, so equal settings give the same object and the engine's compiled
step is reused across calls. Code that wants something else passes its own
optax transformation to the engine directly.
"""

import functools

import jax.numpy as jnp
import optax

OPTIMIZERS = ("adam", "sgd", "lbfgs")
SCHEDULES = ("step", "cosine", "constant", "ggl")
LINESEARCHES = ("zoom", "backtracking", "none")


def check(optimizer: str, schedule_name: str, linesearch: str) -> None:
  """Raises ValueError naming an unknown optimizer, schedule or search."""
  for what, name, known in (("optimizer", optimizer, OPTIMIZERS),
                            ("schedule", schedule_name, SCHEDULES),
                            ("linesearch", linesearch, LINESEARCHES)):
    if name not in known:
      raise ValueError(f"unknown {what} {name!r}; known: {known}")


def ggl_ramp(iterations: int, lr: float, rampup: float = 0.05,
             rampdown: float = 0.25) -> optax.Schedule:
  """GGL's (StyleGAN projector's) linear ramp up and cosine ramp down."""
  def fn(step):
    t = step / iterations
    ramp = jnp.minimum(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * jnp.cos(ramp * jnp.pi)
    return lr * ramp * jnp.minimum(1.0, t / rampup)
  return fn


def schedule(name: str, lr: float, iterations: int, warmup: int = 0,
             ramp: tuple[float, float] = (0.05, 0.25)) -> optax.Schedule:
  """The learning-rate schedule called ``name``.

  "step": x0.1 at 3/8, 5/8 and 7/8 of the iterations (breaching's step-lr
  milestones); "cosine": cosine decay to 0; "constant"; "ggl": GGL's ramp,
  up over the first ``ramp[0]`` and down over the last ``ramp[1]`` of the
  iterations. ``warmup`` multiplies by a linear ramp over the first steps.
  """
  n = iterations
  if name == "step":
    bounds = sorted({max(1, int(n * f)) for f in (3 / 8, 5 / 8, 7 / 8)})
    base = optax.piecewise_constant_schedule(lr, {b: 0.1 for b in bounds})
  elif name == "cosine":
    base = optax.cosine_decay_schedule(lr, n)
  elif name == "ggl":
    base = ggl_ramp(n, lr, *ramp)
  else:
    base = optax.constant_schedule(lr)
  if warmup <= 0:
    return base
  return lambda t: base(t) * jnp.minimum(1.0, (t + 1) / warmup)


@functools.lru_cache(maxsize=64)
def transformation(optimizer: str = "adam", lr: float = 0.1,
                   iterations: int = 1000, *, signed: bool = False,
                   schedule_name: str = "constant", warmup: int = 0,
                   grad_clip: float = 0.0, lbfgs_memory: int = 10,
                   linesearch: str = "zoom", langevin: float = 0.0,
                   seed: int = 0, ramp: tuple[float, float] = (0.05, 0.25)
                   ) -> optax.GradientTransformationExtraArgs:
  """The optax transformation these names describe (cached).

  Args:
    optimizer: "adam", "sgd" (momentum 0.9) or "lbfgs".
    lr: step size (L-BFGS: scale of the line-searched step).
    iterations: the run's length, for the schedule.
    signed: step on the sign of the gradient (Inverting Gradients).
    schedule_name: see ``schedule``.
    warmup: linear warmup iterations.
    grad_clip: clip the gradient to this global norm first (0: off).
    lbfgs_memory: L-BFGS history size.
    linesearch: L-BFGS line search: "zoom" (strong Wolfe), "backtracking"
      (Armijo) or "none" (fixed lr steps, as torch's L-BFGS in DLG).
    langevin: scale of Gaussian noise added to each update (GradInversion's
      Langevin step; ``optax.add_noise``, decaying as eta / (1 + t)^0.55).
    seed: the noise's seed.
    ramp: the "ggl" schedule's ramp-up and ramp-down fractions.
  """
  check(optimizer, schedule_name, linesearch)
  sched = schedule(schedule_name, lr, iterations, warmup, ramp)
  pre = [optax.clip_by_global_norm(grad_clip)] if grad_clip else []
  if optimizer == "lbfgs":
    search = None
    if linesearch == "zoom":
      search = optax.scale_by_zoom_linesearch(
          max_linesearch_steps=15, initial_guess_strategy="one")
    elif linesearch == "backtracking":
      search = optax.scale_by_backtracking_linesearch(
          max_backtracking_steps=15, store_grad=True)
    return optax.chain(*pre, optax.lbfgs(sched, memory_size=lbfgs_memory,
                                         linesearch=search))
  if signed:
    pre.append(optax.scale_by_sign())
  core = (optax.adam(sched) if optimizer == "adam"
          else optax.sgd(sched, momentum=0.9))
  post = [optax.add_noise(langevin, 0.55, seed)] if langevin else []
  return optax.chain(*pre, core, *post)
