"""GIT (one forward pass of a trained inverter), GIT + gradient matching, LTI.

Attack fields:
  inverter_dir: the workdir of an inverter training run
    (``python -m launch.train_inverter``); required.
  step: the checkpoint to load (default: the latest).
  labels: how the reported labels are found: "auto" (shared if the leak has
    them, else iDLG for one image or LLG-style counts for a batch), or a
    ``labels.infer`` method. GIT itself never needs them.

``attack_with_matching`` (GIT + IG, ``gradient_matching.refine``) also
takes every gradient-matching ``Settings`` field (defaults: Inverting
Gradients', with lr 0.01) and
  proximity: weight of ``mean((x - x_git)^2)`` added to the objective (0:
    GIT's output is only the starting point).
  restarts: trials start from GIT's output plus ``jitter`` * N(0, 1) noise
    (the first one without noise).

``attack_with_posterior`` (GIT + a posterior step) takes
  prior: a Gaussian image prior (``gaussian_prior``): a shipped name or an
    ``.npz`` of ``gaussian_prior.save``; required.
  sigma: the noise's standard deviation per message entry ("auto": the
    leak's Gaussian defense, or ``sigma_clean`` for a leak without one; a
    number: used as given, a regularizer on a clean leak).
  steps (1), cg_iterations (200): Gauss-Newton steps and conjugate
    gradients per step (``posterior.step``).
  label_search: with one image and no shared labels, take the class whose
    message at GIT's output is nearest the leak (a confident victim's
    gradient is mostly noise, and iDLG's sign rule then guesses).

The leak must match the inverter's training setup (model and config, image
shape, B, normalization, FedSGD from one client, labels if the inverter was
trained with shared labels); anything else is a clear error. The victim's
parameters may differ from those the inverter was trained at: that is the
parameter-discrepancy setting, reported as ``info["param_discrepancy"]``.
"""

import functools
import time

import jax
import jax.numpy as jnp

from gitjax import client_model
from gitjax import gaussian_prior
from gitjax import leak as leak_lib
from gitjax import loading
from gitjax.attacks import gradient_matching
from gitjax.attacks import labels as labels_lib
from gitjax.attacks import matching
from gitjax.attacks import posterior
from gitjax.attacks import Reconstruction

GIT_FIELDS = dict(inverter_dir=None, step=None, labels="auto")
POSTERIOR_FIELDS = dict(GIT_FIELDS, prior=None, sigma="auto", steps=1,
                        cg_iterations=200, label_search=True,
                        sigma_clean=None)


def _fields(config, known: dict, extra=()) -> tuple[dict, dict]:
  """Splits the attack config into (our fields, the rest); checks names."""
  cfg = dict(config.to_dict() if hasattr(config, "to_dict") else
             (config or {}))
  name = cfg.pop("name", None)
  ours = {k: cfg.pop(k, v) for k, v in known.items()}
  unknown = sorted(set(cfg) - set(extra))
  if unknown:
    raise ValueError(f"unknown {name or 'git'} attack config key(s) "
                     f"{unknown}; known: {sorted(set(known) | set(extra))}")
  if not ours["inverter_dir"]:
    raise ValueError("the GIT/LTI attacks need attack.inverter_dir: the "
                     "workdir of a python -m launch.train_inverter run")
  return ours, cfg


def check_compatible(trained: loading.Trained, leak, victim,
                     kind: str) -> None:
  """Raises ValueError if the inverter cannot invert this leak."""
  setup = trained.setup
  have = trained.config.inverter.name
  where = f"inverter in {trained.workdir}"
  if have != kind:
    raise ValueError(f"{where} is a {have!r} inverter; the {kind!r} attack "
                     f"needs a {kind!r} one (use attack {have!r})")
  if leak.model != setup.victim.name or dict(leak.model_config) != dict(
      setup.victim.config):
    raise ValueError(
        f"{where} was trained for {setup.victim.name} "
        f"{setup.victim.config}; the leak is from {leak.model} "
        f"{leak.model_config}")
  if tuple(leak.input_shape) != tuple(setup.victim.input_shape) or (
      leak.num_classes != setup.num_classes):
    raise ValueError(
        f"{where} was trained on inputs {setup.victim.input_shape} with "
        f"{setup.num_classes} classes; the leak has {leak.input_shape} and "
        f"{leak.num_classes}")
  if leak.protocol != "fedsgd" or leak.num_clients != 1:
    raise ValueError(
        f"{where} inverts single-client FedSGD gradients; the leak is "
        f"{leak.protocol} over {leak.num_clients} client(s)")
  b = setup.leak.batch_size
  if leak.batch_size is not None and leak.batch_size != b:
    raise ValueError(f"{where} was trained for batches of {b}; the leak "
                     f"has {leak.batch_size}")
  same = lambda a, c: tuple(float(v) for v in a) == tuple(float(v) for v in c)
  if not (same(leak.mean, setup.leak.mean) and same(leak.std,
                                                    setup.leak.std)):
    raise ValueError(
        f"{where} was trained on inputs normalized with mean "
        f"{setup.leak.mean} std {setup.leak.std}; the leak uses "
        f"{leak.mean} {leak.std}")
  if setup.leak.labels_shared and leak.labels is None:
    raise ValueError(f"{where} was trained with shared labels; the leak has "
                     "none")


@functools.lru_cache(maxsize=8)
def _forward(inverter):
  return jax.jit(inverter.apply)


def invert(trained: loading.Trained, leak) -> tuple[jax.Array, dict]:
  """The inverter's images for the leak, in the victim's input space.

  Returns:
    (images [B, *input_shape], timings): one jitted forward pass; the
    timing excludes compilation (measured on a second call).
  """
  setup = trained.setup
  msg = jax.tree.map(lambda m: jnp.asarray(m)[None], leak.message)
  labels = None
  if setup.leak.labels_shared:
    labels = jax.nn.one_hot(jnp.asarray(leak.labels),
                            setup.num_classes)[None]
  fwd = _forward(setup.inverter)
  t0 = time.perf_counter()
  x01 = jax.block_until_ready(fwd(trained.params, msg, labels))
  t1 = time.perf_counter()
  x01 = jax.block_until_ready(fwd(trained.params, msg, labels))
  t2 = time.perf_counter()
  images = (x01[0] - jnp.asarray(leak.mean)) / jnp.asarray(leak.std)
  return images, dict(first_call_seconds=t1 - t0, forward_seconds=t2 - t1)


def _discrepancy(trained, leak) -> float | None:
  """Relative L2 distance of the leak's parameters from the training ones."""
  if trained.setup.leak.victim_params != "fixed":
    return None
  ref = trained.setup.variables["params"]
  num = sum(jnp.sum(jnp.square(a - b)) for a, b in
            zip(jax.tree.leaves(leak.params), jax.tree.leaves(ref)))
  den = sum(jnp.sum(jnp.square(b)) for b in jax.tree.leaves(ref))
  return float(jnp.sqrt(num / den))


def _labels(leak, victim, mode: str, b: int):
  if leak.labels is not None:
    return jnp.asarray(leak.labels), "shared"
  method = mode
  if mode == "auto":
    method = "idlg" if b == 1 else "llg"
  return labels_lib.from_leak(leak, victim, method, b), method


def _run(leak, victim, config, kind: str):
  fields, _ = _fields(config, GIT_FIELDS)
  return _invert_leak(leak, victim, fields, kind)


def _invert_leak(leak, victim, fields, kind):
  leak_lib.validate(leak, victim)
  trained = loading.inverter(fields["inverter_dir"], fields["step"])
  check_compatible(trained, leak, victim, kind)
  images, timing = invert(trained, leak)
  b = trained.setup.leak.batch_size
  labels, source = _labels(leak, victim, fields["labels"], b)
  info = dict(timing, inverter_dir=trained.workdir,
              inverter_step=trained.step, label_source=source,
              param_discrepancy=_discrepancy(trained, leak))
  return Reconstruction(images=images, labels=labels, info=info)


def attack(leak, victim, config, key) -> Reconstruction:
  """GIT: one forward pass of the trained generative inverter."""
  del key
  return _run(leak, victim, config, "git")


def attack_lti(leak, victim, config, key) -> Reconstruction:
  """Learning to Invert: one forward pass of the trained MLP inverter."""
  del key
  return _run(leak, victim, config, "lti")


def attack_with_matching(leak, victim, config, key) -> Reconstruction:
  """GIT + IG: gradient matching started from (and near) GIT's output
  (``gradient_matching.refine``)."""
  extra = (tuple(matching.Settings._fields)
           + tuple(gradient_matching.REFINE_FIELDS))
  fields, rest = _fields(config, GIT_FIELDS, extra)
  start = _invert_leak(leak, victim, fields, "git")
  res = gradient_matching.refine(leak, victim, start, rest, key)
  info = dict(res.info, git=start.info,
              proximity=float(rest.get("proximity", 0.0)),
              label_source=start.info["label_source"])
  return Reconstruction(images=res.images, labels=start.labels, info=info)


def _sigma(leak, sigma, sigma_clean=None) -> float:
  found = [float(dict(d)["sigma"]) for d in leak.defense
           if dict(d).get("name") == "gaussian"]
  if sigma == "auto" and sigma_clean is not None and not found:
    sigma = sigma_clean
  if sigma != "auto":
    if not isinstance(sigma, (int, float)) or not sigma > 0:
      raise ValueError(f"git_posterior sigma must be 'auto' or > 0; got "
                       f"{sigma!r}")
    return float(sigma)
  if len(found) != 1:
    raise ValueError("git_posterior sigma='auto' needs a leak with one "
                     f"Gaussian noise defense; it has {list(leak.defense)}: "
                     "set attack.sigma or attack.sigma_clean")
  return found[0]


@functools.partial(jax.jit, static_argnums=(0, 6))
def _nearest_label(client, x, observed, params, state, arrays, num_classes):
  """[1] the class whose message at ``x`` (one image) is nearest
  ``observed`` in squared L2."""
  def distance(c):
    m = client.message(params, state, x, c[None], arrays)
    return sum(jnp.sum(jnp.square(a - b)) for a, b in
               zip(jax.tree.leaves(m), jax.tree.leaves(observed)))
  return jnp.argmin(jax.vmap(distance)(jnp.arange(num_classes)))[None]


@functools.partial(jax.jit, static_argnums=(0, 1))
def _posterior_step(client, iterations, x01, observed, params, state, labels,
                    arrays, mean, std, sigma, prior):
  """``posterior.step`` on the client model's message of [0, 1] images
  (jitted: the client model and the iteration count are static)."""
  def message(x):
    return client.message(params, state, (x - mean) / std, labels, arrays)
  x, info = posterior.step(message, x01, observed, sigma, prior,
                           iterations=iterations)
  return x, info["residual"]


def attack_with_posterior(leak, victim, config, key) -> Reconstruction:
  """GIT + Gauss-Newton steps toward the posterior mode under the leak's
  Gaussian noise and a Gaussian image prior (``posterior.step``)."""
  del key
  fields, _ = _fields(config, POSTERIOR_FIELDS)
  sigma = _sigma(leak, fields["sigma"], fields["sigma_clean"])
  if not fields["prior"]:
    raise ValueError("git_posterior needs attack.prior: a Gaussian image "
                     "prior (a shipped name or a gaussian_prior .npz)")
  prior = gaussian_prior.load(fields["prior"])
  start = _invert_leak(leak, victim, fields, "git")
  mean, std = jnp.asarray(leak.mean), jnp.asarray(leak.std)
  # Plain autodiff of the message: the step needs its jvp and transpose
  # ("forward" is a custom_vjp, which has no jvp).
  client, arrays = client_model.from_leak(leak, victim,
                                          second_order="reverse")
  labels, source = jnp.asarray(start.labels), start.info["label_source"]
  if (fields["label_search"] and labels.shape[0] == 1 and source != "shared"
      and victim.loss != "squared"):  # Classes only.
    labels = _nearest_label(client, start.images, leak.message, leak.params,
                            leak.state, arrays, leak.num_classes)
    source = "search"
  x = start.images * std + mean  # [0, 1] pixels, the leak's box.
  residuals = []
  for _ in range(int(fields["steps"])):
    x, residual = _posterior_step(
        client, int(fields["cg_iterations"]), x, leak.message, leak.params,
        leak.state, labels, arrays, mean, std, sigma, prior)
    x = jnp.clip(x, 0.0, 1.0)
    residuals.append(float(residual))
  info = dict(start.info, sigma=sigma, prior=fields["prior"],
              cg_residuals=residuals, label_source=source)
  return Reconstruction(images=(x - mean) / std, labels=labels, info=info)
