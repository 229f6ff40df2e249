"""A Gauss-Newton step toward the posterior mode of a noisy leak.

For a message observed as ``g(x) + N(0, sigma^2 I)`` and a Gaussian image
prior ``N(m, C)`` (``gaussian_prior``), the posterior mode minimizes

  ||g(x) - observed||^2 / (2 sigma^2) + (x - m)^T C^-1 (x - m) / 2.

Linearizing g at ``x0`` (J = dg/dx there) gives one Gauss-Newton step

  x = x0 + (J^T J / sigma^2 + C^-1)^-1 (J^T r / sigma^2 - C^-1 (x0 - m)),

r = observed - g(x0): the linear minimum-MSE estimate around ``x0``.
``step`` solves it without forming J (conjugate gradients with the
forward and transposed Jacobian products, preconditioned by C), so it
costs a few hundred Jacobian-vector products whatever the model's size.
Started at GIT's output it is ``git.attack_with_posterior``.
"""

import jax
import jax.numpy as jnp
import jax.scipy.sparse.linalg as jsla

from gitjax.gaussian_prior import GaussianPrior


def step(message_fn, x0, observed, sigma: float, prior: GaussianPrior, *,
         iterations: int = 200, tol: float = 1e-6):
  """One Gauss-Newton step from ``x0`` ([B, H, W, C] on [0, 1]).

  Args:
    message_fn: x [B, H, W, C] -> the trial message (any pytree; its
      leaves are compared with ``observed``'s).
    observed: the leaked message, shaped like ``message_fn``'s output.
    sigma: the Gaussian noise's standard deviation per entry.
    prior: one image's prior; applied to each of the B images.
    iterations, tol: conjugate gradients' limits.

  Returns:
    (x [B, H, W, C], info): ``info["residual"]``, the relative residual
    of the linear solve.
  """
  shape = x0.shape
  b, d = shape[0], x0[0].size
  if tuple(shape[1:]) != prior.image_shape:
    raise ValueError(f"posterior step: images of shape {tuple(shape[1:])} "
                     f"but the prior is for {prior.image_shape}")

  def flat_message(v):
    return jnp.concatenate([a.ravel() for a in
                            jax.tree.leaves(message_fn(v.reshape(shape)))])

  v0 = x0.reshape(-1).astype(jnp.float32)
  g0, jvp = jax.linearize(flat_message, v0)
  vjp = jax.linear_transpose(jvp, v0)
  obs = jnp.concatenate([a.ravel() for a in jax.tree.leaves(observed)])
  inv_var = 1.0 / jnp.square(sigma)
  per_image = lambda fn: lambda v: fn(v.reshape(b, d)).reshape(-1)
  precision, covariance = (per_image(prior.precision),
                           per_image(prior.covariance))

  def normal_matrix(v):
    return inv_var * vjp(jvp(v))[0] + precision(v)

  offset = v0 - jnp.tile(prior.mean.reshape(-1), b)
  rhs = inv_var * vjp(obs - g0)[0] - precision(offset)
  delta, _ = jsla.cg(normal_matrix, rhs, tol=tol, maxiter=int(iterations),
                     M=covariance)
  residual = (jnp.linalg.norm(normal_matrix(delta) - rhs)
              / jnp.maximum(jnp.linalg.norm(rhs), 1e-30))
  return (v0 + delta).reshape(shape), dict(residual=residual)
