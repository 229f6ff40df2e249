"""Label inference from the last layer's gradient.

With cross-entropy, d loss / d bias_c = mean_i (p_ic - [y_i = c]): only the
classes present in the batch can have negative entries, and for B = 1 the one
negative entry is the label (iDLG, Zhao et al. 2020). For B > 1 the
"bias-corrected" strategy (breaching's default, after Geiping et al.) counts
labels: each class's count is -(B * g_c - B * mean softmax_c) read off the
bias gradient, with the softmax mean estimated at the current weights.
"""

import jax
import jax.numpy as jnp
import numpy as np


def _head(message):
  if "head" not in message:
    raise ValueError("label inference needs a message with a 'head' layer")
  return message["head"]


def idlg(message) -> jax.Array:
  """iDLG for B = 1: the class whose head-kernel row sum is most negative.

  Works with or without a bias (uses the kernel [F, C]: column c sums
  g_c * sum_f r_f, negative only for the true class when r >= 0).
  """
  head = _head(message)
  if "bias" in head:
    return jnp.argmin(head["bias"])[None]
  return jnp.argmin(jnp.sum(head["kernel"], axis=0))[None]


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
  bias = np.asarray(_head(message)["bias"], np.float64)  # [C]
  c = bias.shape[0]
  p = np.full(c, 1.0 / c) if mean_probs is None else np.asarray(mean_probs)
  # bias_c = p_c - n_c / B  ->  n_c = B (p_c - bias_c).
  est = batch_size * (p - bias)
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


def infer(message, batch_size: int, victim=None, variables=None,
          method: str = "auto") -> jax.Array:
  """Returns [B] inferred labels (sorted by class).

  method: "idlg" (B must be 1), "bias_corrected" (label counts with the mean
  softmax estimated from the model on a zero input), or "auto" (iDLG for
  B = 1, else bias_corrected).
  """
  if method == "auto":
    method = "idlg" if batch_size == 1 else "bias_corrected"
  if method == "idlg":
    if batch_size != 1:
      raise ValueError("iDLG label inference needs batch_size 1")
    return idlg(message)
  if method == "bias_corrected":
    mean_probs = None
    if victim is not None and variables is not None:
      x0 = jnp.zeros((1,) + tuple(victim.input_shape))
      mean_probs = jax.nn.softmax(victim.apply(variables, x0))[0]
    counts = label_counts(message, batch_size, mean_probs)
    return jnp.asarray(np.repeat(np.arange(len(counts)), counts), jnp.int32)
  raise ValueError(f"unknown label method {method!r}; known: auto, idlg, "
                   "bias_corrected")
