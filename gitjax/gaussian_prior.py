"""A Gaussian image prior: a mean image and a low-rank-plus-isotropic
covariance, fit to public images and shipped small.

With D pixels and rank k, the covariance is

  C = U diag(variances) U^T + residual (I - U U^T),

U ([D, k], orthonormal) the top principal directions of the public
images, ``variances`` their variances and ``residual`` the mean variance of
the other D - k directions. C and C^-1 apply in O(D k), and the prior
stores D (k + 1) + k + 1 numbers (3.2 MB at 32x32x3 and k = 512 in
float16) where the full covariance would take D^2. Images are on [0, 1].
"""

import functools
import io
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import pretrained
from gitjax import report
from gitjax.errors import InputError

KIND = "gaussian_prior"


class GaussianPrior(NamedTuple):
  """``mean`` [H, W, C]; ``basis`` [D, k]; ``variances`` [k] (descending);
  ``residual``: a scalar array. A pytree: pass it through jit as data."""
  mean: jax.Array
  basis: jax.Array
  variances: jax.Array
  residual: jax.Array

  @property
  def image_shape(self) -> tuple:
    return tuple(self.mean.shape)

  def _apply(self, v, diag, rest):
    """``rest * v + U (diag - rest) U^T v`` on [..., D] (flattened
    images)."""
    coef = v @ self.basis
    return rest * v + (coef * (diag - rest)) @ self.basis.T

  def covariance(self, v):
    """C v for v [..., D]."""
    return self._apply(v, self.variances, self.residual)

  def precision(self, v):
    """C^-1 v for v [..., D]."""
    return self._apply(v, 1.0 / self.variances, 1.0 / self.residual)


def fit(images, rank: int) -> GaussianPrior:
  """Fits the prior to [N, H, W, C] images on [0, 1].

  Raises:
    InputError: fewer than 2 images, pixels outside [0, 1], or a rank not in
      [1, D - 1].
  """
  x = np.asarray(images, np.float64)
  if x.ndim != 4 or x.shape[0] < 2:
    raise InputError(f"gaussian prior: need [N >= 2, H, W, C] images; got "
                     f"shape {x.shape}")
  if x.min() < 0.0 or x.max() > 1.0:
    raise InputError("gaussian prior: images must be on [0, 1]; got values "
                     f"in [{x.min():.3g}, {x.max():.3g}]")
  n, d = x.shape[0], int(np.prod(x.shape[1:]))
  if not 1 <= rank < d:
    raise InputError(f"gaussian prior: rank must be in [1, {d - 1}]; got "
                     f"{rank}")
  flat = x.reshape(n, d)
  mean = flat.mean(0)
  cov = np.cov(flat, rowvar=False).reshape(d, d)
  lam, u = np.linalg.eigh(cov)
  lam, u = lam[::-1], u[:, ::-1]
  residual = max(float(lam[rank:].mean()), 1e-8)
  return GaussianPrior(
      mean=jnp.asarray(mean.reshape(x.shape[1:]), jnp.float32),
      basis=jnp.asarray(u[:, :rank], jnp.float32),
      variances=jnp.asarray(np.maximum(lam[:rank], residual), jnp.float32),
      residual=jnp.asarray(residual, jnp.float32))


def _like(image_shape, rank: int) -> GaussianPrior:
  d = int(np.prod(image_shape))
  f32 = jnp.float32
  return GaussianPrior(jax.ShapeDtypeStruct(tuple(image_shape), f32),
                       jax.ShapeDtypeStruct((d, rank), f32),
                       jax.ShapeDtypeStruct((rank,), f32),
                       jax.ShapeDtypeStruct((), f32))


def save(prior: GaussianPrior, path: str) -> None:
  """Writes ``prior`` to a new ``.npz`` (never overwrites)."""
  if not str(path).endswith(".npz"):
    raise InputError(f"gaussian prior: {path} must end in .npz")
  if os.path.exists(path):
    raise InputError(f"gaussian prior: {path} exists; not overwritten")
  buf = io.BytesIO()
  np.savez(buf, **{k: np.asarray(v) for k, v in prior._asdict().items()})
  report.write_bytes(path, buf.getvalue())


@functools.lru_cache(maxsize=4)
def _load_npz(path: str, stat: tuple) -> GaussianPrior:
  del stat  # Part of the cache key: a changed file reloads.
  try:
    with np.load(path, allow_pickle=False) as z:
      tree = {k: jnp.asarray(z[k], jnp.float32) for k in GaussianPrior._fields}
  except (OSError, ValueError, KeyError) as e:
    raise InputError(f"gaussian prior {path} cannot be read ({e})") from e
  d = int(np.prod(tree["mean"].shape))
  k = tree["variances"].shape[0] if tree["variances"].ndim == 1 else -1
  if tree["basis"].shape != (d, k) or tree["residual"].shape != ():
    raise InputError(f"gaussian prior {path}: inconsistent shapes "
                     f"{ {n: v.shape for n, v in tree.items()} }")
  return _orthonormal(GaussianPrior(**tree))


def load(name: str, weights_dir: str | None = None) -> GaussianPrior:
  """The prior ``name``: a shipped name (hash verified; ``pretrained``) or
  the path of a ``save``d ``.npz``; cached until its file changes.

  Raises:
    InputError: unknown name or missing file, another kind of weights, a
      hash mismatch, or an entry without ``config.image_shape`` and
      ``config.rank``.
  """
  if str(name).endswith(".npz"):
    if not os.path.isfile(name):
      raise InputError(f"gaussian prior {name}: no such file")
    st = os.stat(name)
    return _load_npz(os.path.abspath(name), (st.st_mtime_ns, st.st_size))
  e = pretrained.entry(name, weights_dir)
  if e["kind"] != KIND:
    raise InputError(f"pretrained weights {name!r} are of kind "
                     f"{e['kind']!r}, not {KIND!r}")
  cfg = e.get("config") or {}
  if "image_shape" not in cfg or "rank" not in cfg:
    raise InputError(f"pretrained weights {name!r}: the manifest entry's "
                     "config has no image_shape and rank")
  return _load_shipped(name, weights_dir,
                       pretrained.fingerprint(name, weights_dir))


@functools.lru_cache(maxsize=4)
def _load_shipped(name: str, weights_dir: str | None,
                  key: str) -> GaussianPrior:
  del key  # Part of the cache key: changed weights reload.
  cfg = pretrained.entry(name, weights_dir)["config"]
  tree = pretrained.load_tree(name, _like(cfg["image_shape"],
                                          int(cfg["rank"]))._asdict(),
                              weights_dir)
  return _orthonormal(GaussianPrior(**tree))


def _orthonormal(prior: GaussianPrior) -> GaussianPrior:
  """The basis made orthonormal again (float16 storage rounds it; C and C^-1
  are only inverses for an orthonormal basis); the same span."""
  q, r = jnp.linalg.qr(prior.basis.astype(jnp.float32))
  return prior._replace(basis=q * jnp.sign(jnp.diagonal(r)))


def export(name: str, images, rank: int, *, data: str, command: str,
           dtype: str = "float16", replace: bool = False,
           directory: str | None = None) -> dict:
  """Fits the prior to ``images`` and ships it as ``name`` (``pretrained``);
  returns the manifest entry. The fraction of the pixel variance the rank-k
  part carries is recorded in its metrics."""
  prior = fit(images, rank)
  d = int(np.prod(prior.image_shape))
  total = float(jnp.sum(prior.variances) + (d - rank) * prior.residual)
  metrics = dict(num_images=int(np.shape(images)[0]),
                 variance_in_basis=float(jnp.sum(prior.variances)) / total)
  config = dict(image_shape=list(prior.image_shape), rank=int(rank))
  return pretrained.export(KIND, name, prior._asdict(), config=config,
                           run_info=None, step=0, data=data, metrics=metrics,
                           command=command, dtype=dtype, replace=replace,
                           directory=directory)
