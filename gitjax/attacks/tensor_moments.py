"""Hermite moments of a two-layer network's gradient, chunked over neurons.

The victim is f(x) = sum_j a_j act(w_j . x) with w_j ~ N(0, I_d). The leaked
gradient with respect to the second layer is

  g_j = dL/da_j = sum_i rho_i act(w_j . x_i),  rho_i = (f(x_i) - y_i) / N,

and Stein's identity for Gaussian w gives, for every order k,

  E_w[g(w) He_k(w)] = sum_i rho_i kappa_k(|x_i|) xhat_i^{(x)k},
  kappa_k(s) = E_z[act(s z) He_k(z)] = s^k E_z[act^(k)(s z)],  z ~ N(0, 1),

with He_k the probabilists' Hermite tensor (He_2(w) = w w^T - I, ...). The
empirical averages over the m neurons are the attack's statistics; their
error is O(sqrt(d / m)). Everything over neurons runs in chunks under
``lax.fori_loop`` so that only a [d, chunk] slice of derived quantities is
alive at a time: d = 3072, m = 100,000 fits in a few GiB beyond w itself.
"""

import functools
import math
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial import hermite_e
from numpy.polynomial import legendre

MAX_ORDER = 5
# Gauss-Legendre on [-12, 0] and [0, 12] against the Gaussian density: exact
# to ~1e-7 for polynomials and smooth activations, and unlike Gauss-Hermite
# (error ~1/n) it does not lose accuracy at the kink of ReLU-type functions,
# which always sits at z = 0 whatever the scale s.
_HALF = 12.0
_T, _WT = legendre.leggauss(120)
_Z = np.concatenate([_HALF / 2 * (_T - 1), _HALF / 2 * (_T + 1)])
_W = (np.concatenate([_WT, _WT]) * _HALF / 2 * np.exp(-_Z**2 / 2)
      / np.sqrt(2 * np.pi))
SCALES = np.geomspace(1e-2, 1e2, 161)  # Grid of norms |x| for inversion.


def hermite_coefficients(act, scales=SCALES, max_order=MAX_ORDER):
  """kappa_k(s) = E[act(s z) He_k(z)] for k = 0..max_order: [S, K + 1].

  kappa_k(1) is mu_k = E[act^(k)(z)], the k-th Hermite coefficient (t^3 + t^2
  has mu_2 = 2, mu_3 = 6; ReLU has mu_3 = 0). Computed in float64 by
  quadrature; ``act`` is any jnp-compatible scalar function.
  """
  s = np.atleast_1d(np.asarray(scales, np.float64))
  vals = np.asarray(act(jnp.asarray(s[:, None] * _Z[None, :], jnp.float32)),
                    np.float64)  # [S, Q]
  he = np.stack([hermite_e.hermeval(_Z, np.eye(k + 1)[k])
                 for k in range(max_order + 1)])  # [K + 1, Q]
  return (vals * _W) @ he.T


def nonzero_orders(kappa, tol=1e-4):
  """[K + 1] bools: whether kappa_k(s) is non-zero (relative to the largest
  coefficient of order >= 1 at the same s) anywhere on the grid."""
  kappa = np.atleast_2d(kappa)
  ref = np.max(np.abs(kappa[:, 1:]), axis=1, keepdims=True)
  return np.any(np.abs(kappa) > tol * np.maximum(ref, 1e-30), axis=0)


def _chunked_sum(fn, w, g, chunk):
  """sum over chunks of neurons of fn(w_c [d, c], g_c [c]) (a pytree)."""
  m = w.shape[1]
  chunk = min(chunk, m)
  n, rem = divmod(m, chunk)

  def body(i, acc):
    wc = jax.lax.dynamic_slice_in_dim(w, i * chunk, chunk, axis=1)
    gc = jax.lax.dynamic_slice_in_dim(g, i * chunk, chunk)
    return jax.tree.map(jnp.add, acc, fn(wc, gc))

  zeros = jax.tree.map(jnp.zeros_like,
                       jax.eval_shape(fn, w[:, :chunk], g[:chunk]))
  acc = jax.lax.fori_loop(0, n, body, zeros)
  if rem:
    acc = jax.tree.map(jnp.add, acc, fn(w[:, n * chunk:], g[n * chunk:]))
  return acc


@functools.partial(jax.jit, static_argnames=("chunk",))
def first_moment(w, g, chunk=4096):
  """y1 = (1/m) sum_j g_j w_j  [d] -> sum_i rho_i kappa_1 xhat_i."""
  return _chunked_sum(lambda wc, gc: wc @ gc, w, g, chunk) / w.shape[1]


@functools.partial(jax.jit, static_argnames=("chunk",))
def hermite_matrix(w, g, theta=None, chunk=4096):
  """The order-2 Hermite moment, or the order-3 one contracted with theta.

  theta None: M = (1/m) sum_j g_j (w_j w_j^T - I) -> sum_i rho_i kappa_2
  xhat_i xhat_i^T. theta (unit, [d]): M = (1/m) sum_j g_j He_3(w_j)[theta]
  -> sum_i rho_i kappa_3 (xhat_i . theta) xhat_i xhat_i^T, for activations
  with kappa_2 = 0 (tanh, sigmoid).

  Returns:
    (M [d, d], y1 [d], noise): ``noise`` = 2 rms(g phi) sqrt(d / m) +
    rms(g phi) d / m, the edge of the spectrum of M's sampling noise in
    directions orthogonal to the data (a Wigner matrix with entry variance
    E[(g phi)^2] / m; phi = 1 or w . theta).
  """
  d, m = w.shape

  def fn(wc, gc):
    phi = jnp.ones_like(gc) if theta is None else theta @ wc  # [c]
    gp = gc * phi
    return {"m": (wc * gp) @ wc.T, "y1": wc @ gc, "gp": jnp.sum(gp),
            "gp2": jnp.sum(gp * gp)}

  s = jax.tree.map(lambda a: a / m, _chunked_sum(fn, w, g, chunk))
  mat = s["m"] - s["gp"] * jnp.eye(d, dtype=w.dtype)
  if theta is not None:
    mat = mat - jnp.outer(theta, s["y1"]) - jnp.outer(s["y1"], theta)
  rms = jnp.sqrt(s["gp2"])
  return mat, s["y1"], rms * (2 * jnp.sqrt(d / m) + d / m)


def _sym(t):
  """Symmetrizes a square tensor over all permutations of its modes."""
  perms = list(itertools.permutations(range(t.ndim)))
  return sum(jnp.transpose(t, p) for p in perms) / len(perms)


@functools.partial(jax.jit, static_argnames=("order", "chunk"))
def projected_moments(w, g, v, order=3, chunk=4096):
  """Hermite moments of orders 1, 2 and ``order`` projected onto V [d, n].

  u_j = V^T w_j ~ N(0, I_n) for orthonormal V, so the projected Hermite
  tensor (1/m) sum_j g_j He_k(u_j) is the full d^k one contracted with V on
  every mode: -> sum_i rho_i kappa_k (V^T xhat_i)^{(x)k}. The d^k tensor is
  never formed; cost O(m d n) for u plus O(m n^order).

  Returns:
    {1: [n], 2: [n, n], order: [n]*order} (order 3 or 4).
  """
  if order not in (3, 4):
    raise ValueError(f"order must be 3 or 4, got {order}")
  n, m = v.shape[1], w.shape[1]

  def fn(wc, gc):
    u = v.T @ wc  # [n, c]
    uu = (u[:, None, :] * u[None, :, :]).reshape(n * n, -1)  # [n^2, c]
    return {"s0": jnp.sum(gc), "s1": u @ gc, "s2": (u * gc) @ u.T,
            "t": (uu * gc) @ (u.T if order == 3 else uu.T)}

  s = jax.tree.map(lambda a: a / m, _chunked_sum(fn, w, g, chunk))
  eye = jnp.eye(n, dtype=w.dtype)
  out = {1: s["s1"], 2: s["s2"] - s["s0"] * eye}
  t = s["t"].reshape((n,) * order)
  if order == 3:  # He_3(u) = u^3 - 3 sym(u x I).
    out[3] = t - 3 * _sym(jnp.einsum("a,bc->abc", s["s1"], eye))
  else:  # He_4(u) = u^4 - 6 sym(u u x I) + 3 sym(I x I).
    out[4] = (t - 6 * _sym(jnp.einsum("ab,cd->abcd", s["s2"], eye))
              + 3 * s["s0"] * _sym(jnp.einsum("ab,cd->abcd", eye, eye)))
  return out


@functools.partial(jax.jit, static_argnames=("chunk",))
def gram(gw, chunk=4096):
  """G G^T [d, d] for the leaked first-layer gradient G = dL/dw [d, m].

  Column j is a_j sum_i rho_i act'(w_j . x_i) x_i: exactly in the data
  span, so the top eigenvectors of G G^T are the span without sampling
  noise (when the server also reads dL/dw).
  """
  ones = jnp.ones(gw.shape[1], gw.dtype)
  return _chunked_sum(lambda c, _: c @ c.T, gw, ones, chunk)


def hermite_form(t, u):
  """<T, He_k(u)> for symmetric T [n]*k (k = 2, 3, 4) and u [n, m] -> [m]."""
  k = t.ndim
  if k == 2:
    return jnp.einsum("ab,am,bm->m", t, u, u) - jnp.trace(t)
  if k == 3:
    return (jnp.einsum("abc,am,bm,cm->m", t, u, u, u)
            - 3 * jnp.einsum("abb,am->m", t, u))
  if k == 4:
    t2 = jnp.einsum("abcc->ab", t)
    return (jnp.einsum("abcd,am,bm,cm,dm->m", t, u, u, u, u)
            - 6 * jnp.einsum("ab,am,bm->m", t2, u, u)
            + 3 * jnp.einsum("aabb", t))
  raise ValueError(f"order must be 2, 3 or 4, got {k}")


@jax.jit
def low_order_residual(w, g, y1, v=None, parts=()):
  """g minus fitted Hermite components: orders 0 and 1, and some in V.

  E[He_j(w) He_k(w)] = 0 for j != k, so removing fitted components of
  other orders (control variates: the server knows w exactly) leaves a
  moment's expectation unchanged and cuts its variance: for t^3 + t^2 at
  |x| = 1, orders 0, 1 and 3 carry 16/18 of g's variance and order 2 only
  2/18. y1 is the first moment; ``parts`` are projected moments T_k on
  V [d, n] whose components (1/k!) <T_k, He_k(V^T w)> are removed.
  """
  r = g - jnp.mean(g) - y1 @ w  # [m]
  if parts:
    u = v.T @ w  # [n, m]
    for t in parts:
      r = r - hermite_form(t, u) / math.factorial(t.ndim)
  return r


def estimate_rank(eigvals, noise, noise_mult=1.5, max_rank=None):
  """Number of |eigenvalues| above ``noise_mult * noise``, at least 1.

  ``noise`` is the edge of the sampling-noise spectrum (``hermite_matrix``):
  eigenvalues beyond it carry data. Counting them is robust to examples of
  very different signal strength, where the largest eigen-gap is not (a
  strong example and a weak one give their largest gap between the two).
  """
  mags = np.sort(np.abs(np.asarray(eigvals)))[::-1]
  if max_rank is not None:
    mags = mags[:max_rank]
  return max(1, int(np.sum(mags > noise_mult * float(noise))))
