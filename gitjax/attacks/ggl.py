"""GGL: generative gradient leakage (Li et al., CVPR 2022).

Searches the latent space of a generator trained on public data:

  z* = argmin_z  D(observed, T(grad(G(m(z))))) + kl_weight * KL(m(z)),

where m is the identity, tanh or the projection to the N(0, I) shell
(``latent``), with the label inferred from the gradient (``labels.infer``)
and T the client's defense *estimated from the observed gradient* (GGL's
adaptive attack; ``client_model`` with ``GGL_STYLE``): clipping -> the
observed global norm; pruning -> the fraction of zeros of each observed tensor,
applied to the trial gradient at that rate; Soteria -> the zero rows of the
observed head-kernel gradient, applied as a mask; additive noise -> nothing,
or fresh noise of the known scale (``noise_mode="add"``); sign and
quantization applied as the client did.

Optimizers (``config.optimizer``; ``latent_search``): "cmaes" (evosax
CMA-ES; each generation's population goes through ONE jitted call of the
objective, vmapped or lax.mapped by ``population_map``), "bo" (TuRBO-1,
``gitjax.attacks.bo``) and "adam" (gradients through the generator and the
victim with GGL's ramped learning rate, run by ``engine.optimize``). The
objective is a static ``Objective`` of the leak's traced arrays, so Adam's
images share one compiled program; CMA-ES and BO compile each leak into
their population program (``population``), which pays over hundreds of
generations, and free it after the attack.
``budget`` counts generations (cmaes), evaluations (bo) or steps (adam); the
paper's are 800, 1000, 2500.
"""

import functools
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import attacks
from gitjax import client_model
from gitjax import generators as gen_lib
from gitjax import ghost
from gitjax import loading
from gitjax import static
from gitjax.attacks import Reconstruction
from gitjax.attacks import bo
from gitjax.attacks import engine
from gitjax.attacks import labels as labels_lib
from gitjax.attacks import latent_search
from gitjax.attacks import objectives
from gitjax.attacks import optimizers

DEFAULTS = dict(
    name="ggl",
    generator_dir=None,
    optimizer="cmaes",  # "cmaes" | "bo" | "adam"
    budget=800,
    population=50,  # CMA-ES candidates per generation.
    # How a generation's candidates are evaluated in its one jitted call:
    # "vmap" (batched convolutions; the accelerator path) or "map" (lax.map,
    # one candidate after another; on one XLA:CPU core at ResNet-18 width
    # 16-32, 1.2-1.6x faster without a defense and 1.6-1.7x under pruning;
    # BUILD_NOTES.md).
    population_map="vmap",
    sigma=1.0,  # CMA-ES initial step size.
    # CMA-ES's answer: "mean" (the search distribution's mean, as GGL's
    # nevergrad code recommends) or "best" (the best candidate evaluated,
    # which under a noisy leak fits the noise with a far-off latent).
    recommend="mean",
    init=None,  # "zeros" or "randn"; None: zeros (cmaes), randn (adam).
    # The generator's input from the searched vector z: "free" (z itself),
    # "tanh" (tanh(z), GGL's ImageNet code) or "sphere" (z rescaled to norm
    # sqrt(latent_dim), the shell where N(0, I) latents live; keeps a
    # search that follows noise from drifting to saturated images).
    latent="free",
    distance="l2",
    kl_weight=0.0,  # GGL's CMA/BO code runs without the KL; Adam uses 0.1.
    lr=0.1,  # Adam.
    # Adam from this many random latents at once (trials of the engine,
    # laid out by ``population_map``), keeping the one whose gradient loss
    # ends lowest, as GGL's IG/DLG baselines do with 4. 4 x 1,000 steps did
    # not beat 1 x 2,500 on CelebA at width 16 (2026-12-04). With CMA-ES:
    # whole searches from as many keys, one after another, keeping the
    # answer of lowest objective (under noise its answer varies by 3 dB
    # from key to key; BUILD_NOTES.md).
    restarts=1,
    # The answer of CMA-ES restarts: "lowest" (the restart of lowest
    # objective) or "image_mean" (the mean of all restarts' images: under
    # a noisy leak the searches end in different faces whose objectives
    # the leak cannot tell apart, and their mean is the lower-error
    # estimate, the posterior mean over equally likely modes).
    restart_answer="lowest",
    lr_rampup=0.05,
    lr_rampdown=0.25,
    # Adam's schedule: "ggl" (the ramp above, GGL's BigGAN code) or one of
    # ``optimizers.SCHEDULES`` ("step": x0.1 at 3/8, 5/8, 7/8, GGL's CelebA
    # code through inversefed); ``signed`` steps on the gradient's sign, as
    # that CelebA code does.
    schedule="ggl",
    signed=False,
    # The squared-l2 distance averaged over tensors (GGL's CMA-ES/BO loss)
    # or summed (``False``; its CelebA Adam, inversefed's cost), which sets
    # the distance's weight against the KL term.
    l2_mean=True,
    noise_mode="none",  # "none" | "add": fresh noise of the known sigma.
    # CMA-ES and BO score their populations with the l2 distance's large
    # kernels by Gram matrices (``ghost``) where the modeled message is the
    # plain gradient: the same objective to rounding, without per-candidate
    # kernel gradients (ResNet-18 width 64, 50 candidates: 0.91x the time
    # lax.mapped, 0.44x vmapped with XLA's convolutions; BUILD_NOTES.md).
    ghost=True,
    # Pruning and Soteria on the trial gradient: "rate" (prune each tensor
    # at the observed fraction of zeros, GGL's code) or "pattern" (keep the
    # observed nonzero pattern, as gradient matching does).
    masks="rate",
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


# ------------------------------------------------------------ objective ----


def kl_divergence(z: jax.Array) -> jax.Array:
  """GGL's R1: KL(N(mean(z), var(z)) || N(0, 1)) per latent, summed [B]."""
  mu = jnp.mean(z, axis=-1)
  var = jnp.var(z, axis=-1) + 1e-8
  return jnp.sum(-0.5 * (1.0 + jnp.log(var) - mu**2 - var))


LATENTS = ("free", "tanh", "sphere")


def latent_input(z: jax.Array, how: str) -> jax.Array:
  """The generator's input [B, d] from the searched z [B, d] (``latent``)."""
  if how == "tanh":
    return jnp.tanh(z)
  if how == "sphere":
    norm = jnp.sqrt(jnp.sum(jnp.square(z), axis=-1, keepdims=True) + 1e-12)
    return z * (jnp.sqrt(float(z.shape[-1])) / norm)
  return z


class Problem(NamedTuple):
  """The latent-search objective of one leak, as pure functions."""
  loss: Callable[[jax.Array, jax.Array], jax.Array]  # (z_flat, key) -> []
  render: Callable[[jax.Array], jax.Array]  # z_flat -> victim-space images
  dim: int
  labels: jax.Array
  client: client_model.ClientModel  # With the defense estimate.
  # ``loss`` for a gradient-free search: the same values, computed through
  # ``ghost`` where it applies (never differentiated).
  search_loss: Callable[[jax.Array, jax.Array], jax.Array]
  # The same as static, hashable callables ``(z_flat, key, data)`` and the
  # leak's traced ``data``: every leak of one shape and defense shares one
  # compiled program (``population``, ``evaluate``, Adam's step).
  objective: "Objective" = None
  search_objective: "Objective" = None
  data: dict | None = None


class Decoder(static.Keyed):
  """z_flat -> victim-space images; a static jit argument.

  Equal and hashed by the generator, the identity of its variables'
  arrays (``static.held``; ``loading.generator`` caches them), the
  images' count and normalization and the latent map.
  """

  def __init__(self, generator, gen_vars, n, latent, mean, std):
    self.generator, self.gen_vars = generator, gen_vars
    self.n, self.latent, self.mean, self.std = n, latent, mean, std
    self._key = (generator, static.held(gen_vars), n, latent, tuple(mean),
                 tuple(std))

  def inputs(self, z_flat):
    z = z_flat.reshape(self.n, self.generator.latent_dim)
    return latent_input(z, self.latent)

  def images(self, z):
    x = self.generator.apply(self.gen_vars, z, train=False)[0]
    return gen_lib.to_victim_space(x, self.mean, self.std)

  def __call__(self, z_flat):
    return self.images(self.inputs(z_flat))


class Objective(NamedTuple):
  """GGL's objective, ``(z_flat, key, data) -> []`` (static, hashable).

  ``data``: the leak's ``params``, ``state``, ``observed`` message, labels
  ``ys`` and the client model's ``arrays``. With ``ghost`` the distance is
  the plain gradient's squared l2 through ``ghost.squared_l2``.
  """
  client: client_model.ClientModel
  decoder: Decoder
  distance: str
  mean_over: int  # Tensors: GGL averages the squared l2 over them (or 1).
  kl_weight: float
  ghost: bool = False
  train: bool = False

  def __call__(self, z_flat, key, data):
    z = self.decoder.inputs(z_flat)
    x = self.decoder.images(z)
    if self.ghost:
      d = jnp.sum(ghost.squared_l2(self.client.victim, data["params"],
                                   data["state"], x, data["ys"],
                                   data["observed"], self.train))
    else:
      g = self.client.message(data["params"], data["state"], x, data["ys"],
                              data["arrays"], key)
      d = objectives.distance(self.distance)(g, data["observed"])
    return d / self.mean_over + self.kl_weight * kl_divergence(z)


def style(noise_mode: str = "none", masks: str = "rate"
          ) -> client_model.Style:
  """GGL's model of the client's defense (see ``client_model``)."""
  return client_model.Style(masks=masks, norms="observed", noise=noise_mode,
                            exact=True)


def make_problem(leak, victim, generator: gen_lib.Generator, gen_vars,
                 config) -> Problem:
  """Builds GGL's objective for ``leak`` (config: a dict of DEFAULTS)."""
  cfg = _plain(config)
  if leak.batch_size is None:
    raise ValueError("GGL needs the batch size (leak.batch_size is None)")
  n = leak.batch_size * leak.num_clients
  if tuple(generator.image_shape) != tuple(leak.input_shape):
    raise ValueError(
        f"generator makes images of shape {generator.image_shape} but the "
        f"victim takes {tuple(leak.input_shape)}")
  _check("noise_mode", cfg["noise_mode"], ("none", "add"))
  _check("population_map", cfg["population_map"], ("vmap", "map"))
  _check("recommend", cfg["recommend"], ("best", "mean"))
  _check("latent", cfg["latent"], LATENTS)
  _check("masks", cfg["masks"], ("rate", "pattern"))
  _check("schedule", cfg["schedule"], optimizers.SCHEDULES)  # Has "ggl".
  _check("signed", cfg["signed"], (True, False))
  _check("l2_mean", cfg["l2_mean"], (True, False))
  _check("ghost", cfg["ghost"], (True, False))
  ys, _ = labels_lib.from_leak_with_fallback(
      leak, victim, cfg["label_method"])
  client, arrays = client_model.from_leak(leak, victim,
                                          style(cfg["noise_mode"],
                                                cfg["masks"]),
                                          detect=cfg["detect_defense"])
  n_tensors = len(jax.tree.leaves(leak.message))
  mean_over = n_tensors if cfg["distance"] == "l2" and cfg["l2_mean"] else 1
  decoder = Decoder(generator, gen_vars, n, cfg["latent"], leak.mean,
                    leak.std)
  objective = Objective(client, decoder, cfg["distance"], mean_over,
                        float(cfg["kl_weight"]))
  vmapped = objective  # The victim's convolutions: batched trials.
  if cfg["population_map"] == "map" or (cfg["optimizer"] == "adam"
                                        and cfg["restarts"] == 1):
    # One trial at a time: the replay's convolutions as gradient matching
    # chooses them (``client_model.replay_conv``; CelebA ResNet-18 width
    # 32 under clipping, Adam: 0.87x the step time).
    objective = objective._replace(client=client_model.with_derivatives(
        client, client.second_order, "auto"))
  if cfg["ghost"] and cfg["distance"] == "l2" and (
      client_model.plain_gradient(client)):
    train = dict(client.protocol_config).get("train", False)
    search = vmapped._replace(ghost=True, train=bool(train))
  else:
    search = objective if cfg["population_map"] == "map" else vmapped
  data = dict(params=leak.params, state=leak.state, observed=leak.message,
              ys=ys, arrays=arrays)
  loss = functools.partial(objective, data=data)
  search_loss = loss if search is objective else functools.partial(
      search, data=data)
  return Problem(loss, decoder, n * generator.latent_dim, ys, client,
                 search_loss, objective, search, data)


@functools.partial(jax.jit, static_argnums=0)
def _evaluate(objective, z, key, data):
  return objective(z, key, data)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _population(objective, how, zs, key, data):
  loss = functools.partial(objective, data=data)
  return latent_search.population_loss(loss, how)(zs, key)


@functools.partial(jax.jit, static_argnums=0)
def _render(decoder, z):
  return decoder(z)


def evaluate(prob: Problem) -> Callable:
  """``prob.loss``, compiled once for all leaks of one shape."""
  return lambda z, key: _evaluate(prob.objective, z, key, prob.data)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _population_c(objective, how, const, zs, key):
  return _population.__wrapped__(objective, how, zs, key, const.tree)


def population(prob: Problem, how: str = "vmap",
               constants: bool = False) -> Callable:
  """``([P, d], key) -> [P]`` of ``prob.search_loss``, vmapped or
  lax.mapped, compiled once for all leaks of one shape; with
  ``constants`` the leak is compiled in, one compile per leak (50
  candidates of ResNet-18 width 64 with ghost, lax.mapped: 1.40 s a
  generation against 1.57 traced, for about 5 s of compile; free the
  programs with ``release``)."""
  _check("population_map", how, ("vmap", "map"))
  if constants:
    const = engine.Constant(prob.data)
    return lambda zs, key: _population_c(prob.search_objective, how, const,
                                         zs, key)
  return lambda zs, key: _population(prob.search_objective, how, zs, key,
                                     prob.data)


def release():
  """Frees the population programs that hold a leak (``constants``)."""
  _population_c.clear_cache()


def _check(field: str, value, known: tuple):
  if value not in known:
    raise ValueError(f"unknown ggl {field} {value!r}; known: "
                     f"{', '.join(map(str, known))}")


# --------------------------------------------------------------- attack ----


def reconstruct(leak, victim, generator: gen_lib.Generator, gen_vars,
                config, key) -> Reconstruction:
  """GGL with an in-memory generator (``attack`` loads it from disk)."""
  cfg = _plain(config)
  t0 = time.time()
  opt = cfg["optimizer"]
  init = cfg["init"] or ("randn" if opt == "adam" else "zeros")
  restarts = cfg["restarts"]
  if not isinstance(restarts, int) or restarts < 1 or (
      restarts > 1 and opt != "cmaes" and (opt != "adam" or init != "randn")):
    raise ValueError(f"ggl restarts={restarts!r}: a count >= 1; above 1 "
                     "only with optimizer='cmaes', or 'adam' and "
                     "init='randn'")
  _check("restart_answer", cfg["restart_answer"], ("lowest", "image_mean"))
  if cfg["restart_answer"] == "image_mean" and opt != "cmaes":
    raise ValueError("ggl restart_answer='image_mean' needs optimizer="
                     f"'cmaes', not {opt!r}")
  prob = make_problem(leak, victim, generator, gen_vars, cfg)
  render = functools.partial(_render, prob.render)
  k_init, k_opt, k_eval = jax.random.split(key, 3)
  if init == "zeros":
    x0 = jnp.zeros((prob.dim,))
  elif init == "randn":
    x0 = jax.random.normal(k_init, (prob.dim,))
  else:
    raise ValueError(f"unknown ggl init {init!r}; known: zeros, randn")
  # Hundreds of generations per leak: the leak compiled in pays.
  batched = population(prob, cfg["population_map"], constants=True)
  single = evaluate(prob)
  initial = float(single(x0, k_eval))
  restart_losses, restart_latents = [], []
  if opt == "cmaes":  # Restarts: the first is a single run's.
    res, evaluations, answers = None, 0, []
    for r in range(restarts):
      run = latent_search.cmaes(
          batched, x0, jax.random.fold_in(k_opt, r) if r else k_opt,
          generations=cfg["budget"], population=cfg["population"],
          sigma=cfg["sigma"], log_every=cfg["log_every"],
          recommend=cfg["recommend"])
      run = run._replace(loss=float(single(run.z, k_eval)))
      restart_losses.append(run.loss)
      answers.append(run.z)
      evaluations += run.evaluations
      if res is None or run.loss < res.loss:
        res = run
    res = res._replace(evaluations=evaluations)
  elif opt == "bo":
    box = cfg["bo_box"]
    out = bo.turbo(lambda zs: batched(zs, k_eval), prob.dim, k_opt,
                   budget=cfg["budget"], lb=-box, ub=box,
                   n_init=cfg["bo_n_init"], batch=cfg["bo_batch"],
                   n_candidates=cfg["bo_candidates"],
                   gp_steps=cfg["bo_gp_steps"])
    res = latent_search.SearchResult(jnp.asarray(out.x), out.y,
                                     out.history, out.evaluations)
  elif opt == "adam":
    if restarts > 1:  # The first start is x0, as with one.
      more = jax.random.normal(jax.random.fold_in(k_init, 1),
                               (restarts - 1, prob.dim))
      x0 = jnp.concatenate([x0[None], more])
    res = latent_search.adam(
        prob.objective, x0, k_opt, data=prob.data, steps=cfg["budget"],
        lr=cfg["lr"], rampup=cfg["lr_rampup"], rampdown=cfg["lr_rampdown"],
        log_every=cfg["log_every"], fresh_keys=cfg["noise_mode"] == "add",
        trial_axis=cfg["population_map"], schedule=cfg["schedule"],
        signed=bool(cfg["signed"]))
  else:
    raise ValueError(f"unknown ggl optimizer {opt!r}; known: cmaes, bo, "
                     "adam")
  if opt == "cmaes" and cfg["restart_answer"] == "image_mean":
    images = jnp.mean(jnp.stack([render(z) for z in answers]), axis=0)
  else:
    images = render(res.z)
  if opt == "cmaes" and restarts > 1:
    restart_latents = [np.asarray(z).tolist() for z in answers]
  info = {
      "optimizer": opt, "initial_loss": initial, "loss": res.loss,
      "restart_losses": restart_losses, "restart_answer": (
          cfg["restart_answer"] if opt == "cmaes" else "lowest"),
      "restart_latents": restart_latents,
      "history": res.history, "evaluations": res.evaluations,
      "defense_estimate": client_model.summary(prob.client,
                                               prob.data["arrays"]),
      "seconds": time.time() - t0,
  }
  release()  # The search's programs held this leak.
  return Reconstruction(images, prob.labels, info)


def attack(leak, victim, config, key) -> Reconstruction:
  """GGL through the common interface; needs ``config.generator_dir``."""
  cfg = _plain(config)
  generator, gen_vars = loading.generator(cfg["generator_dir"])
  return reconstruct(leak, victim, generator, gen_vars, cfg, key)
