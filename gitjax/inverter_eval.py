"""Scoring a trained inverter: matched MSE and PSNR on leaked images.

``matched_sq_errors`` is also the training loss (``train_inverter``): the B
reconstructions of a message are assigned to its B images one-to-one before
the error is taken.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from gitjax import defenses
from gitjax import inverter_setup


def matched_sq_errors(x_hat: jax.Array, x: jax.Array) -> jax.Array:
  """Mean squared error per message after the best assignment of images.

  Args:
    x_hat, x: [N, B, ...].

  Returns:
    [N] MSE of each message, with the B reconstructions assigned to the B
    images one-to-one so that the summed MSE is least. B <= 6 takes the min
    over all B! permutations inside the graph; larger B calls scipy's
    ``linear_sum_assignment`` through ``jax.pure_callback`` (the assignment
    is a constant for differentiation; the MSE of the matched pairs is
    differentiable).
  """
  n, b = x.shape[:2]
  d = x_hat.reshape(n, b, 1, -1) - x.reshape(n, 1, b, -1)
  cost = jnp.mean(jnp.square(d), -1)  # [N, B_hat, B]
  if b == 1:
    return cost[:, 0, 0]
  if b <= 6:
    perms = jnp.asarray(list(itertools.permutations(range(b))))  # [P, B]
    per = cost[:, jnp.arange(b)[None, :], perms]  # [N, P, B]
    return jnp.min(per.mean(-1), axis=-1)

  def assign(c):
    c = np.asarray(c)
    return np.stack([scipy.optimize.linear_sum_assignment(ci)[1]
                     for ci in c]).astype(np.int32)

  cols = jax.pure_callback(assign, jax.ShapeDtypeStruct((n, b), jnp.int32),
                           jax.lax.stop_gradient(cost),
                           vmap_method="sequential")
  return jnp.take_along_axis(cost, cols[..., None], -1)[..., 0].mean(-1)


def psnr_from_mse(mse) -> float:
  """Mean over messages of 10 log10(1 / MSE), images in [0, 1]."""
  return float(np.mean(10.0 * np.log10(1.0 / np.maximum(np.asarray(mse),
                                                        1e-10))))


@functools.lru_cache(maxsize=16)
def _eval_forward(inverter):
  """Jitted ``(params, msgs, labels, x) -> (mse [N], x_hat)``, cached."""

  @jax.jit
  def fwd(params, msgs, labels, x01):
    x_hat = inverter.apply(params, msgs, labels)
    return matched_sq_errors(x_hat, x01), x_hat

  return fwd


@functools.lru_cache(maxsize=16)
def _eval_messages_fn(victim, leak, num_classes):
  return jax.jit(functools.partial(inverter_setup.make_messages, victim,
                                   leak=leak, num_classes=num_classes))


def make_eval_fn(setup: inverter_setup.Setup, chunk: int = 64):
  """``(params, messages, labels, images) -> (mse [N], x_hat)`` in chunks."""
  fwd = _eval_forward(setup.inverter)

  def evaluate_chunks(params, msgs, labels, x01):
    n = x01.shape[0]
    errs, outs = [], []
    for i in range(0, n, chunk):
      sl = lambda t: t[i:i + chunk]  # pylint: disable=cell-var-from-loop
      e, o = fwd(params, jax.tree.map(sl, msgs),
                 None if labels is None else sl(labels), sl(x01))
      errs.append(e)
      outs.append(o)
    return jnp.concatenate(errs), jnp.concatenate(outs)

  return evaluate_chunks


def eval_messages(setup: inverter_setup.Setup, x01, ys, seed: int,
                  variables=None):
  """Defended messages of the evaluation images at the fixed victim.

  Args:
    setup: the run; x01 [N*B, H, W, C] in [0, 1]; ys [N*B].
    seed: defense randomness.
    variables: the victim's variables (default: the fixed ones).
  """
  variables = setup.variables if variables is None else variables
  fn = _eval_messages_fn(setup.victim, setup.leak, setup.num_classes)
  return fn(variables, inverter_setup.standardize(jnp.asarray(x01),
                                                  setup.leak),
            jnp.asarray(ys), jax.random.key(seed))


def with_defense(setup: inverter_setup.Setup, defense
                 ) -> inverter_setup.Setup:
  """The setup with another simulated defense (a config or list of them)."""
  frozen = inverter_setup.freeze_defense(defenses.as_list(defense))
  return setup._replace(leak=setup.leak._replace(defense=frozen))


def evaluate(trained, x01, ys, *, defense="training", variables=None,
             seed: int = 0, chunk: int = 64) -> dict:
  """Scores a trained inverter on leaks of the images ``x01``.

  Args:
    trained: ``gitjax.loading.inverter(workdir)``'s result.
    x01: [N*B, H, W, C] images in [0, 1]; ys: [N*B] labels.
    defense: "training" (the defense simulated in training) or a defense
      config (None or [] for none).
    variables: the victim's variables at which the leaks are computed
      (default: the training ones), e.g. a victim trained further.
    seed: the defense's randomness.
    chunk: messages per forward pass.

  Returns:
    dict with "mse" [N] (per message, after matching), "x_hat" [N, B, H,
    W, C] and "x" [N, B, H, W, C].
  """
  setup = trained.setup
  if defense != "training":
    setup = with_defense(setup, defense)
  msgs, labels = eval_messages(setup, x01, ys, seed, variables)
  b = setup.leak.batch_size
  x = jnp.asarray(x01).reshape((-1, b) + tuple(x01.shape[1:]))
  mse, x_hat = make_eval_fn(setup, chunk)(trained.params, msgs, labels, x)
  return dict(mse=np.asarray(mse), x_hat=np.asarray(x_hat), x=np.asarray(x))
