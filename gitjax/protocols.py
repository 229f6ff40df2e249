"""What a federated client computes and sends: FedSGD, FedAvg, aggregation.

All functions are pure and differentiable in the client's inputs, so attacks
on FedAvg updates unroll the very same code (``fedavg_update``).
"""

import jax
import jax.numpy as jnp

from gitjax import victim as victim_lib

Params = victim_lib.Params
PROTOCOLS = ("fedsgd", "fedavg")


def fedsgd_message(victim, params, state, xs, ys, train=False,
                   grad=victim_lib.batch_grad) -> Params:
  """FedSGD: the gradient of the mean loss of the client's batch.

  ``grad`` computes it (``victim.grad_fn``: the same values; attacks that
  differentiate the message take ``batch_grad_fr``).
  """
  return grad(victim, params, state, xs, ys, train)


def num_local_steps(batch_size: int, local_batch_size: int | None,
                    epochs: int) -> int:
  b = local_batch_size or batch_size
  if batch_size % b:
    raise ValueError(
        f"FedAvg local_batch_size {b} must divide the client's batch size "
        f"{batch_size}")
  return epochs * (batch_size // b)


MAX_UNROLLED_STEPS = 8


def fedavg_update(victim, params, state, xs, ys, *, lr: float,
                  epochs: int = 1, local_batch_size: int | None = None,
                  train: bool = False, unroll: int | bool | None = None,
                  grad=victim_lib.batch_grad) -> Params:
  """FedAvg: local SGD on the client's batch; the message is new - old params.

  Minibatches are taken in order (no shuffling) for ``epochs`` passes, so an
  attacker that knows the hyperparameters can replay the same steps.

  Args:
    victim: the model.
    params, state: the global model the server sent.
    xs: [B, ...] client images; ys: [B] labels (or [B, C] soft labels).
    lr: local SGD learning rate.
    epochs: passes over the client's data.
    local_batch_size: minibatch size; None means the full batch (one step per
      epoch).
    train: BatchNorm mode during local training.
    unroll: ``lax.scan``'s unroll for the local steps; None unrolls up to
      ``MAX_UNROLLED_STEPS`` steps fully (XLA:CPU runs convolutions inside a
      loop body several times slower; unrolled, they compile as usual).
    grad: the local gradient (see ``fedsgd_message``).

  Returns:
    The weight difference, a params-shaped tree.
  """
  n = xs.shape[0]
  b = local_batch_size or n
  steps = num_local_steps(n, b, epochs)
  xs_mb = xs.reshape((n // b, b) + xs.shape[1:])  # [S, b, ...]
  ys_mb = ys.reshape((n // b, b) + ys.shape[1:])

  def step(p, i):
    j = i % (n // b)
    g = grad(victim, p, state, xs_mb[j], ys_mb[j], train)
    return jax.tree.map(lambda a, da: a - lr * da, p, g), None

  if unroll is None:
    unroll = steps <= MAX_UNROLLED_STEPS
  new, _ = jax.lax.scan(step, params, jnp.arange(steps), unroll=unroll)
  return jax.tree.map(jnp.subtract, new, params)


def client_message(victim, params, state, xs, ys, protocol: str,
                   protocol_config: dict, grad=victim_lib.batch_grad
                   ) -> Params:
  """Dispatches on the protocol name ("fedsgd" or "fedavg")."""
  cfg = dict(protocol_config)
  train = cfg.pop("train", False)
  if protocol == "fedsgd":
    if cfg:
      raise ValueError(f"unknown fedsgd settings: {sorted(cfg)}")
    return fedsgd_message(victim, params, state, xs, ys, train, grad)
  if protocol == "fedavg":
    unknown = set(cfg) - {"lr", "epochs", "local_batch_size"}
    if unknown:
      raise ValueError(f"unknown fedavg settings: {sorted(unknown)}")
    return fedavg_update(victim, params, state, xs, ys, train=train,
                         grad=grad, **cfg)
  raise ValueError(f"unknown protocol {protocol!r}; known: {PROTOCOLS}")


def aggregate(messages: Params) -> Params:
  """Mean over a leading client axis, as secure aggregation reveals it."""
  return jax.tree.map(lambda m: jnp.mean(m, axis=0), messages)


def multi_client_message(victim, params, state, xs, ys, protocol,
                         protocol_config) -> Params:
  """Aggregate of K clients' messages; xs: [K, B, ...], ys: [K, B]."""
  fn = lambda x, y: client_message(victim, params, state, x, y, protocol,
                                   protocol_config)
  return aggregate(jax.vmap(fn)(xs, ys))


def sharded_multi_client_message(victim, params, state, xs, ys, protocol,
                                 protocol_config, mesh,
                                 axis: str = "data") -> Params:
  """``multi_client_message`` with clients spread over a device mesh.

  Each device computes the messages of its share of the K clients and the
  mean is an all-reduce (``pmean``): the per-device code *is* the federated
  semantics, so this is written with ``jax.shard_map``. K must be a multiple
  of the mesh size along ``axis``.
  """
  n_dev = mesh.shape[axis]
  if xs.shape[0] % n_dev:
    raise ValueError(f"{xs.shape[0]} clients do not split over {n_dev} "
                     f"devices on mesh axis {axis!r}")
  P = jax.sharding.PartitionSpec

  def local(p, s, x, y):  # x: [K / n_dev, B, ...]
    # Gradients with respect to a replicated (device-invariant) input are
    # summed over the mesh by shard_map's transpose rule; casting the
    # global model to device-varying keeps each client's gradient local.
    p, s = jax.tree.map(lambda a: jax.lax.pcast(a, axis, to="varying"),
                        (p, s))
    fn = lambda xi, yi: client_message(victim, p, s, xi, yi, protocol,
                                       protocol_config)
    return jax.lax.pmean(aggregate(jax.vmap(fn)(x, y)), axis)

  sharded = jax.shard_map(local, mesh=mesh,
                          in_specs=(P(), P(), P(axis), P(axis)),
                          out_specs=P())
  rep = jax.sharding.NamedSharding(mesh, P())
  shard = jax.sharding.NamedSharding(mesh, P(axis))
  params, state = jax.device_put((params, state), rep)
  xs, ys = jax.device_put((xs, ys), shard)
  return jax.jit(sharded)(params, state, xs, ys)
