"""Analytic inversion of a fully connected first layer with a bias.

For z = W^T x + b on one example, dL/dW[:, j] = x * dL/dz_j and dL/db_j =
dL/dz_j, so every unit j with dL/db_j != 0 gives x = dW[:, j] / db[j]
exactly (Phong et al. 2017; breaching's ``analytic`` attack). We use the
least-squares combination over all units, x = dW db / (db . db), which equals
every single ratio for one example and is the best-conditioned.

For a batch (B > 1) each ratio is a mixture of the batch's inputs; units
active for one example only (common with ReLU) give that example exactly, and
all such units of one example agree. We return the B largest groups of
coinciding ratios (``invert_batch``; exact when every example has a unit of
its own, reported as ``method="grouped_ratios"`` in ``info``).
"""

import math

import jax.numpy as jnp
import numpy as np

from gitjax import leak as leak_lib
from gitjax.attacks import labels as labels_lib
from gitjax.attacks import Reconstruction

FIELDS = ("name", "labels", "min_bias_grad", "rtol")


def first_dense_layer(message, input_shape) -> tuple[str, dict]:
  """Finds the fully connected layer that reads the flattened input.

  Raises ValueError unless the victim has no convolution and a Dense layer
  with kernel [prod(input_shape), H] and a bias.
  """
  d = math.prod(input_shape)
  if not isinstance(message, dict):
    raise ValueError("the analytic attack needs a message tree of layers")
  for name, layer in message.items():
    if isinstance(layer, dict) and getattr(layer.get("kernel"), "ndim", 2) > 2:
      raise ValueError(
          f"the analytic attack needs a fully connected first layer; layer "
          f"{name!r} is a convolution")
  for name, layer in message.items():
    kernel = layer.get("kernel") if isinstance(layer, dict) else None
    if kernel is not None and kernel.ndim == 2 and kernel.shape[0] == d:
      if "bias" not in layer:
        raise ValueError(f"the analytic attack needs a first layer with a "
                         f"bias; Dense layer {name!r} has none")
      return name, layer
  raise ValueError(
      f"the analytic attack needs a fully connected first layer with a bias "
      f"reading the {d} input values; none found among {sorted(message)}")


def invert_single(kernel_grad, bias_grad) -> jnp.ndarray:
  """x [D] from dW [D, H] and db [H] of one example (least squares)."""
  return kernel_grad @ bias_grad / jnp.sum(jnp.square(bias_grad))


def invert_batch(kernel_grad, bias_grad, batch_size: int,
                 min_bias_grad: float = 1e-8, rtol: float = 1e-4):
  """[B, D] candidates for a batch from the per-unit ratios.

  Units that only one example activates (ReLU) all give that example's
  input exactly, so the B largest groups of coinciding ratios are returned
  (group means); mixtures from units shared by several examples scatter and
  form no group. Exact when every example has a unit of its own.
  """
  kg = np.asarray(kernel_grad, np.float64)
  bg = np.asarray(bias_grad, np.float64)
  units = np.flatnonzero(np.abs(bg) > min_bias_grad * np.abs(bg).max())
  if units.size < batch_size:
    raise ValueError(f"only {units.size} units with a nonzero bias gradient "
                     f"for a batch of {batch_size}")
  ratios = (kg[:, units] / bg[units]).T  # [U, D]
  sq = np.sum(np.square(ratios), 1)
  dist = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * ratios @ ratios.T,
                            0))  # [U, U]
  near = dist <= rtol * np.sqrt(np.median(sq))
  free = np.ones(units.size, bool)
  out = []
  for _ in range(batch_size):
    counts = np.where(free, (near & free[None]).sum(1), -1)
    i = int(np.argmax(counts))
    members = near[i] & free
    out.append(ratios[members].mean(0))
    free &= ~members
    if not free.any() and len(out) < batch_size:
      out.extend([out[-1]] * (batch_size - len(out)))
      break
  return jnp.asarray(np.stack(out), jnp.float32)


def attack(leak, victim, config, key) -> Reconstruction:
  """Analytic first-layer inversion; labels by iDLG/LLG unless shared."""
  del key
  cfg = dict(config.to_dict() if hasattr(config, "to_dict") else config)
  unknown = set(cfg) - set(FIELDS)
  if unknown:
    raise ValueError(f"unknown analytic attack config key(s) "
                     f"{sorted(unknown)}; known: {sorted(FIELDS)}")
  leak_lib.validate(leak, victim)
  name, layer = first_dense_layer(leak.message, victim.input_shape)
  n = (leak.batch_size or 1) * leak.num_clients
  if n == 1:
    x = invert_single(layer["kernel"], layer["bias"])[None]
    method = "exact"
  else:
    x = invert_batch(layer["kernel"], layer["bias"], n,
                     cfg.get("min_bias_grad", 1e-8), cfg.get("rtol", 1e-4))
    method = "grouped_ratios"
  x = x.reshape((n,) + tuple(victim.input_shape))
  if leak.labels is not None:
    labels, source = jnp.asarray(leak.labels), "shared"
  elif victim.loss == "squared":
    labels, source = None, "none"
  else:
    mode = cfg.get("labels", "auto")
    labels, source = labels_lib.from_leak(leak, victim, mode), mode
  info = dict(layer=name, method=method, label_source=source)
  return Reconstruction(images=x, labels=labels, info=info)
