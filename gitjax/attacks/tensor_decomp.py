"""Symmetric CP decomposition of small moment tensors: T = sum_r w_r v_r^{(x)k}.

The tensors are [n]*k with n the batch size (the moments are projected into
the data subspace first), so this runs on the host in float64.

Two methods, selected by name:

* ``simultaneous``: simultaneous diagonalization (Kuleshov, Chaganty, Liang,
  AISTATS 2015), as the paper's code (``no_tenfact``). T is contracted with
  L random unit vectors into L matrices M_l = V D_l V^T; a common non-
  orthogonal diagonalizer V is found by Jennrich's method (eigenvectors of
  M_a M_b^+ for random combinations a, b of the M_l; the candidate that best
  diagonalizes all L matrices jointly is kept), then refined by
  re-projection: contracting T with the dual basis of V gives w_r v_r v_r^T
  exactly at the truth, whose top eigenvector updates v_r.
* ``parafac``: TensorLy's CP-ALS (``tensorly.decomposition.parafac``), on
  TensorLy's JAX backend (the NumPy backend if the JAX one fails), with a few
  restarts; the k factor columns of each component are sign-aligned and
  averaged into one symmetric factor.

Both return unit-norm factors [n, r] and weights [r] refitted by least
squares on T, sorted by decreasing |weight|.
"""

import logging

import jax
import numpy as np
from scipy import optimize
import tensorly as tl
from tensorly import decomposition as tl_decomposition


def contract(t, vecs):
  """T [n]*k contracted with k - 2 vectors on its last modes -> [n, n]."""
  t = np.asarray(t)
  for v in vecs[::-1]:
    t = t @ v
  return t


def outer_power(v, k):
  """v^{(x)k} for v [n] -> [n]*k."""
  out = v
  for _ in range(k - 1):
    out = np.multiply.outer(out, v)
  return out


def fit_weights(t, factors):
  """Least-squares weights w with T ~ sum_r w_r v_r^{(x)k}; factors [n, r]."""
  k = np.ndim(t)
  basis = np.stack([outer_power(factors[:, r], k).ravel()
                    for r in range(factors.shape[1])], axis=1)
  w, *_ = np.linalg.lstsq(basis, np.ravel(t), rcond=None)
  resid = np.linalg.norm(basis @ w - np.ravel(t)) / max(
      np.linalg.norm(t), 1e-30)
  return w, resid


def _normalize(v):
  return v / np.maximum(np.linalg.norm(v, axis=0, keepdims=True), 1e-30)


def _offdiag_residual(mats, v):
  """How far V^+ M_l V^+T are from diagonal, over all l (relative)."""
  p = np.linalg.pinv(v)
  d = np.einsum("ia,lab,jb->lij", p, mats, p)
  off = d - np.einsum("lii->li", d)[:, :, None] * np.eye(d.shape[1])
  return np.sum(off**2) / max(np.sum(d**2), 1e-30)


def _jennrich(mats, rank, rng, trials):
  """Jennrich candidates, best joint diagonalizers first: list of [n, r]."""
  cands = []
  for _ in range(trials):
    a, b = rng.normal(size=(2, mats.shape[0]))
    ma, mb = np.tensordot(a, mats, 1), np.tensordot(b, mats, 1)
    evals, evecs = np.linalg.eig(ma @ np.linalg.pinv(mb))
    order = np.argsort(-np.abs(evals))[:rank]
    v = _normalize(np.real(evecs[:, order]))
    cands.append((_offdiag_residual(mats, v), v))
  cands.sort(key=lambda c: c[0])
  return [v for _, v in cands]


def _reproject(t, v):
  """One re-projection sweep: v_r <- top eigvec of T[., ., q_r, ...]."""
  k = np.ndim(t)
  q = np.linalg.pinv(v).T  # [n, r], q_r . v_s = delta_rs.
  out = np.empty_like(v)
  for r in range(v.shape[1]):
    evals, evecs = np.linalg.eigh(contract(t, [q[:, r]] * (k - 2)))
    out[:, r] = evecs[:, np.argmax(np.abs(evals))]
  return out


def _outer_power_jacobian(a, k):
  """d a^{(x)k} / d a: [n]*k + [n]."""
  n = a.shape[0]
  base = np.multiply.outer(outer_power(a, k - 1) if k > 1 else 1.0,
                           np.eye(n))  # [n]*(k-1) + [n (inserted), n]
  return sum(np.moveaxis(base, k - 1, q) for q in range(k))


def polish(t, factors, weights, max_nfev=100):
  """Levenberg-Marquardt on the symmetric CP objective ||T - sum w v^k||^2.

  Takes a decomposition to the nearby local optimum; cheap because the
  tensors are tiny (n r unknowns, n^k residuals). Returns (factors, weights,
  relative residual).
  """
  t = np.asarray(t, np.float64)
  n, r = factors.shape
  k = t.ndim
  # a_r = |w_r|^(1/k) v_r with fixed signs s_r: T ~ sum_r s_r a_r^{(x)k}.
  signs = np.where(weights < 0, -1.0, 1.0)
  a0 = factors * np.abs(weights) ** (1.0 / k)

  def resid(flat):
    a = flat.reshape(n, r)
    return (sum(signs[j] * outer_power(a[:, j], k) for j in range(r))
            - t).ravel()

  def jac(flat):
    a = flat.reshape(n, r)
    cols = [signs[j] * _outer_power_jacobian(a[:, j], k).reshape(-1, n)
            for j in range(r)]
    return np.stack(cols, axis=2).reshape(n**k, n * r)  # [n^k, (n, r)]

  sol = optimize.least_squares(resid, a0.ravel(), jac=jac, method="lm",
                               max_nfev=max_nfev)
  v = _normalize(sol.x.reshape(n, r))
  w, res = fit_weights(t, v)
  return v, w, res


def simultaneous_diagonalization(t, rank, *, num_projections=100,
                                 jennrich_trials=10, refine_steps=20,
                                 seed=0):
  """Kuleshov et al.'s decomposition of a symmetric [n]*k tensor, k >= 3.

  Returns candidates [(factors [n, r], weights [r], residual)], best joint
  diagonalizers first, each refined by re-projection.
  """
  t = np.asarray(t, np.float64)
  n, k = t.shape[0], t.ndim
  rng = np.random.default_rng(seed)
  thetas = _normalize(rng.normal(size=(n, num_projections * (k - 2))))
  thetas = thetas.T.reshape(num_projections, k - 2, n)
  mats = np.stack([contract(t, list(th)) for th in thetas])  # [L, n, n]
  mats = (mats + np.swapaxes(mats, 1, 2)) / 2
  out = []
  for v in _jennrich(mats, rank, rng, jennrich_trials):
    w, res = fit_weights(t, v)
    for _ in range(refine_steps):
      v_new = _reproject(t, v)
      w_new, res_new = fit_weights(t, v_new)
      if res_new >= res:
        break
      v, w, res = v_new, w_new, res_new
    out.append((v, w, res))
  return out


def _symmetric_factor(factors, r):
  """Sign-aligned mean of the k factor columns of component r."""
  cols = [f[:, r] / max(np.linalg.norm(f[:, r]), 1e-30) for f in factors]
  ref = cols[0]
  return sum(np.sign(np.dot(c, ref) or 1.0) * c for c in cols)


def _tensorly_parafac(t, rank, backend, n_iter_max, tol, seed):
  """One TensorLy CP-ALS run (SVD init when seed % 5 == 0, else random).

  TensorLy's JAX backend turns ``jax_enable_x64`` on for the whole process
  when it is first loaded; the flag is put back afterwards, so that the
  rest of a program does not silently switch to float64.
  """
  x64 = jax.config.jax_enable_x64
  try:
    with tl.backend_context(backend):
      dtype = np.float64 if backend == "numpy" else np.float32
      cp = tl_decomposition.parafac(
          tl.tensor(t.astype(dtype)), rank, n_iter_max=n_iter_max,
          init="svd" if seed % 5 == 0 else "random", tol=tol,
          random_state=seed, normalize_factors=True)
      return [np.asarray(tl.to_numpy(f), np.float64) for f in cp.factors]
  finally:
    if jax.config.jax_enable_x64 != x64:
      jax.config.update("jax_enable_x64", x64)


def parafac(t, rank, *, n_iter_max=500, tol=1e-9, restarts=5, seed=0,
            backend="numpy"):
  """TensorLy CP-ALS from ``restarts`` random inits, made symmetric.

  Returns (candidates [(factors [n, r], weights [r], residual)], the
  TensorLy backend used).
  """
  t = np.asarray(t, np.float64)
  used = backend
  out = []
  for i in range(restarts):
    try:
      factors = _tensorly_parafac(t, rank, used, n_iter_max, tol, seed + i)
    except Exception as e:  # pylint: disable=broad-except
      if used == "numpy":
        raise
      logging.warning("TensorLy %s backend failed (%s); using numpy.",
                      used, e)
      used = "numpy"
      factors = _tensorly_parafac(t, rank, used, n_iter_max, tol, seed + i)
    v = _normalize(np.stack([_symmetric_factor(factors, r)
                             for r in range(rank)], axis=1))
    out.append((v, *fit_weights(t, v)))
  return out, used


def _sorted(v, w, res):
  order = np.argsort(-np.abs(w))
  return v[:, order], w[order], float(res)


METHODS = ("simultaneous", "parafac")


def decompose(t, rank, method="simultaneous", seed=0, refine=True,
              num_refined=3, **options):
  """Decomposes a symmetric tensor: T ~ sum_r w_r v_r^{(x)k}.

  Args:
    t: [n]*k symmetric tensor, k >= 3.
    rank: number of components r <= n.
    method: "simultaneous" or "parafac".
    seed: randomness of projections and initializations.
    refine: polish candidates with Levenberg-Marquardt (``polish``).
    num_refined: how many of the method's candidates (Jennrich pairs or ALS
      restarts, best first) are polished; the lowest residual wins.
    **options: the method's own options.

  Returns:
    (factors [n, r] unit columns, weights [r] by decreasing |w|, info dict
    with "residual" (relative Frobenius) and the TensorLy backend if used).
  """
  if method not in METHODS:
    raise ValueError(f"unknown decomposition method {method!r}; known: "
                     f"{METHODS}")
  info = {}
  if method == "simultaneous":
    cands = simultaneous_diagonalization(t, rank, seed=seed, **options)
  else:
    cands, info["tensorly_backend"] = parafac(t, rank, seed=seed, **options)
  cands = sorted(cands, key=lambda c: c[2])
  best = cands[0]
  info["residual_unrefined"] = float(best[2])
  if refine:
    for v, w, _ in cands[:num_refined]:
      cand = polish(t, v, w)
      if cand[2] < best[2]:
        best = cand
  info["residual"] = float(best[2])
  return _sorted(*best)[:2] + (info,)
