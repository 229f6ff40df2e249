"""GGL: generative gradient leakage (Li et al., CVPR 2022).

Searches the latent space of a generator trained on public data:

  z* = argmin_z  D(observed, T(grad(G(z)))) + kl_weight * KL(z),

with the label inferred from the gradient (``labels.infer``) and T the
client's defense *estimated from the observed gradient* (GGL's adaptive
attack, ``estimate_defense``): clipping -> the observed global norm;
pruning -> the fraction of zeros of each observed tensor, applied to the
trial gradient at that rate; Soteria -> the zero rows of the observed
head-kernel gradient, applied as a mask; additive noise -> nothing, or fresh
noise of the known scale (``noise_mode="add"``).

Optimizers (``config.optimizer``): "cmaes" (evosax CMA-ES; each generation's
population goes through ONE jitted, vmapped call of the objective), "bo"
(TuRBO-1, ``gitjax.attacks.bo``) and "adam" (gradients through the generator
and the victim, GGL's ramped learning rate). ``budget`` counts generations
(cmaes), evaluations (bo) or steps (adam); the paper's are 800, 1000, 2500.
"""

import functools
import logging
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gitjax import defenses
from gitjax import generators as gen_lib
from gitjax import protocols
from gitjax import attacks
from gitjax.attacks import Reconstruction
from gitjax.attacks import bo
from gitjax.attacks import labels as labels_lib
from gitjax.attacks import objectives

DEFAULTS = dict(
    name="ggl",
    generator_dir=None,
    optimizer="cmaes",  # "cmaes" | "bo" | "adam"
    budget=800,
    population=50,  # CMA-ES candidates per generation.
    sigma=1.0,  # CMA-ES initial step size.
    init=None,  # "zeros" or "randn"; None: zeros (cmaes), randn (adam).
    distance="l2",
    kl_weight=0.0,  # GGL's CMA/BO code runs without the KL; Adam uses 0.1.
    lr=0.1,  # Adam.
    lr_rampup=0.05,
    lr_rampdown=0.25,
    noise_mode="none",  # "none" | "add": fresh noise of the known sigma.
    detect_defense=True,  # Guess prune/Soteria when the defense is unknown.
    label_method="auto",
    bo_n_init=256,
    bo_batch=10,
    bo_box=2.0,
    bo_candidates=None,
    bo_gp_steps=50,
    log_every=50,
)


def _plain(config) -> dict:
  return attacks.settings(config, DEFAULTS, "ggl")


# --------------------------------------------------- defense estimation ----


def estimate_defense(message, spec=(), detect: bool = True) -> list[dict]:
  """Estimates the client's defense parameters from the observed message.

  Args:
    message: the observed (defended) gradient tree.
    spec: the defense as the attacker knows it (a ``defenses.as_list``
      list, usually ``leak.defense``); only the kinds and, for noise, the
      scale are used: every other parameter is read off ``message``.
    detect: with an empty ``spec``, look for pruning (most tensors at
      least 30% exact zeros) and Soteria (at least a quarter of the head
      kernel's rows entirely zero) in ``message``.

  Returns:
    A list of transforms for ``apply_defense``, in the client's order:
    ``dict(name="clip", max_norm=S)``, ``dict(name="clip_per_layer",
    max_norms=[...])``, ``dict(name="prune", rates=[per tensor])``,
    ``dict(name="soteria", keep=[F] bool)``, ``dict(name="noise",
    kind="gaussian"|"laplacian", scale=s)``, ``dict(name="sign")``,
    ``dict(name="quantize", bits=k)``.
  """
  leaves = [np.asarray(x) for x in jax.tree.leaves(message)]
  zero_frac = [float(np.mean(x == 0)) for x in leaves]
  out = []
  for s in defenses.as_list(list(spec)):
    name = s["name"]
    if name == "clip":
      out.append(dict(name="clip",
                      max_norm=float(defenses.global_norm(message))))
    elif name == "clip_per_layer":
      out.append(dict(name="clip_per_layer",
                      max_norms=[float(np.linalg.norm(x)) for x in leaves]))
    elif name == "prune":
      out.append(dict(name="prune", rates=zero_frac))
    elif name == "soteria":
      out.append(dict(name="soteria", keep=_head_rows_kept(message)))
    elif name in ("gaussian", "laplacian"):
      scale = s.get("sigma", s.get("scale"))
      out.append(dict(name="noise", kind=name, scale=scale))
    elif name == "dp_sgd":
      out.append(dict(name="noise", kind="gaussian", scale=None))
    elif name == "sign":
      out.append(dict(name="sign"))
    elif name == "quantize":
      out.append(dict(name="quantize", bits=int(s["bits"])))
  if not out and detect:
    if np.mean([z >= 0.3 for z in zero_frac]) > 0.5:
      out.append(dict(name="prune", rates=zero_frac))
    elif "head" in message:
      keep = _head_rows_kept(message)
      if np.mean(keep) <= 0.75:  # ReLU features leave a few rows at 0.
        out.append(dict(name="soteria", keep=keep))
  return out


def _head_rows_kept(message) -> list[bool]:
  if "head" not in message:
    raise ValueError("the Soteria estimate needs a message with a 'head' "
                     "layer")
  kernel = np.asarray(message["head"]["kernel"])  # [F, C]
  return [bool(v) for v in np.any(kernel != 0, axis=1)]


def _prune_tensor(g, rate):
  k = int(round(rate * g.size))
  if k == 0:
    return g
  thresh = jnp.sort(jnp.abs(g).ravel())[k - 1]
  return jnp.where(jnp.abs(g) > thresh, g, 0.0)


def apply_defense(estimate: list[dict], grad, key=None,
                  noise_mode: str = "none"):
  """Applies estimated transforms to a trial gradient (jit/vmap-able)."""
  for t in estimate:
    name = t["name"]
    if name == "clip":
      grad = defenses.clip(grad, max_norm=t["max_norm"])
    elif name == "clip_per_layer":
      leaves, treedef = jax.tree.flatten(grad)
      leaves = [g * jnp.minimum(1.0, s / (jnp.linalg.norm(g) + 1e-12))
                for g, s in zip(leaves, t["max_norms"])]
      grad = jax.tree.unflatten(treedef, leaves)
    elif name == "prune":
      leaves, treedef = jax.tree.flatten(grad)
      grad = jax.tree.unflatten(
          treedef, [_prune_tensor(g, r) for g, r in zip(leaves, t["rates"])])
    elif name == "soteria":
      keep = jnp.asarray(t["keep"])
      head = dict(grad["head"])
      head["kernel"] = head["kernel"] * keep[:, None]
      grad = {**grad, "head": head}
    elif name == "noise":
      if noise_mode == "add" and t["scale"] and key is not None:
        key, sub = jax.random.split(key)
        if t["kind"] == "gaussian":
          grad = defenses.gaussian_noise(grad, sub, sigma=t["scale"])
        else:
          grad = defenses.laplacian_noise(grad, sub, scale=t["scale"])
    elif name == "sign":
      grad = defenses.sign(grad)
    elif name == "quantize":
      grad = defenses.quantize(grad, bits=t["bits"])
  return grad


# ------------------------------------------------------------ objective ----


def kl_divergence(z: jax.Array) -> jax.Array:
  """GGL's R1: KL(N(mean(z), var(z)) || N(0, 1)) per latent, summed [B]."""
  mu = jnp.mean(z, axis=-1)
  var = jnp.var(z, axis=-1) + 1e-8
  return jnp.sum(-0.5 * (1.0 + jnp.log(var) - mu**2 - var))


class Problem(NamedTuple):
  """The latent-search objective of one leak, as pure functions."""
  loss: Callable[[jax.Array, jax.Array], jax.Array]  # (z_flat, key) -> []
  render: Callable[[jax.Array], jax.Array]  # z_flat -> victim-space images
  dim: int
  labels: jax.Array
  estimate: list


def make_problem(leak, victim, generator: gen_lib.Generator, gen_vars,
                 config) -> Problem:
  """Builds GGL's objective for ``leak`` (config: a dict of DEFAULTS)."""
  cfg = _plain(config)
  if leak.batch_size is None:
    raise ValueError("GGL needs the batch size (leak.batch_size is None)")
  if leak.protocol == "fedavg" and leak.num_clients > 1:
    raise ValueError("GGL attacks one FedAvg client or FedSGD aggregates; "
                     f"got fedavg with {leak.num_clients} clients")
  n = leak.batch_size * (leak.num_clients if leak.protocol == "fedsgd"
                         else 1)
  if tuple(generator.image_shape) != tuple(leak.input_shape):
    raise ValueError(
        f"generator makes images of shape {generator.image_shape} but the "
        f"victim takes {tuple(leak.input_shape)}")
  ys, _ = labels_lib.from_leak_with_fallback(
      leak, victim, cfg["label_method"])
  estimate = estimate_defense(leak.message, leak.defense,
                              cfg["detect_defense"])
  dist = objectives.distance(cfg["distance"])
  n_tensors = len(jax.tree.leaves(leak.message))
  params, state = leak.params, leak.state
  observed = leak.message
  latent = generator.latent_dim

  def render(z_flat):
    z = z_flat.reshape(n, latent)
    x = generator.apply(gen_vars, z, train=False)[0]
    return gen_lib.to_victim_space(x, leak.mean, leak.std)

  def loss(z_flat, key):
    x = render(z_flat)
    g = protocols.client_message(victim, params, state, x, ys, leak.protocol,
                                 leak.protocol_config)
    g = apply_defense(estimate, g, key, cfg["noise_mode"])
    d = dist(g, observed)
    if cfg["distance"] == "l2":
      d = d / n_tensors  # GGL averages the squared distance over tensors.
    kl = kl_divergence(z_flat.reshape(n, latent))
    return d + cfg["kl_weight"] * kl

  return Problem(loss, render, n * latent, ys, estimate)


# ----------------------------------------------------------- optimizers ----


class SearchResult(NamedTuple):
  z: jax.Array  # [dim] best latent found.
  loss: float
  history: list  # best loss per generation / batch / log step.
  evaluations: int


def cmaes(batched_loss: Callable, x0: jax.Array, key, *, generations: int,
          population: int = 50, sigma: float = 1.0,
          log_every: int = 0) -> SearchResult:
  """CMA-ES (evosax) on ``batched_loss([P, d], key) -> [P]``.

  ``batched_loss`` is called exactly once per generation, on the whole
  population of ``population`` candidates.
  """
  from evosax.algorithms import CMA_ES  # Lazy: only this optimizer needs it.
  es = CMA_ES(population_size=population, solution=jnp.zeros_like(x0))
  params = es.default_params.replace(std_init=jnp.asarray(sigma))
  key, k = jax.random.split(key)
  state = es.init(k, x0, params)
  history = []
  for gen in range(generations):
    key, k_ask, k_eval, k_tell = jax.random.split(key, 4)
    pop, state = es.ask(k_ask, state, params)
    fitness = batched_loss(pop, k_eval)
    state, _ = es.tell(k_tell, pop, fitness, state, params)
    history.append(float(state.best_fitness))
    if log_every and (gen + 1) % log_every == 0:
      logging.info("ggl cmaes generation %d/%d: best loss %.5g", gen + 1,
                   generations, history[-1])
  return SearchResult(state.best_solution, float(state.best_fitness),
                      history, generations * population)


def ggl_lr(step, total, lr, rampup, rampdown):
  """GGL's (StyleGAN projector's) cosine ramp down and linear ramp up."""
  t = step / total
  ramp = jnp.minimum(1.0, (1.0 - t) / rampdown)
  ramp = 0.5 - 0.5 * jnp.cos(ramp * jnp.pi)
  return lr * ramp * jnp.minimum(1.0, t / rampup)


def adam(loss: Callable, x0: jax.Array, key, *, steps: int, lr: float = 0.1,
         rampup: float = 0.05, rampdown: float = 0.25,
         log_every: int = 0) -> SearchResult:
  """Adam on ``loss(x, key)`` with GGL's learning-rate ramp; keeps the best."""
  tx = optax.adam(lambda s: ggl_lr(s, steps, lr, rampup, rampdown))

  @jax.jit
  def step(x, opt, k):
    val, g = jax.value_and_grad(loss)(x, k)
    u, opt = tx.update(g, opt, x)
    return optax.apply_updates(x, u), opt, val

  x, opt = x0, tx.init(x0)
  best_x, best, history = x0, np.inf, []
  for i in range(steps):
    key, k = jax.random.split(key)
    x_new, opt, val = step(x, opt, k)
    val = float(val)
    if val < best:  # val is the loss at x, before this update.
      best, best_x = val, x
    x = x_new
    if log_every and (i + 1) % log_every == 0:
      history.append(best)
      logging.info("ggl adam step %d/%d: loss %.5g", i + 1, steps, val)
  history.append(best)
  return SearchResult(best_x, best, history, steps)


# --------------------------------------------------------------- attack ----


def reconstruct(leak, victim, generator: gen_lib.Generator, gen_vars,
                config, key) -> Reconstruction:
  """GGL with an in-memory generator (``attack`` loads it from disk)."""
  cfg = _plain(config)
  t0 = time.time()
  prob = make_problem(leak, victim, generator, gen_vars, cfg)
  k_init, k_opt, k_eval = jax.random.split(key, 3)
  init = cfg["init"] or ("randn" if cfg["optimizer"] == "adam" else "zeros")
  if init == "zeros":
    x0 = jnp.zeros((prob.dim,))
  elif init == "randn":
    x0 = jax.random.normal(k_init, (prob.dim,))
  else:
    raise ValueError(f"unknown ggl init {init!r}; known: zeros, randn")
  opt = cfg["optimizer"]
  batched = jax.jit(jax.vmap(prob.loss, in_axes=(0, None)))
  initial = float(jax.jit(prob.loss)(x0, k_eval))
  if opt == "cmaes":
    res = cmaes(batched, x0, k_opt, generations=cfg["budget"],
                population=cfg["population"], sigma=cfg["sigma"],
                log_every=cfg["log_every"])
  elif opt == "bo":
    box = cfg["bo_box"]
    out = bo.turbo(lambda zs: batched(zs, k_eval), prob.dim, k_opt,
                   budget=cfg["budget"], lb=-box, ub=box,
                   n_init=cfg["bo_n_init"], batch=cfg["bo_batch"],
                   n_candidates=cfg["bo_candidates"],
                   gp_steps=cfg["bo_gp_steps"])
    res = SearchResult(jnp.asarray(out.x), out.y, out.history,
                       out.evaluations)
  elif opt == "adam":
    res = adam(prob.loss, x0, k_opt, steps=cfg["budget"], lr=cfg["lr"],
               rampup=cfg["lr_rampup"], rampdown=cfg["lr_rampdown"],
               log_every=cfg["log_every"])
  else:
    raise ValueError(f"unknown ggl optimizer {opt!r}; known: cmaes, bo, "
                     "adam")
  images = jax.jit(prob.render)(res.z)
  info = {
      "optimizer": opt, "initial_loss": initial, "loss": res.loss,
      "history": res.history, "evaluations": res.evaluations,
      "defense_estimate": _summary(prob.estimate),
      "seconds": time.time() - t0,
  }
  return Reconstruction(images, prob.labels, info)


def _summary(estimate):
  out = []
  for t in estimate:
    t = dict(t)
    if "keep" in t:
      t["keep"] = f"{sum(t['keep'])}/{len(t['keep'])} features"
    if "rates" in t:
      t["rates"] = f"mean {np.mean(t['rates']):.3f}"
    if "max_norms" in t:
      t["max_norms"] = f"{len(t['max_norms'])} tensors"
    out.append(t)
  return out


@functools.lru_cache(maxsize=4)
def cached_generator(directory: str) -> tuple[gen_lib.Generator, Any]:
  """Loads (and keeps) a trained generator from its train_prior workdir."""
  from gitjax import train_prior  # Lazy: pulls in the data stack.
  return train_prior.load_generator(directory)


def attack(leak, victim, config, key) -> Reconstruction:
  """GGL through the common interface; needs ``config.generator_dir``."""
  cfg = _plain(config)
  generator, gen_vars = cached_generator(cfg["generator_dir"])
  return reconstruct(leak, victim, generator, gen_vars, cfg, key)
