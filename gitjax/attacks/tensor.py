"""Provable tensor attack on a two-layer network at random weights.

Wang, Lee, Lei, "Reconstructing Training Data from Model Gradient, Provably"
(AISTATS 2023). The server draws w_j ~ N(0, I) for the m neurons of
f(x) = sum_j a_j act(w_j . x) and receives one FedSGD gradient of the
client's batch. Its second-layer part g_j = sum_i rho_i act(w_j . x_i)
(rho_i = (f(x_i) - y_i) / N, labels not needed) has Hermite moments
sum_i rho_i kappa_k(|x_i|) xhat_i^{(x)k} (``tensor_moments``):

1. the order-2 moment (or, for odd activations, the order-3 one contracted
   with the first moment) spans the data: its top-N eigenvectors V [d, N];
   N is estimated from its spectrum when the server is not told it;
2. the order-3 moment projected into V (order 4 when mu_3 = 0, e.g. ReLU)
   is decomposed, T = sum_i w_i p_i^{(x)3} (``tensor_decomp``:
   simultaneous diagonalization or TensorLy CP-ALS);
3. the components are lifted back, xhat_i = V p_i;
4. sign and norm come from ratios of the coefficients of two orders
   (``tensor_identify``): for t^3 + t^2 both are identified exactly
   (kappa_3 / kappa_2 = 3 |x|); for ReLU the sign is, the norm is not
   (act is positively homogeneous, so rho_i absorbs it);
5. optionally (``match_steps``) L-BFGS fits (x_i, rho_i) to g directly
   from that start, removing the O(sqrt(d / m)) error of the moments.

``recover`` is the array-level function; ``attack`` the registry entry.
"""

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import attacks
from gitjax.attacks import tensor_decomp
from gitjax.attacks import tensor_identify
from gitjax.attacks import tensor_moments
from gitjax.attacks import tensor_refine
from gitjax.attacks import tensor_subspace
from gitjax.models import common

# Public re-exports for scoring.
align = tensor_identify.align
aligned = tensor_identify.aligned
reconstruction_error = tensor_identify.reconstruction_error
cosine_similarities = tensor_identify.cosine_similarities

DEFAULTS = dict(
    method="simultaneous",  # "simultaneous" or "parafac" (TensorLy).
    order="auto",  # Tensor order: "auto" (3, or 4 if mu_3 = 0), 3 or 4.
    # Data span: "auto" (best of 2 and 3, see ``recover``), 2 or 3
    # (``tensor_subspace.from_moments``), or "w_grad" (exact span from the
    # leaked dL/dw, beyond the paper).
    subspace="auto",
    subspace_refinements=2,  # Re-estimates of V with order kt removed.
    clip_quantile=0.9,  # Winsorize g for the subspace (1.0: off).
    batch_size=None,  # Override; None: the leak's, else estimated.
    max_batch_size=64,  # Cap on the estimated batch size.
    noise_mult=1.5,  # Estimation threshold, in units of the noise edge.
    chunk_size=4096,  # Neurons per chunk of the moment computations.
    control_variates=True,  # Remove fitted lower orders before each moment.
    num_projections=100,  # simultaneous: L random contractions of T.
    jennrich_trials=10,  # simultaneous: random pairs tried.
    restarts=5,  # parafac: ALS restarts.
    n_iter_max=500,  # parafac: ALS iterations.
    tensorly_backend="numpy",  # parafac: "numpy" or "jax".
    polish=True,  # Levenberg-Marquardt on the symmetric CP fit.
    sign="auto",  # "auto" (identities, else heuristic), "heuristic", "none".
    norm="auto",  # "auto" (identities, else 1.0) or a fixed float.
    norm_fit=True,  # Refit identified norms and signs by least squares.
    match_steps=0,  # L-BFGS steps fitting (x, rho) to g; 0: off.
)


class TensorResult(NamedTuple):
  x: np.ndarray  # [N, d] recovered examples (sign, norm where identified).
  rho: np.ndarray  # [N] residual weights (f(x_i) - y_i) / N.
  info: dict  # JSON-able: orders, spectrum, identifiability, timings.
  x_tensor: np.ndarray  # [N, d] the moment estimate, before match_steps.


def settings(config=None) -> dict:
  """DEFAULTS updated with ``config`` (ConfigDict or dict; "name" ignored)."""
  return attacks.settings(config, DEFAULTS, "tensor attack")


def plan_orders(act_name, order="auto", subspace="auto"):
  """Which moments carry signal for ``act_name``.

  Returns (kappa [S, 6] on ``tensor_moments.SCALES``, nonzero [6] bools,
  tensor order, subspace estimators to try: for "auto" every usable
  moment order). Raises ValueError when a requested order has no signal
  (e.g. order 3 for ReLU: mu_3 = 0).
  """
  kappa = tensor_moments.hermite_coefficients(common.activation(act_name))
  nz = tensor_moments.nonzero_orders(kappa)
  mus = tensor_moments.hermite_coefficients(common.activation(act_name), 1.0)
  mu = ", ".join(f"mu_{k} = {mus[0, k]:.3g}" for k in range(1, 5))
  if order == "auto":
    kt = 3 if nz[3] else 4 if nz[4] else None
    if kt is None:
      raise ValueError(f"activation {act_name!r} has no signal in the "
                       f"order-3 or order-4 moments ({mu})")
  elif order in (3, 4):
    kt = int(order)
    if not nz[kt]:
      raise ValueError(
          f"activation {act_name!r} has mu_{kt} = E[act^({kt})(z)] = 0 "
          f"({mu}): the order-{kt} moment of the gradient carries no signal; "
          f"use order={7 - kt} or order='auto'")
  else:
    raise ValueError(f"order must be 'auto', 3 or 4, got {order!r}")
  usable = [k for k in (2, 3) if nz[k] and (k == 2 or nz[1])]
  if subspace == "auto":
    return kappa, nz, kt, usable
  if subspace not in (2, 3, "w_grad"):
    raise ValueError(
        f"subspace must be 'auto', 2, 3 or 'w_grad', got {subspace!r}")
  if subspace not in usable + ["w_grad"]:
    raise ValueError(f"activation {act_name!r} gives no order-{subspace} "
                     f"subspace estimate ({mu})")
  return kappa, nz, kt, [subspace]


def _fit_coefficients(moments, factors, nz):
  """Coefficients of the components in the order-1 and order-2 moments."""
  coef = {}
  if nz[2]:
    basis = np.stack([np.outer(f, f).ravel() for f in factors.T], axis=1)
    coef[2] = np.linalg.lstsq(basis, np.ravel(moments[2]), rcond=None)[0]
  if nz[1]:
    coef[1] = np.linalg.lstsq(factors, moments[1], rcond=None)[0]
  return coef


def _decompose(t, n, s, seed):
  """``tensor_decomp.decompose`` with the method's own settings."""
  if s["method"] == "simultaneous":
    opts = dict(num_projections=s["num_projections"],
                jennrich_trials=s["jennrich_trials"])
  else:
    opts = dict(restarts=s["restarts"], n_iter_max=s["n_iter_max"],
                backend=s["tensorly_backend"])
  return tensor_decomp.decompose(t, n, s["method"], seed=seed,
                                 refine=s["polish"], **opts)


def _lift(w, g, activation, plan, moments, v, factors, weights, s):
  """Components -> examples x [N, d] with sign and norm, and rho [N]."""
  kappa, nz, kt, _ = plan
  coef = _fit_coefficients(moments, factors, nz)
  coef[kt] = weights
  ident = tensor_identify.identify(kappa, nz, kt, coef, s["sign"],
                                   s["norm"])
  dirs = (np.asarray(v, np.float64) @ factors).T  # [N, d], unit rows.
  if ident["sign_rule"] == "heuristic":
    ident["signs"] = tensor_identify.heuristic_signs(dirs)
  a = ident["signs"] * ident["norms"]
  kappa_n = tensor_moments.hermite_coefficients(
      common.activation(activation), ident["norms"])[:, kt]
  rho = weights / (kappa_n * ident["signs"]**kt)
  if s["norm_fit"] and ident["norm_pair"] is not None:
    a, rho, ident["norm_fit_residual"] = tensor_refine.fit_amplitudes(
        w, g, dirs, activation, a, rho)
    if ident["sign_rule"].startswith("coef"):
      ident["sign_rule"] += ", then least squares on g"
    ident["norm_rule"] += ", then least squares on g"
  return dirs * a[:, None], rho, ident


def _recover_in(sub_order, w, g, activation, plan, n, s, seed, w_grad):
  """One pass: subspace, projected tensor, decomposition, lifting."""
  kt, t0 = plan[2], time.perf_counter()
  if sub_order == "w_grad":
    if w_grad is None:
      raise ValueError("subspace='w_grad' needs the gradient dL/dw")
    v, sub = tensor_subspace.from_w_grad(jnp.asarray(w_grad, w.dtype), n, s)
  else:
    v, sub = tensor_subspace.from_moments(w, g, sub_order, n, kt, s)
  t1 = time.perf_counter()
  moments = tensor_subspace.projected(w, g, v, kt, s)
  factors, weights, dinfo = _decompose(moments[kt], sub["n"], s, seed)
  x, rho, ident = _lift(w, g, activation, plan, moments, v, factors,
                        weights, s)
  sub["residual"] = float(tensor_refine.relative_residual(
      w, g, jnp.asarray(x, w.dtype), jnp.asarray(rho, w.dtype), activation))
  info = dict(batch_size=sub["n"], batch_size_estimated=n is None,
              tensor_order=kt, subspace=sub,
              decomposition=dict(method=s["method"], **dinfo),
              sign_identified=ident["sign_rule"].startswith("coef"),
              norm_identified=ident["norm_pair"] is not None,
              sign_rule=ident["sign_rule"], norm_rule=ident["norm_rule"],
              seconds=dict(subspace=t1 - t0,
                           tensor=time.perf_counter() - t1))
  return x, rho, ident["norms"], info


def recover(w, g, activation, batch_size=None, config=None, seed=0,
            w_grad=None):
  """Recovers the batch behind g = dL/da of a two-layer network.

  With subspace="auto" every usable subspace estimator (order 2, and the
  contracted order 3 when the activation has a first and third Hermite
  coefficient) is tried and the recovery that best explains g (smallest
  ``tensor_refine.relative_residual``) is kept: order 2 wins for unit-norm
  data, order 3 for large norms (raw pixels), where t^3 drowns the order-2
  signal.

  Args:
    w: [d, m] first-layer weights (w_j ~ N(0, I), column j is neuron j).
    g: [m] gradient of the mean batch loss with respect to a.
    activation: a name in ``gitjax.models.common.ACTIVATIONS``.
    batch_size: N examples behind g; None: estimated from the spectrum.
    config: settings overriding ``DEFAULTS``.
    seed: randomness of the decomposition.
    w_grad: [d, m] dL/dw, needed only for subspace="w_grad".

  Returns:
    ``TensorResult``; x [N, d] in the order the decomposition found them.
  """
  s = settings(config)
  w, g = jnp.asarray(w), jnp.asarray(g, jnp.asarray(w).dtype)
  d, m = w.shape
  if g.shape != (m,):
    raise ValueError(f"gradient g has shape {g.shape}; expected ({m},) for "
                     f"w of shape {w.shape}")
  n = s["batch_size"] or batch_size
  if n is not None and n > d:
    raise ValueError(
        f"batch size {n} exceeds the input dimension d = {d}: the tensor "
        f"attack recovers at most d linearly independent examples")
  plan = plan_orders(activation, s["order"], s["subspace"])
  runs = [_recover_in(k, w, g, activation, plan, n, s, seed, w_grad)
          for k in plan[3]]
  x, rho, norms, info = min(runs, key=lambda r: r[3]["subspace"]["residual"])
  x_tensor = x
  info["subspace_residuals"] = {str(r[3]["subspace"]["order"]):
                                r[3]["subspace"]["residual"] for r in runs}
  if s["match_steps"]:
    t0 = time.perf_counter()
    p0 = {"x": jnp.asarray(x, w.dtype), "rho": jnp.asarray(rho, w.dtype)}
    p, l0, l1, steps = tensor_refine.match(w, g, p0, activation,
                                           int(s["match_steps"]))
    info["match"] = dict(steps=int(steps), loss_start=float(l0),
                         loss_end=float(l1), accepted=bool(l1 < l0))
    if l1 < l0:  # L-BFGS is monotone; this guards against NaN.
      x, rho = np.asarray(p["x"], np.float64), np.asarray(p["rho"])
    if not info["norm_identified"]:  # Keep the norm convention.
      x = x / np.linalg.norm(x, axis=1, keepdims=True) * norms[:, None]
    info["seconds"]["match"] = time.perf_counter() - t0
  return TensorResult(x=x.astype(np.float32), rho=rho, info=info,
                      x_tensor=x_tensor.astype(np.float32))


def check_leak(leak, victim):
  """Raises ValueError unless the leak is a FedSGD two-layer gradient."""
  if victim.name != "two_layer" or leak.model != "two_layer":
    raise ValueError(
        "the tensor attack needs the two-layer network f(x) = sum_j a_j "
        f"act(w_j . x) (victim 'two_layer'); got {victim.name!r}")
  if leak.protocol != "fedsgd":
    raise ValueError("the tensor attack needs a FedSGD gradient; got "
                     f"protocol {leak.protocol!r}")
  for k in ("w", "a"):
    if k not in leak.message or k not in leak.params:
      raise ValueError(f"leak has no {k!r} in its message or parameters")


def attack(leak, victim, config, key) -> attacks.Reconstruction:
  """Registry entry: the tensor attack on ``leak``.

  The batch size is leak.batch_size * leak.num_clients (the averaged
  gradient of K clients is that of their union), or estimated if None.
  Labels (regression targets y_i = f(x_i) - N rho_i) are returned when the
  norms are identified; None otherwise.
  """
  check_leak(leak, victim)
  n = (leak.batch_size * leak.num_clients if leak.batch_size is not None
       else None)
  seed = int(jax.random.randint(key, (), 0, 2**30))
  res = recover(leak.params["w"], leak.message["a"],
                victim.config["activation"], n, config, seed,
                w_grad=leak.message["w"])
  images = jnp.asarray(res.x).reshape((-1,) + tuple(victim.input_shape))
  labels = None
  if res.info["norm_identified"]:
    f = victim.apply(leak.variables, images)
    labels = f - res.x.shape[0] * jnp.asarray(res.rho, f.dtype)
  return attacks.Reconstruction(images=images, labels=labels, info=res.info)
