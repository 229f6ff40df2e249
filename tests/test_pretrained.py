"""Shipped weights: export, load by name, hash checks, the real manifest."""

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import common
from configs import git_lenet
from configs import prior_dcgan_celeba
from gitjax import data as data_lib
from gitjax import experiments
from gitjax import loading
from gitjax import pretrained
from gitjax import train_inverter
from gitjax import train_prior
from gitjax.errors import InputError
from launch import export_weights
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config():
  config = git_lenet.get_config("smoke=True")
  config.victim = dict(name="mlp", hidden=(4,))
  config.data.limit = 16
  config.train.update(batch_size=8, num_steps=2, warmup_steps=0)
  config.checkpoint_every = 2
  config.log_every = 1
  config.eval_every = 0
  return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished 2-step inverter run (MLP victim, 8x8 embedded images)."""
  workdir = str(tmp_path_factory.mktemp("trained"))
  assert train_inverter.train_and_evaluate(_config(), workdir)["finished"]
  return workdir


@pytest.fixture
def weights(tmp_path, monkeypatch):
  """An empty weights folder in place of gitjax/weights."""
  path = str(tmp_path / "weights")
  monkeypatch.setattr(pretrained, "WEIGHTS_DIR", path)
  return path


def _export(workdir, name="tiny", **kw):
  return export_weights.export_run(workdir, name, "inverter",
                                   command="python -m launch.train_inverter",
                                   **kw)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _npz(weights, name="tiny"):
  return os.path.join(weights, f"{name}.npz")


def test_name_loads_the_same_params_as_the_workdir(trained, weights):
  entry = _export(trained)
  assert entry["kind"] == "inverter" and entry["step"] == 2
  assert entry["data"] and entry["dtype"] == "float32"
  assert re.fullmatch(r"\d{4}-\d\d-\d\d", entry["date"])
  assert "eval_mse" in entry["metrics"]
  assert entry["run_info"]["num_classes"] > 0
  assert pretrained.names() == ["tiny"] and pretrained.is_name("tiny")
  shipped, run = loading.inverter("tiny"), loading.inverter(trained)
  assert shipped.workdir == "pretrained:tiny" and shipped.step == run.step
  assert shipped.setup.image_shape == run.setup.image_shape
  assert jax.tree.structure(shipped.params) == jax.tree.structure(run.params)
  for a, b in zip(_leaves(shipped.params), _leaves(run.params)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  assert loading.inverter("tiny") is shipped  # Cached.
  assert loading.inverter(shipped.workdir) is shipped  # Round-trips.
  with pytest.raises(InputError, match="hold step 2 only; step 1"):
    loading.inverter("tiny", step=1)
  with pytest.raises(InputError, match="of kind 'inverter', not 'generator'"):
    loading.generator("tiny")


def test_git_attack_runs_with_a_name(trained, weights, key):
  _export(trained)
  config = common.base_config()
  config.data.update(image_size=8, batch_size=1)
  config.victim = dict(name="mlp", hidden=(4,))
  case = experiments.make_case(config)
  recs = [experiments.attack_case(case, dict(name="git", inverter_dir=d),
                                  key) for d in ("tiny", trained)]
  assert recs[0].info["inverter_dir"] == "pretrained:tiny"
  np.testing.assert_array_equal(recs[0].images, recs[1].images)


def test_benchmarks_take_a_name_without_training(trained, weights,
                                                 tmp_path):
  """A benchmark's inverter ``dir`` may be a shipped name: loaded, never
  trained into (the ``train`` block is there and would be used for a
  workdir without checkpoints)."""
  from gitjax.benchmarks import git_lenet_cifar10 as bench
  _export(trained)
  config = ml_collections.ConfigDict(dict(inverters=dict(
      git=dict(dir="tiny", train=_config().to_dict()))))
  got = bench.trained_inverter(config, "git", str(tmp_path))
  assert got.workdir == "pretrained:tiny" and got.step == 2
  assert os.listdir(tmp_path) == ["weights"]  # Nothing trained here.


def test_tampered_or_missing_file_is_a_hash_error(trained, weights):
  want = _export(trained)["files"]["tiny.npz"]
  loading.inverter("tiny")
  with open(_npz(weights), "r+b") as f:
    f.seek(100)
    byte = f.read(1)
    f.seek(100)
    f.write(bytes([byte[0] ^ 0xFF]))
  match = (f"{re.escape(_npz(weights))} has sha256 [0-9a-f]{{64}}, "
           f"expected {want}")
  with pytest.raises(InputError, match=match):
    pretrained.verify("tiny")
  with pytest.raises(InputError, match=match):
    loading.inverter("tiny")  # The cached load is not reused.
  os.remove(_npz(weights))
  with pytest.raises(InputError, match=r"tiny.npz has sha256 \(file missing\)"
                     f", expected {want}"):
    loading.inverter("tiny")


def test_unknown_name_lists_the_known_ones(trained, weights):
  _export(trained)
  _export(trained, "other")
  with pytest.raises(InputError, match="unknown pretrained weights 'nope'; "
                     "known: other, tiny$"):
    pretrained.entry("nope")
  assert not pretrained.is_name("nope")
  with pytest.raises(loading.RunNotFoundError, match="no inverter training"):
    loading.inverter("nope")  # Not a name: a (missing) workdir.


def test_paths_are_never_names(trained, weights, tmp_path, monkeypatch):
  _export(trained)
  assert not pretrained.is_name(os.path.join(".", "tiny"))
  assert not pretrained.is_name(tmp_path / "tiny")  # PathLike.
  monkeypatch.chdir(tmp_path)
  os.mkdir("tiny")  # An existing directory wins.
  assert not pretrained.is_name("tiny")


def test_existing_name_is_refused_without_replace(trained, weights):
  _export(trained)
  before = helpers.snapshot(weights)
  with pytest.raises(InputError, match="'tiny' already exist.*--replace"):
    _export(trained)
  with pytest.raises(InputError, match="bad weights name"):
    _export(trained, "../x")
  assert helpers.snapshot(weights) == before
  _export(trained, replace=True, dtype="float16")
  assert pretrained.entry("tiny")["dtype"] == "float16"
  assert sorted(os.listdir(weights)) == ["manifest.json", "tiny.npz"]


def test_float16_weights_load_within_tolerance(trained, weights):
  _export(trained, dtype="float16")
  with np.load(_npz(weights), allow_pickle=False) as z:
    assert {z[k].dtype for k in z.files} == {np.dtype("float16")}
  shipped, run = loading.inverter("tiny"), loading.inverter(trained)
  for a, b in zip(_leaves(shipped.params), _leaves(run.params)):
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_generator_by_name(tmp_path, weights):
  config = prior_dcgan_celeba.get_config("smoke=True")
  config.update(steps=2, progress=False, log_every=2, sample_every=0,
                checkpoint_every=2)
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(48, 8, 8, 3)).astype(np.float32)
  ds = data_lib.from_arrays(images, np.zeros(48, np.int32))
  workdir = str(tmp_path / "prior")
  train_prior.train_and_evaluate(config, workdir, ds)
  entry = export_weights.export_run(workdir, "gen", "generator",
                                    command="c", data="noise")
  assert entry["step"] == 2 and entry["run_info"] is None
  (gen, shipped), (_, run) = loading.generator("gen"), loading.generator(
      workdir)
  assert gen.image_shape == (8, 8, 3)
  for a, b in zip(_leaves(shipped), _leaves(run)):
    np.testing.assert_array_equal(a, b)


def test_load_tree_checks_paths_and_shapes(weights):
  tree = {"a": np.ones((2, 3), np.float32), "b": [np.zeros(4, np.int32)]}
  pretrained.export("generator", "t", tree, config={}, run_info=None, step=1,
                    data="d", metrics={}, command="c")
  got = pretrained.load_tree("t", tree)
  assert got["b"][0].dtype == np.int32
  with pytest.raises(InputError, match="missing \\['c'\\], unexpected"):
    pretrained.load_tree("t", {"c": tree["a"], "b": tree["b"]})
  with pytest.raises(InputError, match=r"a has shape \(2, 3\), the model "
                     r"expects \(3, 2\)"):
    pretrained.load_tree("t", {"a": np.ones((3, 2)), "b": tree["b"]})


def test_launcher_bad_input_is_one_line(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run(
      [sys.executable, "-m", "launch.export_weights",
       f"--workdir={tmp_path}/missing", "--name=x", "--command=c"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
      check=False)
  assert out.returncode == 2, out.stderr
  assert out.stderr.strip().splitlines()[-1].startswith(
      "launch.export_weights: error: no inverter training run in")


def test_shipped_manifest_verifies_and_lists_every_file():
  manifest = pretrained.read_manifest()
  assert manifest["format"] == pretrained.FORMAT
  listed = set()
  for name, e in manifest["entries"].items():
    pretrained.verify(name)
    assert e["kind"] in pretrained.KINDS and e["dtype"] in pretrained.DTYPES
    listed |= set(e["files"])
  with open(os.path.join(pretrained.WEIGHTS_DIR, "manifest.json"),
            encoding="utf-8") as f:
    assert json.load(f) == manifest
  stray = set(os.listdir(pretrained.WEIGHTS_DIR)) - listed - {"manifest.json"}
  assert not stray, f"files in gitjax/weights not in the manifest: {stray}"


@pytest.mark.parametrize("data", ["celeba", "cifar10"])
def test_shipped_priors_load_by_name_and_carry_their_coverage(data):
  name = common.SHIPPED_PRIORS[data]
  e = pretrained.entry(name)
  assert e["kind"] == "generator" and e["data"]
  # The manifest carries the prior's measured coverage (issue 14's figure).
  cov = e["metrics"]["coverage"]
  assert cov["count"] == 64 and cov["psnr_01"] > cov["psnr_pm1"]
  gen, variables = loading.generator(name)
  assert gen.image_shape == (32, 32, 3)
  x, _ = gen.apply(variables, jax.random.normal(jax.random.key(0),
                                                (2, gen.latent_dim)))
  assert x.shape == (2, 32, 32, 3)
  assert bool(jnp.all(jnp.abs(x) <= 1.0)) and float(jnp.std(x)) > 0.05
  # Total shipped weights stay small (issue 14: at most 20 MB in all).
  total = sum(os.path.getsize(os.path.join(pretrained.WEIGHTS_DIR, f))
              for f in os.listdir(pretrained.WEIGHTS_DIR))
  assert total < 20e6
