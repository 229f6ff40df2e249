"""What a trained inverter is rebuilt from, and the messages it inverts.

A training config (``configs/git_lenet.py``) and the image shape and class
count of its data determine a ``Setup``: the victim and its fixed variables,
the inverter module, the training optimizer and the ``LeakSettings`` under
which training messages are made. ``init_state`` gives the layout of the
checkpointed ``TrainState``, which restoring a trained inverter needs
(``gitjax.loading``); ``make_messages`` makes the defended gradient messages
the inverter is trained and evaluated on.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gitjax import client_model
from gitjax import defenses
from gitjax import inverter as inverter_lib
from gitjax import models
from gitjax import parallel
from gitjax import victim as victim_lib

RUN_INFO = "run_info.json"  # Image shape and classes, for loading.
VICTIM_PARAMS = ("fixed", "fresh", "perturbed", "trajectory")
# "trajectory": victims drawn from snapshots of the victim trained by SGD on
# the public (training) images, at log-spaced step counts up to ``steps``.
TRAJECTORY = dict(steps=1000, snapshots=16, lr=0.01, batch=64, seed=1)
# Defenses that need the client's inputs or change the protocol cannot be
# simulated per message here.
_UNSUPPORTED_DEFENSES = ("soteria",)  # Needs each client's inputs.


class TrainState(NamedTuple):
  params: Any  # Inverter parameters.
  opt_state: Any
  step: jax.Array  # int32 [], steps done.
  rng: jax.Array  # uint32 [2], key data of the data stream.


class LeakSettings(NamedTuple):
  """How training messages are made (static inside the jitted step)."""
  batch_size: int  # B, images per message.
  defense: tuple  # Defense dicts as (name, ((key, value), ...)) tuples.
  labels_shared: bool
  victim_params: str  # One of VICTIM_PARAMS.
  perturb_scale: float
  mean: tuple
  std: tuple
  chunk_size: int | None
  trajectory: tuple = ()  # TRAJECTORY's items, with "trajectory" only.


class Setup(NamedTuple):
  """Everything a config determines, built once."""
  config: Any
  victim: victim_lib.Victim
  variables: Any  # The victim's fixed variables (victim_seed).
  inverter: Any  # Linen module.
  tx: optax.GradientTransformation
  leak: LeakSettings
  image_shape: tuple
  num_classes: int


def plain(x) -> dict:
  """A ConfigDict (or mapping) as a plain dict."""
  return x.to_dict() if hasattr(x, "to_dict") else dict(x)


def freeze_defense(spec: list[dict]) -> tuple:
  """Defense dicts as hashable (name, ((key, value), ...)) tuples."""
  return tuple((d.pop("name"), tuple(sorted(d.items()))) for d in spec)


def leak_settings(config) -> LeakSettings:
  lk = plain(config.leak)
  spec = defenses.as_list(lk.get("defense"))
  for s in spec:
    if s["name"] in _UNSUPPORTED_DEFENSES:
      raise ValueError(
          f"defense {s['name']!r} cannot be simulated in inverter training "
          f"(supported: {sorted(set(defenses.DEFENSES) - {'soteria'})})")
  vp = lk.get("victim_params", "fixed")
  if vp not in VICTIM_PARAMS:
    raise ValueError(f"unknown leak.victim_params {vp!r}; known: "
                     f"{VICTIM_PARAMS}")
  traj = _trajectory_settings(lk) if vp == "trajectory" else ()
  b = int(lk.get("batch_size", 1))
  if b < 1:
    raise ValueError(f"leak.batch_size must be >= 1; got {b}")
  d = plain(config.data)
  return LeakSettings(
      batch_size=b, defense=freeze_defense(spec),
      labels_shared=bool(lk.get("labels_shared", False)),
      victim_params=vp, perturb_scale=float(lk.get("perturb_scale", 0.0)),
      mean=tuple(d.get("mean", (0.0,))), std=tuple(d.get("std", (1.0,))),
      chunk_size=config.train.get("chunk_size"), trajectory=traj)


def _trajectory_settings(lk: dict) -> tuple:
  got = dict(lk.get("trajectory") or {})
  unknown = sorted(set(got) - set(TRAJECTORY))
  if unknown:
    raise ValueError(f"unknown leak.trajectory settings {unknown}; known: "
                     f"{sorted(TRAJECTORY)}")
  t = {**TRAJECTORY, **got}
  if int(t["steps"]) < 1 or int(t["snapshots"]) < 2 or int(t["batch"]) < 1:
    raise ValueError(f"leak.trajectory needs steps >= 1, snapshots >= 2 and "
                     f"batch >= 1; got {t}")
  return tuple(sorted(t.items()))


def trajectory_steps(leak: LeakSettings) -> list[int]:
  """The step counts of the trajectory's snapshots: 0, then log-spaced."""
  t = dict(leak.trajectory)
  pts = np.geomspace(1, int(t["steps"]), int(t["snapshots"]) - 1)
  return sorted({0, *(int(round(p)) for p in pts)})


def victim_pool(setup: Setup, images, labels):
  """The victim variables a training step draws from.

  ``setup.variables`` itself, except with "trajectory": the snapshots of
  ``trajectory_steps`` stacked on a leading axis, from SGD on ``images``
  ([0, 1]) and ``labels``.
  """
  if setup.leak.victim_params != "trajectory":
    return setup.variables
  t = dict(setup.leak.trajectory)
  snaps = victim_lib.sgd_trajectory(
      setup.victim, setup.variables, standardize(jnp.asarray(images),
                                                 setup.leak),
      jnp.asarray(labels), trajectory_steps(setup.leak), lr=float(t["lr"]),
      batch=int(t["batch"]), seed=int(t["seed"]))
  return jax.tree.map(lambda *a: jnp.stack(a), *snaps)


def make_train_optimizer(train) -> optax.GradientTransformation:
  """The inverter's optimizer: clipped AdamW, warmup and cosine decay."""
  steps = int(train["num_steps"])
  warmup = min(int(train.get("warmup_steps", 0)), max(steps - 1, 0))
  lr = optax.warmup_cosine_decay_schedule(
      0.0, train["lr"], warmup, max(steps, warmup + 1),
      end_value=train["lr"] * train.get("final_lr_fraction", 0.01))
  return optax.chain(
      optax.clip_by_global_norm(train.get("grad_clip", 1.0)),
      optax.adamw(lr, weight_decay=train.get("weight_decay", 0.0)))


def make_setup(config, image_shape, num_classes) -> Setup:
  """Builds victim, inverter and optimizer for images of ``image_shape``."""
  kw = plain(config.victim)
  name = kw.pop("name")
  victim = models.make_victim(name, input_shape=tuple(image_shape),
                              num_classes=num_classes, **kw)
  if victim.loss != "cross_entropy":
    raise ValueError(f"inverter training needs a classifier victim; "
                     f"{name!r} has a {victim.loss} loss")
  variables = victim_lib.init_variables(victim,
                                        jax.random.key(config.victim_seed))
  leak = leak_settings(config)
  inverter = inverter_lib.make_inverter(
      config.inverter, victim, image_shape, leak.batch_size)
  return Setup(config, victim, variables, inverter,
               make_train_optimizer(plain(config.train)), leak,
               tuple(image_shape), num_classes)


def make_messages(victim, variables, xs, ys, key, leak: LeakSettings,
                  num_classes: int, mesh=None):
  """Defended gradient messages of N groups of B examples.

  Args:
    victim: the model; ``variables`` its variables.
    xs: [N*B, H, W, C] images in the victim's input space; ys: [N*B] labels.
    key: defense randomness.
    leak: settings.
    num_classes: for the one-hot labels.
    mesh: shard the examples over it (None: no constraint).

  Returns:
    (messages, labels): params-shaped tree with leaves [N, ...]; labels
    [N, B, num_classes] one-hot if shared, else None.
  """
  b = leak.batch_size
  n = xs.shape[0] // b
  xs = parallel.shard_batch(xs, mesh)
  params, state = victim_lib.split(variables)
  g = parallel.per_example_grads(victim, params, state, xs, ys,
                                 leak.chunk_size, mesh)
  spec = [dict(name=name, **dict(kv)) for name, kv in leak.defense]
  g = client_model.send_from_examples(g, b, key, defense=spec)
  labels = None
  if leak.labels_shared:
    labels = jax.nn.one_hot(ys, num_classes).reshape(n, b, num_classes)
  return g, labels


def standardize(x01, leak: LeakSettings):
  """Images in [0, 1] -> the victim's input space, (x - mean) / std."""
  return (x01 - jnp.asarray(leak.mean)) / jnp.asarray(leak.std)


def init_state(setup: Setup, seed: int) -> TrainState:
  """Fresh inverter parameters and optimizer; the data key of ``seed``."""
  k_data = jax.random.fold_in(jax.random.key(seed), 0)
  # Parameter init draws from an "rbg" key: XLA compiles the inverter's many
  # initializers several times faster than with threefry. The data stream
  # keeps threefry, whose values do not depend on the sharding.
  k_init = jax.random.key(seed, impl="rbg")
  n = 1
  xs = jnp.zeros((n * setup.leak.batch_size,) + setup.image_shape)
  ys = jnp.zeros((n * setup.leak.batch_size,), jnp.int32)
  msgs, labels = jax.eval_shape(
      lambda: make_messages(setup.victim, setup.variables, xs, ys,
                            jax.random.key(0), setup.leak, setup.num_classes))
  msgs = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), msgs)
  if labels is not None:
    labels = jnp.zeros(labels.shape, labels.dtype)
  params = jax.jit(setup.inverter.init)(k_init, msgs, labels)
  return TrainState(params=params, opt_state=setup.tx.init(params),
                    step=jnp.zeros((), jnp.int32),
                    rng=jax.random.key_data(k_data))
