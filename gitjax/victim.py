"""Victim models behind pure functions, and their losses and gradients.

A victim's variables are an explicit pytree ``{"params": ..., **state}``, where
state holds BatchNorm statistics when the model has them. Gradients are always
taken with respect to ``variables["params"]`` only; the client message has the
structure of the params tree.

Every classification victim ends in a Dense layer named ``head`` (kernel
``[F, C]``, bias ``[C]``); label inference and Soteria rely on that name.
"""

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

Params = Any
Variables = dict


class Victim(NamedTuple):
  """A victim model as pure functions.

  Attributes:
    name: registry name of the model ("lenet", "resnet18", ...).
    config: the keyword arguments that built it (JSON-able).
    init: ``(key, x[B, ...]) -> variables``.
    apply: ``(variables, x[B, ...], train=False) -> logits[B, C]`` (``[B]`` for
      a scalar-output regression victim). With ``train=True`` BatchNorm uses
      the batch's statistics; running statistics are never updated here.
    features: ``(variables, x[B, ...], train=False) -> [B, F]``, the input of
      the last layer (``head``), or None when the model has no such layer.
    loss: "cross_entropy" or "squared".
    input_shape: shape of one example, e.g. ``(32, 32, 3)``.
    num_classes: number of logits (1 for a scalar regression output).
  """
  name: str
  config: dict
  init: Callable[..., Variables]
  apply: Callable[..., jax.Array]
  features: Callable[..., jax.Array] | None
  loss: str
  input_shape: tuple
  num_classes: int

  def __hash__(self):  # So that a Victim can be a static jit argument.
    return hash((self.name, self.loss, self.input_shape, self.num_classes,
                 self.init, self.apply))


def split(variables: Variables) -> tuple[Params, dict]:
  """Splits variables into (params, state)."""
  state = {k: v for k, v in variables.items() if k != "params"}
  return variables["params"], state


def merge(params: Params, state: dict) -> Variables:
  return {"params": params, **state}


def loss_values(victim: Victim, logits: jax.Array, ys: jax.Array) -> jax.Array:
  """Per-example losses [B].

  ``ys`` are integer labels [B], or soft labels / probabilities [B, C] (used
  by attacks that optimize labels jointly), or regression targets [B].
  """
  if victim.loss == "squared":
    return 0.5 * jnp.square(logits.reshape(ys.shape) - ys)
  if ys.ndim == logits.ndim:  # Soft labels.
    return optax.softmax_cross_entropy(logits, ys)
  return optax.softmax_cross_entropy_with_integer_labels(logits, ys)


def batch_loss(victim: Victim, params: Params, state: dict, xs: jax.Array,
               ys: jax.Array, train: bool = False) -> jax.Array:
  """Mean loss over a batch; the FedSGD client's objective."""
  logits = victim.apply(merge(params, state), xs, train=train)
  return jnp.mean(loss_values(victim, logits, ys))


@functools.partial(jax.jit, static_argnames=("victim", "train"))
def batch_grad(victim: Victim, params: Params, state: dict, xs: jax.Array,
               ys: jax.Array, train: bool = False) -> Params:
  """Gradient of the mean batch loss with respect to params.

  Jitted (inlined where it is called under jit): called eagerly, it would
  compile one program per op of the model and of its backward pass.
  """
  return jax.grad(batch_loss, argnums=1)(victim, params, state, xs, ys, train)


def _param_grad(victim, train, params, state, xs, ys):
  return batch_grad(victim, params, state, xs, ys, train)


_param_grad_fr = jax.custom_vjp(_param_grad, nondiff_argnums=(0, 1))
_Primal = jax.custom_derivatives.CustomVJPPrimal
_Zero = jax.custom_derivatives.SymbolicZero


def _fr_fwd(victim, train, *args):
  is_primal = lambda a: isinstance(a, _Primal)
  values = [jax.tree.map(lambda a: a.value, t, is_leaf=is_primal)
            for t in args]
  wanted = [i for i, t in enumerate(args)
            if any(a.perturbed for a in jax.tree.leaves(t, is_leaf=is_primal))]
  # The wanted argument numbers ride in the residual's structure (static).
  return _param_grad(victim, train, *values), (values, dict.fromkeys(wanted))


def _fr_bwd(victim, train, res, v):
  values, wanted = res
  params = values[0]
  is_zero = lambda t: isinstance(t, _Zero)
  v = jax.tree.map(lambda t, p: jnp.zeros_like(p) if is_zero(t) else t,
                   v, params, is_leaf=is_zero)
  argnums = sorted(wanted)
  out = [None] * len(values)
  if argnums:
    # d/dz <grad_params L, v> = d/de grad_z L(params + e v): a jvp of the
    # input gradient along v (mixed partials commute).
    grad_z = jax.grad(batch_loss, argnums=tuple(1 + i for i in argnums))
    _, tangents = jax.jvp(
        lambda p: grad_z(victim, p, *values[1:], train), (params,), (v,))
    for i, t in zip(argnums, tangents):
      out[i] = t
  return tuple(out)


_param_grad_fr.defvjp(_fr_fwd, _fr_bwd, symbolic_zeros=True)


@functools.partial(jax.jit, static_argnames=("victim", "train"))
def batch_grad_fr(victim: Victim, params: Params, state: dict, xs: jax.Array,
                  ys: jax.Array, train: bool = False) -> Params:
  """``batch_grad``, whose own reverse-mode derivative is forward-over-reverse.

  Attacks differentiate the gradient with respect to the inputs. Reverse
  over reverse backpropagates through the backward pass; here the
  derivative of ``<grad, v>`` with respect to any perturbed argument (xs,
  soft ys, params, state) is one jvp of that argument's gradient along
  ``v`` instead, and unperturbed arguments cost nothing. Same values, same
  derivatives (to rounding); no forward-mode (``jax.jvp``) through it.
  """
  return _param_grad_fr(victim, train, params, state, xs, ys)


SECOND_ORDER = ("forward", "reverse")


def grad_fn(second_order: str = "forward") -> Callable:
  """``batch_grad_fr`` ("forward": forward-over-reverse derivatives) or
  ``batch_grad`` ("reverse": reverse over reverse)."""
  if second_order not in SECOND_ORDER:
    raise ValueError(f"unknown second_order {second_order!r}; known: "
                     f"{SECOND_ORDER}")
  return batch_grad_fr if second_order == "forward" else batch_grad


def _example_loss(victim, params, state, x, y):
  return batch_loss(victim, params, state, x[None], y[None], train=False)


@functools.partial(jax.jit, static_argnames=("victim", "chunk_size"))
def per_example_grads(victim: Victim, params: Params, state: dict,
                      xs: jax.Array, ys: jax.Array,
                      chunk_size: int | None = None) -> Params:
  """Per-example gradients, a params-shaped tree with a leading [B] axis.

  Each example goes through the model alone (BatchNorm in eval mode), as
  DP-SGD and per-example attacks require. ``chunk_size`` bounds memory: the
  batch is vmapped in chunks of that size under ``lax.map``, so a batch of
  1024 through ResNet-18 needs the activation memory of one chunk only.
  Jitted, like ``batch_grad``.
  """
  grad_one = jax.grad(functools.partial(_example_loss, victim), argnums=0)
  vgrad = jax.vmap(grad_one, in_axes=(None, None, 0, 0))
  n = xs.shape[0]
  if chunk_size is None or chunk_size >= n:
    return vgrad(params, state, xs, ys)
  if n % chunk_size:
    raise ValueError(
        f"batch size {n} is not a multiple of chunk_size {chunk_size}")
  xs_c = xs.reshape((n // chunk_size, chunk_size) + xs.shape[1:])
  ys_c = ys.reshape((n // chunk_size, chunk_size) + ys.shape[1:])
  out = jax.lax.map(lambda c: vgrad(params, state, c[0], c[1]), (xs_c, ys_c))
  return jax.tree.map(lambda g: g.reshape((n,) + g.shape[2:]), out)


@functools.partial(jax.jit, static_argnums=0)
def init_variables(victim: Victim, key: jax.Array) -> Variables:
  """Initializes a victim on a dummy batch of one example.

  Jitted: run eagerly, a model's init compiles one program per layer op
  (seconds for a ResNet on CPU); as one program it compiles once per model.
  """
  return victim.init(key, jnp.zeros((1,) + tuple(victim.input_shape)))


def check_message(params: Params, message: Params, what: str = "message"):
  """Raises ValueError if ``message`` does not match the params tree.

  Checks tree structure, every leaf's shape, and finiteness; the error names
  the first offending parameter path.
  """
  p_flat, p_def = jax.tree_util.tree_flatten_with_path(params)
  m_flat, m_def = jax.tree_util.tree_flatten_with_path(message)
  if p_def != m_def:
    p_paths = {jax.tree_util.keystr(k) for k, _ in p_flat}
    m_paths = {jax.tree_util.keystr(k) for k, _ in m_flat}
    raise ValueError(
        f"{what} does not match the model's parameter tree: missing "
        f"{sorted(p_paths - m_paths)[:5]}, unexpected "
        f"{sorted(m_paths - p_paths)[:5]}")
  for (path, p), (_, m) in zip(p_flat, m_flat):
    if tuple(p.shape) != tuple(m.shape):
      raise ValueError(
          f"{what} has shape {tuple(m.shape)} at "
          f"{jax.tree_util.keystr(path)}, but the model's parameter there has "
          f"shape {tuple(p.shape)}")
  for path, m in m_flat:
    if not bool(jnp.all(jnp.isfinite(m))):
      raise ValueError(
          f"{what} contains NaN or Inf at {jax.tree_util.keystr(path)}")


def check_images(victim: Victim, xs: jax.Array, what: str = "images"):
  """Raises ValueError unless ``xs`` is a [B, *input_shape] batch."""
  if tuple(xs.shape[1:]) != tuple(victim.input_shape) or xs.ndim < 2:
    raise ValueError(
        f"{what} have shape {tuple(xs.shape)}; victim {victim.name!r} expects "
        f"[B, {', '.join(map(str, victim.input_shape))}]")


def calibrate_batch_stats(victim: Victim, variables: Variables,
                          xs: jax.Array) -> Variables:
  """``variables`` with BatchNorm running statistics measured on ``xs``.

  A fresh init has running means 0 and variances 1, which no real model
  has; a server that trained its model has statistics of its data. This
  runs ``xs`` through the model in training mode (each BatchNorm normalizes
  with the batch's statistics, as during training) and stores each layer's
  batch mean and variance as its running statistics: the fixed point of
  the running averages on this data. Parameters are unchanged.
  """
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  if "batch_stats" not in variables:
    raise ValueError(f"victim {victim.name!r} has no BatchNorm statistics "
                     "to calibrate")

  @jax.jit
  def measure(variables, xs):  # One program, not one per layer op.
    stats = {}

    def record(next_fun, args, kwargs, context):
      mod = context.module
      if isinstance(mod, nn.BatchNorm) and context.method_name == "__call__":
        h = args[0]
        axes = tuple(range(h.ndim - 1))
        stats[tuple(mod.scope.path)] = (jnp.mean(h, axes), jnp.var(h, axes))
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
      victim.apply(variables, xs, train=True)
    return stats

  stats = measure(variables, xs)
  flat = jax.tree_util.tree_flatten_with_path(variables["batch_stats"])[0]
  new = {}
  for path, leaf in flat:
    keys = tuple(str(getattr(p, "key", p)) for p in path)
    mean, var = stats[keys[:-1]]
    new[keys] = mean if keys[-1] == "mean" else var
    if new[keys].shape != leaf.shape:
      raise ValueError(f"BatchNorm statistics {keys} of shape "
                       f"{new[keys].shape}; expected {leaf.shape}")
  batch_stats = jax.tree_util.tree_map_with_path(
      lambda p, _: new[tuple(str(getattr(k, "key", k)) for k in p)],
      variables["batch_stats"])
  return {**variables, "batch_stats": batch_stats}


def sgd_trajectory(victim: Victim, variables: Variables, xs: jax.Array,
                   ys: jax.Array, keep, *, lr: float = 0.01, batch: int = 64,
                   seed: int = 0) -> list[Variables]:
  """The victim's variables after each count in ``keep`` of SGD steps.

  A server's model between rounds: plain SGD at ``lr`` on the mean loss of
  ``batch`` examples of ``(xs, ys)`` (the victim's input space) drawn with
  replacement, step i's from ``fold_in(key(seed), i)``; BatchNorm runs in
  eval mode and its statistics stay. ``keep`` lists step counts (0 is
  ``variables`` itself); the result has one variables tree per entry.
  """
  keep = [int(k) for k in keep]
  if not keep or min(keep) < 0:
    raise ValueError(f"sgd_trajectory needs step counts >= 0; got {keep}")
  if batch < 1 or xs.shape[0] != ys.shape[0] or xs.shape[0] == 0:
    raise ValueError(f"sgd_trajectory needs a batch >= 1 and as many "
                     f"labels as images; got batch {batch}, "
                     f"{xs.shape[0]} images, {ys.shape[0]} labels")
  params, state = split(variables)
  tx = optax.sgd(lr)
  xs, ys = jnp.asarray(xs), jnp.asarray(ys)

  @jax.jit  # The data are arguments, not constants in the program.
  def step(params, opt, i, xs, ys):
    idx = jax.random.randint(jax.random.fold_in(jax.random.key(seed), i),
                             (batch,), 0, xs.shape[0])
    g = batch_grad(victim, params, state, xs[idx], ys[idx])
    updates, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, updates), opt

  opt, found = tx.init(params), {}
  for i in range(max(keep) + 1):
    if i in keep:
      found[i] = merge(params, state)
    if i < max(keep):
      params, opt = step(params, opt, i, xs, ys)
  return [found[k] for k in keep]
