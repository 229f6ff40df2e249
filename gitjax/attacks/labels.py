"""Label inference from the last layer's gradient.

With cross-entropy, the head's gradients over a batch of B examples with
features r_i [F] and softmax p_i [C] are

  d loss / d bias_c     = (1/B) sum_i (p_ic - [y_i = c])          (1)
  d loss / d kernel_:,c = (1/B) sum_i r_i (p_ic - [y_i = c])      (2)

For B = 1 the one negative bias entry is the label (iDLG, Zhao et al. 2020).
For B > 1, (1) gives the label counts n_c = B (pbar_c - g_c) once the batch
mean softmax pbar is known. Methods differ in how they estimate pbar:

* ``bias_corrected`` (breaching's default): the model's softmax on a dummy
  (zero) input. Poor when the softmax depends strongly on the input (DLG's
  LeNet at random init has logits of scale ~4).
* ``llg`` (default for B > 1; after Wainakh et al.'s LLG, which also reads
  the kernel gradient): the ratio of (2) to (1) summed over the classes with
  a positive bias gradient, sum_c kernel_:,c / sum_c g_c, is a weighted mean
  of the batch's features r_i (weights p_ic for classes absent from the
  batch). The head applied to it gives pbar. At random init on LeNet, MLP and
  ConvNet victims it recovers the exact counts for B = 4 ... 32 where the
  zero-input estimate often fails (see tests/test_labels.py).

FedAvg updates and multi-client aggregates are handled by ``from_leak``,
which rescales the message into an average gradient first.
"""

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import protocols

METHODS = ("auto", "idlg", "bias_corrected", "llg")


def _head(message):
  if not isinstance(message, dict) or "head" not in message:
    raise ValueError("label inference needs a message with a 'head' layer")
  return message["head"]


def _bias(message, method):
  head = _head(message)
  if "bias" not in head:
    raise ValueError(f"label inference method {method!r} needs a head with a "
                     "bias")
  return head["bias"]


def idlg(message) -> jax.Array:
  """iDLG for B = 1: the class whose head gradient is most negative.

  Works with or without a bias (uses the kernel [F, C]: column c sums
  g_c * sum_f r_f, negative only for the true class when r >= 0).

  Returns:
    [1] int32 label.
  """
  head = _head(message)
  if "bias" in head and bool(jnp.any(head["bias"] != 0)):
    return jnp.argmin(head["bias"])[None].astype(jnp.int32)
  # No bias, or a bias gradient zeroed by a defense (pruning): the kernel.
  return jnp.argmin(jnp.sum(head["kernel"], axis=0))[None].astype(jnp.int32)


def label_counts(message, batch_size: int, mean_probs=None) -> np.ndarray:
  """Recovers the label multiset of a batch from the head's bias gradient.

  Args:
    message: the FedSGD gradient (mean over the batch).
    batch_size: B.
    mean_probs: [C] estimate of the batch-mean softmax; None assumes the
      uniform 1/C (exact at random init of a balanced head, and the usual
      first guess).

  Returns:
    [C] int counts summing to B.
  """
  bias = np.asarray(_bias(message, "bias_corrected"), np.float64)  # [C]
  c = bias.shape[0]
  p = np.full(c, 1.0 / c) if mean_probs is None else np.asarray(
      mean_probs, np.float64)
  if p.shape != (c,):
    raise ValueError(f"mean_probs has shape {p.shape}; expected ({c},)")
  if not np.all(np.isfinite(p)):
    p = np.full(c, 1.0 / c)
  # bias_c = p_c - n_c / B  ->  n_c = B (p_c - bias_c). A defense can zero
  # or corrupt entries (pruning, noise): non-finite estimates count as 0.
  est = np.nan_to_num(batch_size * (p - bias), nan=0.0, posinf=0.0,
                      neginf=0.0)
  counts = np.floor(np.clip(est, 0, None)).astype(int)
  # Hand out what flooring left, to the largest remainders.
  rest = batch_size - counts.sum()
  if rest > 0:
    order = np.argsort(-(est - counts))
    for i in order[:rest]:
      counts[i] += 1
  while counts.sum() > batch_size:
    counts[np.argmax(counts)] -= 1
  return counts


def feature_mean_softmax(message, head_params) -> jax.Array:
  """LLG-style estimate of the batch-mean softmax from the head's gradient.

  Args:
    message: gradient tree with ``head`` kernel [F, C] and bias [C].
    head_params: the head's current parameters (kernel [F, C], bias [C]).

  Returns:
    [C] softmax of the head at the weighted feature mean recovered from the
    classes with positive bias gradient; the uniform 1/C when no class has
    one (a bias gradient zeroed by pruning, for example).
  """
  head = _head(message)
  g_b = _bias(message, "llg")
  pos = (g_b > 0).astype(g_b.dtype)
  denom = jnp.sum(g_b * pos)
  r_bar = head["kernel"] @ pos / jnp.where(denom > 0, denom, 1.0)  # [F]
  probs = jax.nn.softmax(r_bar @ head_params["kernel"] + head_params["bias"])
  uniform = jnp.full_like(probs, 1.0 / probs.shape[0])
  return jnp.where((denom > 0) & jnp.all(jnp.isfinite(probs)), probs, uniform)


def _counts_to_labels(counts) -> jax.Array:
  return jnp.asarray(np.repeat(np.arange(len(counts)), counts), jnp.int32)


def infer(message, batch_size: int, victim=None, variables=None,
          method: str = "auto") -> jax.Array:
  """Returns [B] inferred labels (sorted by class).

  Args:
    message: the (average) gradient; see ``from_leak`` for FedAvg updates.
    batch_size: B, the number of examples behind the gradient.
    victim, variables: the model (needed by ``bias_corrected`` and ``llg``).
    method: "idlg" (B must be 1), "bias_corrected" (mean softmax of the model
      on a zero input), "llg" (mean softmax at the feature mean read off the
      head gradient), or "auto" (iDLG for B = 1, else llg).
  """
  if method not in METHODS:
    raise ValueError(f"unknown label method {method!r}; known: {METHODS}")
  if method == "auto":
    method = "idlg" if batch_size == 1 else "llg"
  if method == "idlg":
    if batch_size != 1:
      raise ValueError("iDLG label inference needs batch_size 1; got "
                       f"{batch_size}")
    return idlg(message)
  if victim is None or variables is None:
    raise ValueError(f"label method {method!r} needs the victim and its "
                     "variables")
  if method == "bias_corrected":
    x0 = jnp.zeros((1,) + tuple(victim.input_shape))
    mean_probs = jax.nn.softmax(victim.apply(variables, x0))[0]
  else:
    mean_probs = feature_mean_softmax(message, variables["params"]["head"])
  return _counts_to_labels(label_counts(message, batch_size, mean_probs))


def average_gradient(leak, batch_size: int | None = None):
  """The leak's message as an average gradient over all its examples.

  A FedAvg update is -lr times the sum of S local gradients, so it is divided
  by -lr S; FedSGD messages are returned as they are. Multi-client means are
  already averages over all clients' examples. ``batch_size`` (per client)
  overrides ``leak.batch_size``.
  """
  b = batch_size or leak.batch_size
  if leak.protocol == "fedsgd":
    return leak.message
  if leak.protocol == "fedavg":
    cfg = dict(leak.protocol_config)
    if b is None:
      raise ValueError("label inference on a FedAvg update needs the batch "
                       "size")
    steps = protocols.num_local_steps(
        b, cfg.get("local_batch_size"), cfg.get("epochs", 1))
    scale = -1.0 / (cfg["lr"] * steps)
    return jax.tree.map(lambda m: m * scale, leak.message)
  raise ValueError(f"label inference: unknown protocol {leak.protocol!r}")


def from_leak(leak, victim, method: str = "auto",
              batch_size: int | None = None) -> jax.Array:
  """Infers the [K * B] labels behind a leak (all clients' examples).

  ``batch_size`` (per client) overrides ``leak.batch_size``.
  """
  b = batch_size or leak.batch_size
  if b is None:
    raise ValueError("label inference needs the batch size; the leak does not "
                     "tell it (pass batch_size in the attack config)")
  n = b * leak.num_clients
  return infer(average_gradient(leak, b), n, victim, leak.variables, method)


def from_leak_with_fallback(leak, victim, method: str = "auto"
                            ) -> tuple[jax.Array, str]:
  """(labels [K * B], source): shared labels, else inferred from the leak.

  For attacks that must go on whatever the defense did to the head: when
  ``method`` fails (raises, or gives the wrong count), "bias_corrected" is
  tried, and failing that the head kernel's column sums (one label per
  example, ranked). ``source`` names what was used.
  """
  if leak.labels is not None:
    return jnp.asarray(leak.labels), "shared"
  n = leak.batch_size * leak.num_clients
  for m in (method, "bias_corrected"):
    try:
      with np.errstate(invalid="ignore"):  # NaN counts are caught below.
        ys = from_leak(leak, victim, m)
    except (ValueError, FloatingPointError):
      continue
    if ys.shape == (n,):
      return ys, m
  kernel = jnp.asarray(leak.message["head"]["kernel"])  # [F, C]
  order = jnp.argsort(jnp.sum(kernel, axis=0))  # Most negative first.
  return jnp.resize(order, (n,)).astype(jnp.int32), "kernel_rank"
