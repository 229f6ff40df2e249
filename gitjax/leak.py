"""Leak simulation: what the attacker sees, kept apart from the ground truth.

``simulate`` plays one federated round: each client computes its message
(FedSGD gradient, FedAvg weight difference, or a DP-SGD gradient) on its
private batch, applies its defense, and sends it (``client_model.send``). The attacker receives a
``Leak``; the private batch stays in ``GroundTruth`` and is used only for
scoring, as breaching separates the server payload from the user data.
"""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import client_model
from gitjax import defenses
from gitjax import protocols
from gitjax import static
from gitjax import victim as victim_lib


@dataclasses.dataclass(frozen=True)
class Leak:
  """Everything the attacking server holds after one round.

  Attributes:
    model: victim model name; ``model_config`` its config (the attacker
      rebuilds the victim with ``models.make_victim(model, **model_config)``).
    variables: the parameters (and BatchNorm statistics) the attacker holds;
      these differ from the client's under parameter discrepancy.
    message: the client's message, a params-shaped tree.
    protocol: "fedsgd" or "fedavg"; ``protocol_config`` its hyperparameters
      (lr, epochs, local_batch_size, train).
    batch_size: examples per client (None if the server is not told).
    labels: [B] labels if the client shares them, else None.
    defense: the defense config as the attacker knows it ([] if none or
      unknown).
    input_shape: shape of one example; ``num_classes``: number of outputs.
    num_clients: how many clients' messages were averaged.
    mean, std: the per-channel normalization the victim's inputs went
      through (x_victim = (x01 - mean) / std); attacks use it for the box
      [(0 - mean) / std, (1 - mean) / std] and to map results back to [0, 1].
  """
  model: str
  model_config: dict
  variables: Any
  message: Any
  protocol: str
  protocol_config: dict
  batch_size: int | None
  labels: jax.Array | None
  defense: list
  input_shape: tuple
  num_classes: int
  num_clients: int = 1
  mean: tuple = (0.0,)
  std: tuple = (1.0,)

  @property
  def params(self):
    return self.variables["params"]

  @property
  def state(self):
    return victim_lib.split(self.variables)[1]


@dataclasses.dataclass(frozen=True)
class GroundTruth:
  """The client's private data: never shown to attacks, used for scoring."""
  images: jax.Array  # [K*B, ...]
  labels: jax.Array  # [K*B]
  client_variables: Any


def discrepant_variables(victim, variables, xs, ys, key, spec):
  """The client's parameters when they differ from the attacker's.

  spec: None, ``dict(kind="stale", steps=k, lr=...)`` (the client trained k
  more SGD steps on its own batch since the attacker's copy), or
  ``dict(kind="perturbed", scale=s)`` (relative Gaussian noise:
  p * (1 + s * N(0, 1))).
  """
  if not spec:
    return variables
  spec = dict(spec)
  kind = spec.pop("kind", None)
  params, state = victim_lib.split(variables)
  if kind == "stale":
    lr, steps = spec.pop("lr", 0.01), spec.pop("steps")
    for _ in range(int(steps)):
      g = victim_lib.batch_grad(victim, params, state, xs, ys)
      params = jax.tree.map(lambda p, d: p - lr * d, params, g)
  elif kind == "perturbed":
    scale = spec.pop("scale")
    noise = defenses.gaussian_noise(jax.tree.map(jnp.zeros_like, params),
                                    key, sigma=1.0)
    params = jax.tree.map(lambda p, n: p * (1 + scale * n), params, noise)
  else:
    raise ValueError(
        f"unknown discrepancy kind {kind!r}; known: stale, perturbed")
  if spec:
    raise ValueError(f"unknown discrepancy settings: {sorted(spec)}")
  return victim_lib.merge(params, state)


def simulate(victim, variables, xs, ys, key, *, protocol="fedsgd",
             protocol_config=None, defense=None, labels_shared=False,
             defense_known=True, discrepancy=None, num_clients=1,
             tell_batch_size=True, chunk_size=None, mean=(0.0,), std=(1.0,)):
  """Plays one round and returns (Leak, GroundTruth).

  Args:
    victim: the model; ``variables`` the global model the server holds.
    xs: [K*B, ...] private images of all clients; ys: [K*B] labels.
    key: randomness of the defense and of parameter perturbation.
    protocol, protocol_config: see ``protocols.client_message``.
    defense: a defense config (``defenses.apply``), e.g.
      ``dict(name="gaussian", sigma=0.1)`` or a list; ``dp_sgd`` takes
      clip_norm and noise_multiplier and needs protocol "fedsgd".
    labels_shared: whether the client sends its labels.
    defense_known: whether the attacker is told the defense.
    discrepancy: see ``discrepant_variables``.
    num_clients: K; the message is the mean of the K clients' messages.
    tell_batch_size: whether the attacker is told B.
    chunk_size: per-example gradient chunk (DP-SGD).
    mean, std: the normalization already applied to ``xs`` (recorded only).
  """
  victim_lib.check_images(victim, xs)
  if xs.shape[0] != ys.shape[0]:
    raise ValueError(f"{xs.shape[0]} images but {ys.shape[0]} labels")
  if xs.shape[0] % num_clients:
    raise ValueError(f"{xs.shape[0]} examples do not split into "
                     f"{num_clients} clients")
  protocol_config = dict(protocol_config or {})
  k_disc, k_def = jax.random.split(key)
  client_vars = discrepant_variables(victim, variables, xs, ys, k_disc,
                                     discrepancy)
  spec = defenses.as_list(defense)
  b = xs.shape[0] // num_clients
  xs_k = xs.reshape((num_clients, b) + xs.shape[1:])
  ys_k = ys.reshape((num_clients, b) + ys.shape[1:])
  keys = jax.random.split(k_def, num_clients)

  settings = dict(victim=victim, protocol=protocol,
                  protocol_config=_Static(protocol_config),
                  spec=_Static(spec), chunk_size=chunk_size)
  msgs = [_send(client_vars, xs_k[i], ys_k[i], keys[i], **settings)
          for i in range(num_clients)]
  message = protocols.aggregate(jax.tree.map(lambda *m: jnp.stack(m), *msgs))
  leak = Leak(
      model=victim.name, model_config=dict(victim.config),
      variables=variables, message=message, protocol=protocol,
      protocol_config=protocol_config,
      batch_size=b if tell_batch_size else None,
      labels=ys if labels_shared else None,
      defense=spec if defense_known else [],
      input_shape=tuple(victim.input_shape), num_classes=victim.num_classes,
      num_clients=num_clients, mean=tuple(mean), std=tuple(std))
  return leak, GroundTruth(images=xs, labels=ys, client_variables=client_vars)


class _Static(static.Keyed):
  """A JSON-like setting as a static jit argument, compared by value."""

  def __init__(self, value):
    self.value, self._key = value, client_model.freeze(value)


@functools.partial(jax.jit, static_argnames=(
    "victim", "protocol", "protocol_config", "spec", "chunk_size"))
def _send(variables, x, y, k, *, victim, protocol, protocol_config, spec,
          chunk_size):
  """One client's message as one program, compiled once per setting (a
  jit of a closure made per round recompiled it every round: 3 s each)."""
  return client_model.send(victim, variables, x, y, k, protocol=protocol,
                           protocol_config=protocol_config.value,
                           defense=spec.value, chunk_size=chunk_size)


def box(leak: Leak) -> tuple[jax.Array, jax.Array]:
  """The [0, 1] pixel box in the victim's input space, per channel."""
  mean, std = jnp.asarray(leak.mean), jnp.asarray(leak.std)
  return (0.0 - mean) / std, (1.0 - mean) / std


def to_unit_range(leak: Leak, x: jax.Array) -> jax.Array:
  """Maps victim-space inputs back to [0, 1] pixels (for scoring)."""
  return x * jnp.asarray(leak.std) + jnp.asarray(leak.mean)


def validate(leak: Leak, victim) -> None:
  """Raises ValueError if the leak's message does not fit the victim."""
  if leak.model != victim.name:
    raise ValueError(
        f"leak is from model {leak.model!r} but the victim is {victim.name!r}")
  if tuple(leak.input_shape) != tuple(victim.input_shape):
    raise ValueError(f"leak input shape {leak.input_shape} != victim's "
                     f"{victim.input_shape}")
  expected = jax.eval_shape(
      lambda: victim_lib.init_variables(victim, jax.random.key(0)))["params"]
  victim_lib.check_message(expected, leak.params, "attacker's parameters")
  victim_lib.check_message(leak.params, leak.message, "leaked message")


def message_status(leak: Leak) -> dict:
  """How much the message carries: counts of zero and non-finite entries.

  ``empty`` is True when every entry is zero or non-finite: such a message
  (e.g. pruning at rate 0.9999 zeroes every tensor) carries nothing, and any
  "reconstruction" from it is the attack's own start.
  """
  leaves = [np.asarray(l) for l in jax.tree.leaves(leak.message)]  # Host.
  total = int(sum(l.size for l in leaves))
  zeros = int(sum(int(np.sum(l == 0)) for l in leaves))
  nonfinite = int(sum(int(np.sum(~np.isfinite(l))) for l in leaves))
  return dict(entries=total, zero=zeros, nonfinite=nonfinite,
              empty=total == 0 or zeros + nonfinite == total)
