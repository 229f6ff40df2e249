"""DLG, Inverting Gradients and generic gradient matching on a ``Leak``.

Each is ``fn(leak, victim, config, key) -> Reconstruction`` and a set of
defaults for the engine in ``gitjax.attacks.matching``; ``config`` may
override any ``matching.Settings`` field plus the attack fields below.

* ``dlg`` (Zhu et al. 2019): squared-L2 gradient distance, L-BFGS (lr 1,
  zoom line search, history 100 as torch's default that DLG used), no box,
  labels optimized jointly as softmax(logits) unless the client shares them
  (``labels="auto"`` reads them off the gradient instead: iDLG). One of our
  iterations is one L-BFGS step; DLG's 300 torch steps ran up to 20 each, so
  the default is 3,000.
* ``inverting_gradients`` (Geiping et al. 2020; breaching's
  ``invertinggradients.yaml``): one cosine over all tensors, Adam lr 0.1 on
  signed gradients, step decay x0.1 at 3/8, 5/8, 7/8, box constraint, total
  variation, ``randn`` init, labels from the gradient (iDLG for one image,
  LLG-style counts for a batch). 4,000 iterations by default (the
  invertinggradients notebook; breaching uses 24,000).
Both take every ``matching.Settings`` field from the config, so either is
generic gradient matching with other defaults (the registry's
"gradient_matching" is ``inverting_gradients``).

Attack fields (besides ``name`` and the engine's ``Settings``):
  init: "randn" (N(0, 1) in victim space), "rand" (uniform in the pixel box),
    "zeros", or "half" (mid-gray).
  labels: "auto" (shared labels if the leak has them, else inferred with
    ``labels.from_leak``'s "auto"), "joint" (optimized with the images,
    unless shared), or an inference method: "idlg", "bias_corrected", "llg".
  batch_size: examples per client when the leak does not tell it.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gitjax import leak as leak_lib
from gitjax.attacks import labels as labels_lib
from gitjax.attacks import matching
from gitjax.attacks import matching_many
from gitjax.attacks import Reconstruction

INITS = ("randn", "rand", "zeros", "half")
LABEL_MODES = ("auto", "joint") + labels_lib.METHODS[1:]
ATTACK_FIELDS = dict(init="randn", labels="auto", batch_size=None)

IG_DEFAULTS = dict(
    objective="cosine", optimizer="adam", lr=0.1, signed=True,
    schedule="step", iterations=4000, restarts=1, box=True, tv=1e-4,
    init="randn", labels="auto")
DLG_DEFAULTS = dict(
    objective="l2", optimizer="lbfgs", lr=1.0, signed=False,
    schedule="constant", iterations=3000, restarts=1, box=False, tv=0.0,
    lbfgs_memory=100, init="randn", labels="joint")
# Refining another attack's reconstruction (``refine``): IG's settings with
# a 10x smaller step. Signed Adam at IG's lr 0.1 moves every pixel by ~0.1
# per step and erases a good start within a few steps (measured from GIT's
# images on CIFAR-10 / LeNet: 12.4 dB after 250 steps from a 22.6 dB start
# at lr 0.1, 25.7 dB at lr 0.01).
REFINE_DEFAULTS = dict(
    {k: v for k, v in IG_DEFAULTS.items() if k not in ("init", "labels")},
    lr=0.01)
# jitter: restarts after the first start from the images plus N(0, jitter^2);
# proximity: the weight of mean((x - start)^2) in the objective.
REFINE_FIELDS = dict(proximity=0.0, jitter=0.0)


def split_config(config, defaults) -> tuple[matching.Settings, dict]:
  """Merges ``config`` over ``defaults``; returns (Settings, attack fields).

  Raises ValueError naming any key that is neither.
  """
  cfg = dict(config.to_dict() if hasattr(config, "to_dict") else
             (config or {}))
  cfg.pop("name", None)
  merged = {**ATTACK_FIELDS, **defaults, **cfg}
  unknown = set(merged) - set(ATTACK_FIELDS) - set(matching.Settings._fields)
  if unknown:
    raise ValueError(
        f"unknown attack config key(s) {sorted(unknown)}; known: "
        f"{sorted(set(ATTACK_FIELDS) | set(matching.Settings._fields))}")
  fields = {k: merged.pop(k) for k in ATTACK_FIELDS}
  if fields["init"] not in INITS:
    raise ValueError(f"unknown init {fields['init']!r}; known: {INITS}")
  if fields["labels"] not in LABEL_MODES:
    raise ValueError(f"unknown labels mode {fields['labels']!r}; known: "
                     f"{LABEL_MODES}")
  return matching.make_settings(merged), fields


def refine_settings(config) -> tuple[matching.Settings, dict]:
  """(Settings over ``REFINE_DEFAULTS``, ``REFINE_FIELDS``) of a ``refine``
  block; raises ValueError naming unknown keys."""
  cfg = dict(config.to_dict() if hasattr(config, "to_dict") else
             (config or {}))
  fields = {k: cfg.pop(k, v) for k, v in REFINE_FIELDS.items()}
  unknown = set(cfg) - set(matching.Settings._fields)
  if unknown:
    raise ValueError(
        f"unknown refine config key(s) {sorted(unknown)}; known: "
        f"{sorted(set(REFINE_FIELDS) | set(matching.Settings._fields))}")
  return matching.make_settings({**REFINE_DEFAULTS, **cfg}), fields


class Proximity(NamedTuple):
  """``weight * mean((x - start)^2)``; hashable, a static jit argument."""
  weight: float

  def __call__(self, v, x, aux):
    del v
    return self.weight * jnp.mean(jnp.square(x - aux))


def refine(leak, victim, start: Reconstruction, config, key):
  """Gradient matching started from (and near) ``start``'s images, with its
  labels; ``config``: a ``refine`` block (``refine_settings``). Returns
  ``matching.run``'s result."""
  settings, fields = refine_settings(config)
  x = start.images  # [B, ...], victim space.
  noise = jax.random.normal(key, (settings.restarts,) + x.shape)
  x0 = x[None] + (noise * fields["jitter"]).at[0].set(0.0)
  x0 = jnp.clip(x0, *leak_lib.box(leak))
  prox = float(fields["proximity"])
  return matching.run(leak, victim, x0, start.labels, settings, key,
                      penalty=Proximity(prox) if prox else None, aux=x)


def initial_images(key, shape, kind: str, leak) -> jax.Array:
  """Initial trial images [R, N, ...] in victim space."""
  lo, hi = leak_lib.box(leak)
  if kind == "randn":
    return jax.random.normal(key, shape)
  if kind == "rand":
    return lo + (hi - lo) * jax.random.uniform(key, shape)
  if kind == "zeros":
    return jnp.zeros(shape)
  if kind == "half":
    return jnp.broadcast_to((lo + hi) / 2, shape)
  raise ValueError(f"unknown init {kind!r}; known: {INITS}")


def choose_labels(leak, victim, mode: str, batch_size: int):
  """Returns (labels or None for joint, description of their source)."""
  if leak.labels is not None:
    return jnp.asarray(leak.labels), "shared"
  if mode == "joint" or victim.loss == "squared":
    return None, "joint"
  method = mode
  if mode == "auto":
    method = "idlg" if batch_size * leak.num_clients == 1 else "llg"
  return labels_lib.from_leak(leak, victim, method, batch_size), method


def run_attack(leak, victim, config, key, defaults, *, penalty=None,
               on_chunk=None) -> Reconstruction:
  """Shared body of the attacks: labels, init, engine, reconstruction.

  ``penalty`` and ``on_chunk`` go to ``matching.run`` (``data["aux"]`` starts
  as None: an ``on_chunk`` that uses the penalty's aux sets it at step 0).
  """
  settings, fields = split_config(config, defaults)
  leak_lib.validate(leak, victim)
  b = fields["batch_size"] or leak.batch_size
  if b is None:
    raise ValueError("the leak does not tell the batch size; set "
                     "attack.batch_size")
  n = int(b) * leak.num_clients
  k_init, k_lab = jax.random.split(key)
  labels, source = choose_labels(leak, victim, fields["labels"], int(b))
  if labels is not None and labels.shape[0] != n:
    raise ValueError(f"{labels.shape[0]} labels for {n} images")
  shape = (settings.restarts, n) + tuple(victim.input_shape)
  x0 = initial_images(k_init, shape, fields["init"], leak)
  res = matching.run(leak, victim, x0, labels, settings, k_lab,
                     penalty=penalty, on_chunk=on_chunk)
  out = res.labels
  if labels is None and victim.loss != "squared":
    out = jnp.argmax(res.labels, axis=-1).astype(jnp.int32)
  info = dict(res.info, label_source=source,
              labels=[float(v) if victim.loss == "squared" else int(v)
                      for v in jnp.ravel(out)])
  return Reconstruction(images=res.images, labels=out, info=info)


def inverting_gradients(leak, victim, config, key) -> Reconstruction:
  """Inverting Gradients (cosine, signed Adam, box, TV, step decay)."""
  return run_attack(leak, victim, config, key, IG_DEFAULTS)


def dlg(leak, victim, config, key) -> Reconstruction:
  """Deep Leakage from Gradients (L2, L-BFGS, joint soft labels)."""
  return run_attack(leak, victim, config, key, DLG_DEFAULTS)


def attack_many(leaks, victim, config, key,
                defaults=None) -> list[Reconstruction]:
  """Attacks M independent leaks of one victim in one compiled program.

  Same settings, labels and init rules as ``run_attack`` (``defaults``:
  ``IG_DEFAULTS`` or ``DLG_DEFAULTS``; IG's when None); the M x R trials run
  side by side (``matching_many.run_many``). Benchmarks use it to attack 16
  images at once.
  """
  settings, fields = split_config(config, defaults or IG_DEFAULTS)
  b = fields["batch_size"] or leaks[0].batch_size
  if b is None:
    raise ValueError("the leak does not tell the batch size; set "
                     "attack.batch_size")
  labels, sources = [], []
  for lk in leaks:
    leak_lib.validate(lk, victim)
    y, src = choose_labels(lk, victim, fields["labels"], int(b))
    labels.append(y)
    sources.append(src)
  if len(set(sources)) > 1:
    raise ValueError(f"attack_many needs one label source; got {sources}")
  n = int(b) * leaks[0].num_clients
  k_init, k_lab = jax.random.split(key)
  shape = (len(leaks), settings.restarts, n) + tuple(victim.input_shape)
  x0 = initial_images(k_init, shape, fields["init"], leaks[0])
  joint = labels[0] is None
  results = matching_many.run_many(leaks, victim, x0,
                              None if joint else jnp.stack(labels), settings,
                              k_lab)
  out = []
  for res in results:
    y = res.labels
    if joint and victim.loss != "squared":
      y = jnp.argmax(y, axis=-1).astype(jnp.int32)
    out.append(Reconstruction(images=res.images, labels=y,
                              info=dict(res.info, label_source=sources[0])))
  return out
