"""Tests for gitjax.report: run directories, JSON, PNGs, logs, progress."""

import logging
import math

from absl import logging as absl_logging
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
import pytest

from gitjax import report


def test_config_json_and_txt(tmp_path):
  cfg = ml_collections.ConfigDict()
  cfg.seed = 0
  cfg.shape = (32, 32, 3)
  cfg.attack = dict(name="ig", lr=0.1, sigma=np.float32(0.5))
  cfg.mean = np.array([0.5, 0.25])
  report.write_config(tmp_path, cfg)
  got = report.read_json(tmp_path, "config.json")
  assert got == {"seed": 0, "shape": [32, 32, 3],
                 "attack": {"name": "ig", "lr": 0.1, "sigma": 0.5},
                 "mean": [0.5, 0.25]}
  assert "attack" in (tmp_path / "config.txt").read_text()
  report.write_config(tmp_path / "d", {"a": (1, 2)})
  assert report.read_json(tmp_path / "d", "config.json") == {"a": [1, 2]}


def test_write_json_nonfinite_as_null(tmp_path):
  obj = {"psnr": [20.0, math.inf, float("nan")], "x": jnp.array([1.0, -np.inf]),
         "n": np.int64(3), "ok": True, "none": None}
  path = report.write_json(tmp_path, "m.json", obj)
  with open(path) as f:
    text = f.read()
  assert "NaN" not in text and "Infinity" not in text
  assert report.read_json(tmp_path, "m.json") == {
      "psnr": [20.0, None, None], "x": [1.0, None], "n": 3, "ok": True,
      "none": None}
  assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # No tmp left.


def test_metrics_json_round_trip(tmp_path):
  workdir = str(tmp_path / "run")
  report.write_metrics(workdir, {"mean": {"psnr": 12.5}})
  assert report.read_json(workdir, "metrics.json") == {"mean": {"psnr": 12.5}}


def _png_size(path):
  with Image.open(path) as im:
    im.verify()
  with Image.open(path) as im:
    return im.format, im.size


def test_save_grid_rgb_with_titles(tmp_path):
  x = np.random.default_rng(0).uniform(size=(4, 8, 8, 3))
  path = report.save_grid(
      tmp_path / "grid.png", [x, 2 * x - 1], ["truth", "recon"],
      image_titles=[None, [f"{v:.1f} dB" for v in range(4)]],
      value_range=(0, 1), cell_px=40)
  fmt, (w, h) = _png_size(path)
  assert fmt == "PNG"
  assert abs(w - (90 + 4 * 40)) <= 2 and abs(h - 2 * (40 + 14)) <= 2


def test_save_grid_grayscale_wraps(tmp_path):
  x = np.zeros((20, 6, 6, 1))
  path = report.save_grid(tmp_path / "g.png", [x, x[..., 0]], max_cols=8,
                          cell_px=16)
  _, (w, h) = _png_size(path)
  assert abs(w - 8 * 16) <= 2 and abs(h - 3 * 2 * 16) <= 2  # 3 lines x 2.
  with pytest.raises(ValueError, match="share"):
    report.save_grid(tmp_path / "bad.png", [x, x[:3]])


def test_plot_curves(tmp_path):
  path = report.plot_curves(
      tmp_path / "c.png", [1, 2, 4, 8], {"ig": [10, 12, float("nan"), 15],
                                         "ggl": [9, 9.5, 10, None]},
      "batch size", "PSNR (dB)", logx=True, title="t")
  assert _png_size(path)[0] == "PNG"
  with pytest.raises(ValueError, match="points"):
    report.plot_curves(tmp_path / "d.png", [1, 2], {"a": [1]}, "x", "y")


def test_setup_logging_writes_once(tmp_path):
  root = logging.getLogger()
  level = root.level
  try:
    report.setup_logging(tmp_path)
    report.setup_logging(tmp_path)
    n = sum(getattr(h, "_gitjax_log", False) for h in root.handlers)
    assert n == 1
    absl_logging.info("hello %d", 7)
    with report.progress(4, "attack", log_every=2, disable=True) as bar:
      for step in bar:
        bar.record(loss=jnp.float32(1.0 / (step + 1)))
    text = (tmp_path / "log.txt").read_text()
    assert text.count("hello 7") == 1
    assert "attack step 2/4: loss=0.5" in text
    assert "attack step 4/4: loss=0.25" in text
    report.setup_logging(tmp_path / "other")  # Replaces the handler.
    absl_logging.info("second run")
    assert "second run" not in (tmp_path / "log.txt").read_text()
    assert "second run" in (tmp_path / "other" / "log.txt").read_text()
  finally:
    for h in list(root.handlers):
      if getattr(h, "_gitjax_log", False):
        root.removeHandler(h)
        h.close()
    root.setLevel(level)


def test_progress_over_iterable(capsys):
  bar = report.progress(["a", "b", "c"], "items", mininterval=0)
  seen = []
  for item in bar:
    seen.append(item)
    bar.record(loss=0.5)
  bar.close()
  assert seen == ["a", "b", "c"] and bar.step == 3
  assert "items step 3/3: loss=0.5" in bar.summary()
  err = capsys.readouterr().err
  assert "3/3" in err and "loss=0.5" in err


def test_progress_advanced_in_chunks(capsys):
  bar = report.progress(10, "chunks", mininterval=0)
  bar.advance(4)
  assert bar.step == 4
  bar.record(loss=0.25)
  bar.advance(6)
  bar.close()
  assert "chunks step 10/10: loss=0.25" in bar.summary()
  assert "10/10" in capsys.readouterr().err
