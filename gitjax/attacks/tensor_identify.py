"""What the tensor attack can identify beyond directions, and its scoring.

Each moment order k gives coefficients c_k,i of the recovered unit
components p_i (lifted: xhat_i = sigma_i p_i, sigma_i = +-1):

  c_k,i = rho_i kappa_k(s_i) sigma_i^k,   s_i = |x_i|.

* Sign: for an odd order o and an even order e with signal,
  c_o / c_e = sigma kappa_o(s) / kappa_e(s); if kappa_o / kappa_e keeps one
  sign over all s, sigma is identified. t^3 + t^2: (3, 2); ReLU, GELU,
  softplus: (1, 2). Odd activations (tanh, sigmoid - 1/2) have no even
  order: (x, rho) and (-x, -rho) give the same gradient.
* Norm: if |kappa_a(s) / kappa_b(s)| is strictly monotone in s, the observed
  |c_a / c_b| inverts to s. t^3 + t^2: kappa_3 / kappa_2 = 3 s, exact. ReLU
  and leaky ReLU are positively homogeneous: every ratio is constant, so the
  norm is not identified (rho_i absorbs it).

Scoring aligns recoveries to the truth by permutation and sign only
(Hungarian assignment on |cosine|, scipy).
"""

import numpy as np
from scipy import optimize

from gitjax.attacks import tensor_moments

_SIGN_PAIRS = ((3, 2), (3, 4), (1, 2), (1, 4))
_NORM_PAIRS = ((3, 2), (4, 2), (3, 1), (4, 1), (2, 1))


def _ratio(kappa, a, b):
  den = kappa[:, b]
  if np.any(np.abs(den) < 1e-12 * np.max(np.abs(kappa[:, 1:]), axis=1)):
    return None
  return kappa[:, a] / den


def sign_pair(kappa, orders):
  """First (odd, even) pair of ``orders`` whose kappa ratio keeps its sign."""
  for o, e in _SIGN_PAIRS:
    if o in orders and e in orders:
      r = _ratio(kappa, o, e)
      if r is not None and (np.all(r > 0) or np.all(r < 0)):
        return o, e
  return None


def norm_pair(kappa, orders):
  """First pair whose |kappa ratio| is strictly monotone in s (and varies)."""
  for a, b in _NORM_PAIRS:
    if a in orders and b in orders:
      r = _ratio(kappa, a, b)
      if r is None:
        continue
      r = np.abs(r)
      dr = np.diff(r)
      if ((np.all(dr > 0) or np.all(dr < 0))
          and r.max() > 1.5 * r.min()):
        return a, b
  return None


def invert_norm(kappa, pair, observed, scales=tensor_moments.SCALES):
  """s with |kappa_a(s) / kappa_b(s)| = observed (log-interpolated)."""
  r = np.abs(kappa[:, pair[0]] / kappa[:, pair[1]])
  logs = np.log(scales)
  if r[0] > r[-1]:
    r, logs = r[::-1], logs[::-1]
  return np.exp(np.interp(np.abs(observed), r, logs))


def identify(kappa, nonzero, tensor_order, coef, sign="auto", norm="auto"):
  """Signs and norms of the components from their moment coefficients.

  Args:
    kappa: [S, K] kappa_k(s) on ``tensor_moments.SCALES``.
    nonzero: [K] orders with signal.
    tensor_order: the decomposed order (its coefficients are the weights).
    coef: {order: [N] coefficients} for the orders fitted.
    sign: "auto", "heuristic" or "none".
    norm: "auto" or a fixed float.

  Returns:
    dict with signs [N] (None if left to the heuristic), norms [N],
    sign_pair / norm_pair (or None) and the rules used.
  """
  orders = [k for k in coef if nonzero[k]]
  n = len(coef[tensor_order])
  out = dict(sign_pair=sign_pair(kappa, orders), signs=np.ones(n),
             norm_pair=None, norms=np.ones(n))
  if sign not in ("auto", "heuristic", "none"):
    raise ValueError(f"sign must be 'auto', 'heuristic' or 'none', got "
                     f"{sign!r}")
  if sign == "auto" and out["sign_pair"] is not None:
    o, e = out["sign_pair"]
    ratio_sign = np.sign(np.mean(kappa[:, o] / kappa[:, e]))
    out["signs"] = np.where(coef[o] / coef[e] * ratio_sign < 0, -1.0, 1.0)
    out["sign_rule"] = f"coefficients of orders {o} and {e}"
  else:
    out["sign_rule"] = "heuristic" if sign != "none" else "none"
  if norm == "auto":
    out["norm_pair"] = norm_pair(kappa, orders)
    if out["norm_pair"] is not None:
      a, b = out["norm_pair"]
      out["norms"] = invert_norm(kappa, (a, b), coef[a] / coef[b])
      out["norm_rule"] = f"coefficients of orders {a} and {b}"
    else:
      out["norm_rule"] = "not identifiable: unit norm"
  else:
    out["norms"] = np.full(n, float(norm))
    out["norm_rule"] = f"fixed {float(norm)}"
  return out


def heuristic_signs(dirs):
  """Signs making each direction's mean non-negative (images >= 0)."""
  return np.where(np.sum(dirs, axis=1) < 0, -1.0, 1.0)


def _flat(x):
  x = np.asarray(x, np.float64)
  return x.reshape(x.shape[0], -1)


def align(x_hat, x):
  """Matches recoveries to the truth by permutation and sign.

  Hungarian assignment on |cosine| (``scipy.optimize.linear_sum_assignment``).

  Returns:
    (perm [N] index into x_hat for each true example, -1 if unmatched,
    signs [N] +-1, cos [N] the matched |cosine| (0 if unmatched)).
  """
  xh, xt = _flat(x_hat), _flat(x)
  unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True),
                                  1e-30)
  cos = unit(xh) @ unit(xt).T  # [N_hat, N]
  rows, cols = optimize.linear_sum_assignment(-np.abs(cos))
  perm = np.full(xt.shape[0], -1)
  signs = np.ones(xt.shape[0])
  best = np.zeros(xt.shape[0])
  perm[cols] = rows
  signs[cols] = np.where(cos[rows, cols] < 0, -1.0, 1.0)
  best[cols] = np.abs(cos[rows, cols])
  return perm, signs, best


def aligned(x_hat, x, unit=False):
  """x_hat permuted and sign-flipped onto x [N, ...]; zeros if unmatched.

  unit=True normalizes each recovered example to norm 1 first (the paper's
  metric, which scores directions).
  """
  perm, signs, _ = align(x_hat, x)
  xh = _flat(x_hat)
  if unit:
    xh = xh / np.maximum(np.linalg.norm(xh, axis=1, keepdims=True), 1e-30)
  out = np.where(perm[:, None] >= 0, xh[np.maximum(perm, 0)], 0.0)
  return (out * signs[:, None]).reshape(np.shape(x))


def reconstruction_error(x_hat, x, unit=True):
  """The paper's 0.5 ||X_hat - X||_F^2 after permutation and sign alignment.

  unit=True compares unit-normalized recoveries with unit-normalized truth.
  """
  xt = _flat(x)
  if unit:
    xt = xt / np.maximum(np.linalg.norm(xt, axis=1, keepdims=True), 1e-30)
  xa = _flat(aligned(x_hat, x, unit=unit))
  return 0.5 * float(np.sum((xa - xt) ** 2))


def cosine_similarities(x_hat, x):
  """|cosine| between each true example and its matched recovery [N]."""
  return align(x_hat, x)[2]
