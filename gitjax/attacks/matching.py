"""Gradient matching on a ``Leak``: the objective shared by DLG, Inverting
Gradients, GIT+IG, GI-SMN and GradInversion, run by ``engine.optimize``.

``run(leak, victim, x_init, labels, config, key, *, render=None,
penalty=None, objective=None, aux=None, tx=None, on_chunk=None) -> Result``
  ``x_init`` is [R, N, *input_shape] (N = clients x batch) or, with
  ``render``, any pytree with a leading [R] axis. The trial message is the
  attacker's replay of the client (``client_model.ClientModel``: the FedSGD
  gradient or the unrolled FedAvg update over all clients, DP-SGD's
  per-example clipping, and the known defenses' masks and clipping). Its
  distance to the leak (``objective``: cosine, l2, l1; ``layer_weights``)
  plus the image priors (``tv``, ``l2``, ``bn_prior``: DeepInversion's
  BatchNorm statistics) is minimized.

  * ``labels``: [N] ints, [N, C] soft labels, or None to optimize label
    logits jointly (DLG; soft labels are their softmax).
  * ``render(vars, aux) -> images [N, ...]``: optimize any parameterization
    (generator latents for GI-SMN) instead of pixels; no box projection then.
  * ``penalty(vars, images, aux) -> scalar``: an extra term, e.g. the
    proximity ``||x - x_prior||^2`` of GIT+IG (``aux`` holds x_prior).
  * ``objective(images, labels, aux) -> scalar``: replaces the gradient
    distance (the priors, labels, restarts and box still apply).
  * ``aux``: any pytree handed to the callbacks (traced).
  * ``tx``: an optax transformation instead of the one ``config`` names;
    ``on_chunk(step, vars, data) -> data``: the engine's hook between chunks
    (``data["aux"]`` is the place for what it changes).

  Returns ``Result(images [N, ...], labels, variables, loss, info)`` for the
  best trial; ``info`` is JSON-able (per-trial losses, history, timings).

``matching_many.run_many``: M leaks of one victim side by side.

Example, GIT+IG starting from a generator's output ``x_git`` [N, H, W, C]::

  cfg = dict(ig_defaults, iterations=2000, restarts=1)
  prox = lambda v, x, aux: 1e-2 * jnp.sum(jnp.square(x - aux))
  res = matching.run(leak, victim, x_git[None], labels, cfg, key,
                     penalty=prox, aux=x_git)
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from gitjax import client_model
from gitjax import ghost
from gitjax import leak as leak_lib
from gitjax import victim as victim_lib
from gitjax.attacks import engine
from gitjax.attacks import objectives
from gitjax.attacks import optimizers


class Settings(NamedTuple):
  """Gradient-matching settings, as configs name them (hashable).

  Objective: ``objective`` (a distance of ``objectives.DISTANCES``),
  ``distance_scale`` (its weight against the priors), ``layer_weights``
  (a sequence in leaf order, or a mapping from top-level layer name to
  weight, others 1), ``box`` (project into the leak's [0, 1]
  pixel box after each step), ``tv``, ``l2``, ``bn_prior`` (weights of
  total variation, the L2 norm and the BatchNorm statistics prior).

  Optimizer (``optimizers.transformation``): ``optimizer``, ``lr``,
  ``signed``, ``schedule``, ``warmup``, ``grad_clip``, ``lbfgs_memory``,
  ``linesearch``, ``langevin``.

  Execution (``engine.Options``): ``iterations``, ``restarts`` (R trials),
  ``chunk``, ``progress``, ``shard_trials``, ``trial_axis``, ``loop``;
  ``second_order``: how the trial message is differentiated with respect to
  the inputs ("forward": forward-over-reverse, faster; "reverse": double
  backprop; ``victim.grad_fn``); ``conv``: the replay's convolutions
  (``client_model.replay_conv``; "auto": XLA's where that is fastest);
  ``ghost``: take the distance's kernel terms from the layers' inputs and
  output cotangents (``ghost``; "auto": on a CPU for a cosine on one image
  of a plain gradient, ``GHOST_MAX_BATCH``), "on" or "off".
  With XLA's convolutions on a CPU, ``trial_axis="auto"`` runs the trials
  one after another ("map"): vmapped, their weight gradients become
  grouped convolutions, and ``constants="auto"`` compiles the leak into
  the step (``engine.Options.constants``; see ``options``).
  """
  objective: str = "cosine"
  distance_scale: float = 1.0
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
  langevin: float = 0.0
  chunk: int = 100
  progress: bool = True
  shard_trials: bool = False
  trial_axis: str = "auto"
  loop: str = "auto"
  second_order: str = "forward"
  conv: str = "auto"
  constants: str = "auto"  # "auto", "on" or "off".
  ghost: str = "auto"  # "auto", "on" or "off".


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
  optimizers.check(s.optimizer, s.schedule, s.linesearch)
  victim_lib.grad_fn(s.second_order)  # Raises on an unknown name.
  if s.conv not in client_model.CONVS:
    raise ValueError(f"unknown conv {s.conv!r}; known: "
                     f"{client_model.CONVS}")
  for field in ("constants", "ghost"):
    if getattr(s, field) not in CONSTANTS:
      raise ValueError(f"unknown {field} {getattr(s, field)!r}; known: "
                       f"{CONSTANTS}")
  if int(s.restarts) < 1:
    raise ValueError(f"restarts must be >= 1; got {s.restarts}")
  engine.check_options(options(s))
  return s._replace(iterations=int(s.iterations), restarts=int(s.restarts),
                    chunk=int(s.chunk), warmup=int(s.warmup),
                    lr=float(s.lr), tv=float(s.tv), l2=float(s.l2),
                    bn_prior=float(s.bn_prior), langevin=float(s.langevin),
                    distance_scale=float(s.distance_scale))


def transformation(s: Settings):
  """The optax transformation ``s`` names (cached: the same object)."""
  return optimizers.transformation(
      s.optimizer, float(s.lr), int(s.iterations), signed=bool(s.signed),
      schedule_name=s.schedule, warmup=int(s.warmup),
      grad_clip=float(s.grad_clip), lbfgs_memory=int(s.lbfgs_memory),
      linesearch=s.linesearch, langevin=float(s.langevin))


def options(s: Settings, problem=None, **overrides) -> engine.Options:
  """The engine options of ``s`` (for ``problem``, a ``GradientMatching``).

  When the problem's replay uses XLA's convolutions on a CPU,
  ``trial_axis="auto"`` is "map" (8 restarts of ResNet-18 width 16: vmap
  202 ms, map 73, im2col vmapped 66) and ``constants="auto"`` is on (the
  leak compiled in: IG step 1.13x faster on ResNet-18 B = 1, 1.20x on
  ConvNet-64 B = 1, B = 8 unchanged; with im2col it was 0.89-1.0x), for
  runs of at least ``CONSTANTS_MIN_STEPS`` trial steps: each leak is a
  compile (CelebA ResNet-18 width 32, 500 IG iterations: 11 s of compile
  to save 12 ms a step, 27 s a leak against 22 s without).
  """
  axis = s.trial_axis
  xla_cpu = (problem is not None and not s.shard_trials
             and problem.client.conv in ("xla", "shape")
             and jax.default_backend() == "cpu")
  if axis == "auto" and xla_cpu:
    axis = "map"
  const = s.constants == "on" or (
      s.constants == "auto" and xla_cpu
      and s.iterations * s.restarts >= CONSTANTS_MIN_STEPS)
  return engine.Options(iterations=s.iterations, chunk=s.chunk,
                        progress=s.progress, shard_trials=s.shard_trials,
                        trial_axis=axis, loop=s.loop,
                        constants=const)._replace(**overrides)


CONSTANTS = ("auto", "on", "off")
CONSTANTS_MIN_STEPS = 1000  # Iterations x restarts ("auto"; ``options``).
# Images per trial up to which ``ghost="auto"`` takes a cosine through
# ``ghost`` on a CPU. IG step against the formed gradient's forward-over-
# reverse, ResNet-18 width 64: 0.78 / 0.93 / 0.99 / 1.09 at B = 1 / 2 / 4
# / 8 (with the leak's factors, B = 2 0.87, B = 8 1.07); ConvNet-64 0.97
# / 1.06 / 1.13 at B = 1 / 2 / 8; LeNet 0.68 at B = 1 (BUILD_NOTES.md).
GHOST_MAX_BATCH = 1


class GradientMatching(NamedTuple):
  """The gradient-matching objective on a leak (static, hashable).

  Called as ``problem(vars, data) -> scalar``; ``vars`` is
  ``{"x": images or render's variables, "y": label logits (joint only)}``;
  ``data`` holds the leak's arrays (see ``make_data``).
  """
  client: client_model.ClientModel
  distance: str = "cosine"
  distance_scale: float = 1.0
  layer_weights: tuple | None = None
  tv: float = 0.0
  l2: float = 0.0
  bn_prior: float = 0.0
  joint_labels: bool = False
  render: Callable | None = None
  penalty: Callable | None = None
  objective: Callable | None = None
  ghost: str = "off"  # Settings.ghost.

  @property
  def victim(self):
    return self.client.victim

  def images_labels(self, v, data):
    x = v["x"] if self.render is None else self.render(v["x"], data["aux"])
    if not self.joint_labels:
      return x, data["labels"]
    if self.victim.loss == "squared":
      return x, v["y"]
    return x, jax.nn.softmax(v["y"], axis=-1)

  def message(self, xs, ys, data):
    """The trial message of the client model."""
    return self.client.message(data["params"], data["state"], xs, ys,
                               data["client"])

  def regularizer(self, x, data):
    r = 0.0
    if self.tv:
      r += self.tv * objectives.total_variation(x)
    if self.l2:
      r += self.l2 * objectives.l2_norm(x)
    if self.bn_prior:
      variables = victim_lib.merge(data["params"], data["state"])
      r += self.bn_prior * objectives.bn_prior(self.victim, variables, x)
    return r

  def __call__(self, v, data):
    x, y = self.images_labels(v, data)
    if self.objective is not None:
      loss = self.objective(x, y, data["aux"])
    else:
      weights = objectives.layer_weight_list(self.layer_weights,
                                             data["message"])
      if self.uses_ghost(x):
        loss = self.ghost_distance(x, y, data, weights)
      elif self.distance == "cosine":
        loss = objectives.cosine(self.message(x, y, data), data["message"],
                                 weights, data.get("message_squares"))
      else:
        loss = objectives.distance(self.distance)(
            self.message(x, y, data), data["message"], weights)
      if self.distance_scale != 1.0:
        loss = self.distance_scale * loss
    loss = loss + self.regularizer(x, data)
    if self.penalty is not None:
      loss = loss + self.penalty(v["x"], x, data["aux"])
    return loss

  def uses_ghost(self, x) -> bool:
    """Whether the distance on trial images ``x`` goes through ``ghost``."""
    return self.ghost == "on" or (
        self.ghost == "auto" and self.distance == "cosine"
        and x.shape[0] <= GHOST_MAX_BATCH and jax.default_backend() == "cpu"
        and client_model.plain_gradient(self.client))

  def ghost_distance(self, x, y, data, weights=None):
    """The distance through ``ghost`` (``objectives.plain_distance``)."""
    return objectives.plain_distance(
        self.distance, self.victim, data["params"], data["state"], x, y,
        data["message"], dict(self.client.protocol_config).get("train",
                                                               False),
        weights, data.get("message_squares"), data.get("factors"))

  def with_factors(self, data, x):
    """``data`` with the leak's low-rank kernel factors when the distance
    on trial images ``x`` goes through ghost (``ghost.leak_factors``)."""
    if (self.objective is not None or self.distance != "cosine"
        or not self.uses_ghost(x)):  # Only the cosine reads them.
      return data
    return dict(data, factors=ghost.leak_factors(self.victim, data["message"],
                                                 x.shape[0]))


class BoxProjection(NamedTuple):
  """Clips ``vars[key]`` into ``[data["lo"], data["hi"]]`` (hashable)."""
  key: str = "x"

  def __call__(self, v, data):
    return {**v, self.key: jnp.clip(v[self.key], data["lo"], data["hi"])}


def make_data(leak, labels=None, aux=None, client_arrays=None) -> dict:
  """The traced arrays of a gradient-matching problem."""
  lo, hi = leak_lib.box(leak)
  if client_arrays is None:
    client_arrays = client_model.from_leak(leak, None)[1]
  # |message|^2 per tensor, once per attack, not once per step (cosine).
  return dict(message=leak.message,
              message_squares=objectives.squares(leak.message),
              params=leak.params, state=leak.state,
              labels=None if labels is None else jnp.asarray(labels),
              client=client_arrays, lo=lo, hi=hi, aux=aux)


def make_problem(leak, victim, settings: Settings, joint_labels=False,
                 render=None, penalty=None, objective=None):
  """The static ``GradientMatching`` for a leak and settings."""
  if settings.tv and len(victim.input_shape) != 3:
    raise ValueError("tv needs image inputs [H, W, C]; victim input shape "
                     f"is {tuple(victim.input_shape)}")
  if settings.bn_prior and "batch_stats" not in leak.variables:
    raise ValueError(f"bn_prior needs a victim with BatchNorm; "
                     f"{victim.name!r} has no batch_stats")
  client, _ = client_model.from_leak(leak, victim,
                                     second_order=settings.second_order,
                                     conv=settings.conv)
  if settings.ghost == "on" and (
      objective is not None or settings.objective not in ("cosine", "l2")
      or not client_model.plain_gradient(client)):
    raise ValueError("ghost='on' needs a cosine or l2 distance to a plain "
                     "gradient (FedSGD, one client, no modeled defense); "
                     "set ghost='auto' or 'off'")
  return GradientMatching(
      client=client, distance=settings.objective,
      distance_scale=settings.distance_scale,
      layer_weights=settings.layer_weights, tv=settings.tv, l2=settings.l2,
      bn_prior=settings.bn_prior, joint_labels=joint_labels, render=render,
      penalty=penalty, objective=objective, ghost=settings.ghost)


class Result(NamedTuple):
  images: jax.Array  # [N, *input_shape], victim space.
  labels: jax.Array  # [N] ints, [N, C] soft labels, or [N] targets.
  variables: Any  # The best trial's optimized variables.
  loss: float
  info: dict


def run(leak, victim, x_init, labels, config, key=None, *, render=None,
        penalty=None, objective=None, aux=None, tx=None, on_chunk=None,
        keep: str = "best") -> Result:
  """Gradient matching on ``leak``; see the module docstring.

  Args:
    leak: the ``Leak`` (message, attacker's variables, protocol, defense).
    victim: the model the leak came from.
    x_init: [R, N, *input_shape] initial images (victim space), or with
      ``render`` a pytree of variables with leading [R].
    labels: [N] ints, [N, C] soft labels, or None (joint optimization).
    config: ``Settings`` or a dict of its fields.
    key: randomness for the joint label logits' init.
    render, penalty, objective, aux, tx, on_chunk: see the module docstring.
    keep: "best" or "last" iterate per trial (``engine.Options.keep``).

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
    init["y"] = label_logits(problem, x_init, r, aux, key)
  data = make_data(leak, labels, aux)
  if render is None:
    data = problem.with_factors(data, x_init[0])
  project = BoxProjection() if s.box and render is None else None
  best, info = engine.optimize(
      problem, init, transformation(s) if tx is None else tx, data,
      options=options(s, problem, keep=keep), project=project,
      on_chunk=on_chunk,
      desc=f"{victim.name}/{s.objective}/{s.optimizer}")
  x, y = problem.images_labels(best, data)
  return Result(images=x, labels=y, variables=best["x"], loss=info["loss"],
                info=info)


def label_logits(problem, x_init, r, aux, key):
  if problem.render is None:
    n = x_init.shape[1]
  else:
    n = jax.eval_shape(lambda v: problem.render(v, aux),
                       jax.tree.map(lambda a: a[0], x_init)).shape[0]
  key = jax.random.key(0) if key is None else key
  victim = problem.victim
  shape = (r, n) if victim.loss == "squared" else (r, n, victim.num_classes)
  return jax.random.normal(key, shape)
