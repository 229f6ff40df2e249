"""TuRBO-1: trust-region Bayesian optimization (Eriksson et al., NeurIPS 2019).

GGL's Bayesian optimizer, in JAX. A Gaussian process (ARD Matern-5/2, its
hyper-parameters fit by Adam on the marginal likelihood) is fit to the
points of the current run; the next batch is chosen by Thompson sampling on
candidates inside a trust region around the best point, whose side grows
after ``succtol`` successes in a row, shrinks after ``failtol`` failures and
restarts the run (a fresh Latin hypercube design) when it falls below
``length_min``. Defaults are GGL's (papers.md C.2): box [-2, 2]^d, 256
initial points, batches of 10, 50 Adam steps, length 0.8 in [0.5^7, 1.6].

Why not a library: the BO packages that install here are global BO (a
single GP over the whole box, which over-explores in 128 dimensions;
``bayesian-optimization`` is also sequential numpy/scikit-learn), and none
ships a trust region. The GP and the proposal are jitted; buffers are
padded to the budget so they compile once.
"""

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

# Hyper-parameter bounds on [0, 1]^d inputs and standardized outputs (TuRBO).
_LS_BOUNDS = (0.005, 2.0)
_OS_BOUNDS = (0.05, 20.0)
_NOISE_BOUNDS = (0.0005, 0.2)


class GPParams(NamedTuple):
  raw_ls: jax.Array  # [d]
  raw_os: jax.Array  # []
  raw_noise: jax.Array  # []


def _bounded(raw, bounds):
  lo, hi = bounds
  return lo + (hi - lo) * jax.nn.sigmoid(raw)


def _unbounded(value, bounds):
  lo, hi = bounds
  p = (value - lo) / (hi - lo)
  return math.log(p / (1 - p))


def hypers(p: GPParams):
  """(lengthscales [d], outputscale, noise) in their natural units."""
  return (_bounded(p.raw_ls, _LS_BOUNDS), _bounded(p.raw_os, _OS_BOUNDS),
          _bounded(p.raw_noise, _NOISE_BOUNDS))


def matern52(x1, x2, ls, outputscale):
  """ARD Matern-5/2 kernel matrix [n1, n2]."""
  a, b = x1 / ls, x2 / ls
  r2 = (jnp.sum(a * a, 1)[:, None] - 2 * a @ b.T + jnp.sum(b * b, 1)[None])
  r = jnp.sqrt(jnp.maximum(r2, 0.0) + 1e-12) * math.sqrt(5.0)
  return outputscale * (1.0 + r + r * r / 3.0) * jnp.exp(-r)


def _train_cov(p, x, mask):
  ls, os_, noise = hypers(p)
  m = mask.astype(x.dtype)
  k = matern52(x, x, ls, os_) * m[:, None] * m[None]
  # Padded rows become identity rows: they do not touch the real ones.
  return k + jnp.diag(noise * m + (1.0 - m) + 1e-6)


def neg_log_likelihood(p: GPParams, x, y, mask):
  """Mean negative marginal log-likelihood over the unmasked points."""
  chol = jnp.linalg.cholesky(_train_cov(p, x, mask))
  alpha = jax.scipy.linalg.cho_solve((chol, True), y * mask)
  n = jnp.sum(mask)
  logdet = jnp.sum(jnp.log(jnp.diag(chol)) * mask)
  return (0.5 * jnp.dot(y * mask, alpha) + logdet) / n + 0.5 * jnp.log(
      2 * jnp.pi)


@jax.jit(static_argnames=("steps",))
def fit_gp(x, y, mask, steps: int = 50, lr: float = 0.1) -> GPParams:
  """Fits the GP hyper-parameters with Adam from TuRBO's initial values."""
  d = x.shape[1]
  p = GPParams(jnp.full((d,), _unbounded(0.5, _LS_BOUNDS)),
               jnp.asarray(_unbounded(1.0, _OS_BOUNDS)),
               jnp.asarray(_unbounded(0.005, _NOISE_BOUNDS)))
  tx = optax.adam(lr)

  def step(carry, _):
    p, s = carry
    g = jax.grad(neg_log_likelihood)(p, x, y, mask)
    u, s = tx.update(g, s, p)
    return (optax.apply_updates(p, u), s), None

  (p, _), _ = jax.lax.scan(step, (p, tx.init(p)), None, length=steps)
  return p


@jax.jit(static_argnames=("batch",))
def thompson(p: GPParams, x, y, mask, cand, key, batch: int):
  """Indices of ``batch`` distinct candidates minimizing joint GP samples."""
  ls, os_, noise = hypers(p)
  m = mask.astype(x.dtype)
  chol = jnp.linalg.cholesky(_train_cov(p, x, mask))
  k_cx = matern52(cand, x, ls, os_) * m[None]  # [C, N]
  alpha = jax.scipy.linalg.cho_solve((chol, True), y * m)
  mean = k_cx @ alpha  # [C]
  v = jax.scipy.linalg.solve_triangular(chol, k_cx.T, lower=True)  # [N, C]
  cov = matern52(cand, cand, ls, os_) - v.T @ v
  cov = cov + (noise + 1e-4) * jnp.eye(cand.shape[0])
  l_post = jnp.linalg.cholesky(cov)
  eps = jax.random.normal(key, (cand.shape[0], batch))
  joint = mean[:, None] + l_post @ eps
  # float32 Cholesky can fail on near-duplicate candidates: fall back to
  # independent marginals then.
  marg = mean[:, None] + jnp.sqrt(jnp.clip(jnp.diag(cov), 1e-9))[:, None] * eps
  samples = jnp.where(jnp.all(jnp.isfinite(joint)), joint, marg)  # [C, b]

  def pick(taken, s):
    s = jnp.where(taken, jnp.inf, s)
    i = jnp.argmin(s)
    return taken.at[i].set(True), i

  _, idx = jax.lax.scan(pick, jnp.zeros(cand.shape[0], bool), samples.T)
  return idx


def latin_hypercube(key, n: int, d: int) -> jax.Array:
  """n points in [0, 1]^d, one per stratum along every axis."""
  k1, k2 = jax.random.split(key)
  perms = jax.vmap(lambda k: jax.random.permutation(k, n))(
      jax.random.split(k1, d)).T  # [n, d]
  return (perms + jax.random.uniform(k2, (n, d))) / n


class TurboResult(NamedTuple):
  x: np.ndarray  # [d] best point, in the box.
  y: float  # its loss.
  history: list  # best loss after each batch.
  evaluations: int
  restarts: int


def turbo(loss: Callable[[jax.Array], jax.Array], dim: int, key, *,
          budget: int, lb: float = -2.0, ub: float = 2.0, n_init: int = 256,
          batch: int = 10, length_init: float = 0.8,
          length_min: float = 0.5**7, length_max: float = 1.6,
          succtol: int = 3, failtol: int | None = None,
          n_candidates: int | None = None, gp_steps: int = 50,
          eval_chunk: int = 50) -> TurboResult:
  """Minimizes ``loss`` over the box [lb, ub]^dim with TuRBO-1.

  Args:
    loss: ``[P, dim] -> [P]``, a batched (vmapped, jitted) objective. It is
      called on chunks of at most ``eval_chunk`` points (the initial design)
      and on batches of ``batch`` points.
    dim: search dimension.
    key: randomness of designs, candidates and Thompson samples.
    budget: total number of evaluations.
    lb, ub: the box.
    n_init: initial design size of each run (capped at ``budget``).
    batch: points per proposal.
    length_init, length_min, length_max, succtol, failtol: trust-region
      settings; ``failtol`` defaults to ceil(max(4 / batch, dim / batch)).
    n_candidates: Thompson candidates per proposal; min(100 dim, 5000) by
      default (TuRBO's); fewer is faster on CPU.
    gp_steps: Adam steps of each GP fit.
    eval_chunk: largest batch passed to ``loss`` at once.

  Returns:
    A ``TurboResult``.
  """
  if budget < 2 or n_init < 2:
    raise ValueError(f"TuRBO needs budget >= 2 and n_init >= 2; got budget="
                     f"{budget}, n_init={n_init}")
  failtol = failtol or int(math.ceil(max(4.0 / batch, dim / batch)))
  n_cand = n_candidates or min(100 * dim, 5000)
  n_init = min(n_init, budget)
  scale = ub - lb

  def evaluate(u):  # u: [n, d] in [0, 1] -> [n] losses.
    out = []
    for i in range(0, u.shape[0], eval_chunk):
      chunk = u[i:i + eval_chunk]
      pad = eval_chunk - chunk.shape[0] if u.shape[0] > eval_chunk else 0
      if pad:
        chunk = jnp.concatenate([chunk, jnp.repeat(chunk[-1:], pad, 0)])
      vals = np.asarray(loss(lb + scale * chunk))
      out.append(vals[:vals.shape[0] - pad])
    return np.concatenate(out)

  best_x, best_y = None, np.inf
  history, evals, restarts = [], 0, -1
  buf_x = np.zeros((budget, dim), np.float32)
  buf_y = np.zeros((budget,), np.float32)
  while evals < budget:
    restarts += 1
    key, k = jax.random.split(key)
    u = np.asarray(latin_hypercube(k, min(n_init, budget - evals), dim))
    y = evaluate(jnp.asarray(u))
    n = len(y)
    buf_x[:n], buf_y[:n] = u, y
    evals += n
    length, succ, fail = length_init, 0, 0
    while True:
      i = int(np.argmin(buf_y[:n]))
      if buf_y[i] < best_y:
        best_x, best_y = lb + scale * buf_x[i], float(buf_y[i])
      history.append(best_y)
      if evals >= budget or length < length_min:
        break
      mask = np.arange(budget) < n
      ys = buf_y[:n]
      y_std = (buf_y - ys.mean()) / (ys.std() + 1e-9) * mask
      p = fit_gp(jnp.asarray(buf_x), jnp.asarray(y_std, jnp.float32),
                 jnp.asarray(mask), steps=gp_steps)
      ls = np.asarray(hypers(p)[0], np.float64)
      w = ls / ls.mean()
      w = w / np.prod(w)**(1.0 / dim)
      center = buf_x[i]
      lo = np.clip(center - w * length / 2, 0.0, 1.0)
      hi = np.clip(center + w * length / 2, 0.0, 1.0)
      key, k1, k2, k3, k4 = jax.random.split(key, 5)
      pert = lo + (hi - lo) * np.asarray(jax.random.uniform(k1,
                                                            (n_cand, dim)))
      prob = min(20.0 / dim, 1.0)
      sel = np.asarray(jax.random.uniform(k2, (n_cand, dim))) <= prob
      lonely = ~sel.any(1)
      sel[lonely, np.asarray(jax.random.randint(k3, (n_cand,), 0, dim))[
          lonely]] = True
      cand = np.where(sel, pert, center[None]).astype(np.float32)
      q = min(batch, budget - evals)
      idx = np.asarray(thompson(p, jnp.asarray(buf_x), jnp.asarray(y_std,
                                                                   jnp.float32),
                                jnp.asarray(mask), jnp.asarray(cand), k4,
                                batch=batch))[:q]
      u_next = cand[idx]
      y_next = evaluate(jnp.asarray(u_next))
      if y_next.min() < buf_y[:n].min() - 1e-3 * abs(buf_y[:n].min()):
        succ, fail = succ + 1, 0
      else:
        succ, fail = 0, fail + 1
      if succ == succtol:
        length, succ = min(2.0 * length, length_max), 0
      elif fail == failtol:
        length, fail = length / 2.0, 0
      buf_x[n:n + q], buf_y[n:n + q] = u_next, y_next
      n += q
      evals += q
  return TurboResult(np.asarray(best_x, np.float32), best_y, history, evals,
                     restarts)
