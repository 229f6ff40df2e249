"""Refinements of the tensor attack's estimate by fitting g = dL/da directly.

The moment estimate has an O(sqrt(d / m)) error; g itself is an exact,
noiseless function of the unknowns: g_j = sum_i rho_i act(w_j . x_i). With
m >> N (d + 1) equations, least squares from the moment estimate removes
that error: ``fit_amplitudes`` over the 2N norms and weights (directions
fixed), ``match`` (L-BFGS) over all of (x, rho). ``relative_residual``
scores how well a recovery explains g.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import optimize

from gitjax.models import common


@functools.partial(jax.jit, static_argnames=("act_name",))
def relative_residual(w, g, x, rho, act_name):
  """||g - act(X W)^T rho|| / ||g||: how well a recovery explains g."""
  pred = common.activation(act_name)(x @ w).T @ rho
  return jnp.linalg.norm(pred - g) / jnp.linalg.norm(g)


@functools.partial(jax.jit, static_argnames=("act_name", "steps"))
def match(w, g, p0, act_name, steps, tol=1e-12):
  """L-BFGS on ||g - act(X W)^T rho||^2 / ||g||^2 over p = {x, rho}.

  Stops after ``steps`` or when the loss falls below ``tol``. Returns
  (p, start loss, final loss, steps taken).
  """
  act = common.activation(act_name)
  opt = optax.lbfgs()

  def loss(p):
    pred = act(p["x"] @ w).T @ p["rho"]  # [m]
    return jnp.sum(jnp.square(pred - g)) / jnp.sum(jnp.square(g))

  vg = optax.value_and_grad_from_state(loss)

  def step(carry):
    p, state, _, i = carry
    value, grad = vg(p, state=state)
    upd, state = opt.update(grad, state, p, value=value, grad=grad,
                            value_fn=loss)
    return optax.apply_updates(p, upd), state, value, i + 1

  def cont(carry):
    return (carry[3] < steps) & (carry[2] > tol)

  loss0 = loss(p0)
  p, _, _, i = jax.lax.while_loop(cont, step, (p0, opt.init(p0), loss0, 0))
  return p, loss0, loss(p), i


@functools.partial(jax.jit, static_argnames=("act_name",))
def _act_and_slope(z, act_name):
  """act(z) and act'(z), elementwise."""
  act = common.activation(act_name)
  return act(z), jax.vmap(jax.grad(act))(z.ravel()).reshape(z.shape)


def fit_amplitudes(w, g, dirs, activation, a0, rho0):
  """Least squares on g over signed norms a [N] and weights rho [N].

  With the directions fixed, g ~ sum_i rho_i act(a_i w_j . xhat_i) has only
  2N unknowns and m equations; Levenberg-Marquardt from the moment-ratio
  estimate (a0, rho0) uses all of g instead of two noisy moment
  coefficients. For t^3 + t^2 the problem is even linear in (rho a^3,
  rho a^2). Returns (a, rho, relative residual).
  """
  t = np.asarray(jnp.asarray(dirs, w.dtype) @ w, np.float64)  # [N, m]
  gn = np.asarray(g, np.float64)
  scale = np.linalg.norm(gn)

  def parts(p):
    a, rho = np.split(p, 2)
    f, df = _act_and_slope(jnp.asarray(a[:, None] * t, jnp.float32),
                           activation)
    return np.asarray(f, np.float64), np.asarray(df, np.float64), rho

  def resid(p):
    f, _, rho = parts(p)
    return (rho @ f - gn) / scale

  def jac(p):
    f, df, rho = parts(p)
    return np.concatenate([(rho[:, None] * df * t).T, f.T], axis=1) / scale

  sol = optimize.least_squares(resid, np.concatenate([a0, rho0]), jac=jac,
                               method="lm", max_nfev=100)
  a, rho = np.split(sol.x, 2)
  return a, rho, float(np.linalg.norm(sol.fun))
