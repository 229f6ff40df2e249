"""Benchmarks read every field of their configs, and run what they say.

Each benchmark runs in its config's smoke mode on a ``Tracked`` view of the
config that records every leaf read; a leaf nothing reads is a field that a
command-line override would change without effect, so the test fails naming
it. The benchmarks that need a trained prior or inverter (GGL, GI-SMN, GIT)
train a smoke-sized one first and are the ``commands`` tier.
"""

import importlib

import jax
import ml_collections as mlc
import numpy as np
import pytest

from gitjax import experiments
from gitjax.errors import InputError

# ml_collections loads config files through importlib's deprecated
# load_module(); the warning is theirs.
pytestmark = pytest.mark.filterwarnings(
    "ignore:the load_module\\(\\) method is deprecated:DeprecationWarning")


class Tracked:
  """A read-only view of a ConfigDict that records the leaves read.

  Reading a leaf (a value that is not a ConfigDict, or an empty ConfigDict)
  adds its dotted path to ``read``; ``to_dict()`` reads every leaf below.
  """

  def __init__(self, node, path: str, read: set):
    object.__setattr__(self, "_node", node)
    object.__setattr__(self, "_path", path)
    object.__setattr__(self, "_read", read)

  def _at(self, key):
    value, path = self._node[key], f"{self._path}{key}"
    if isinstance(value, mlc.ConfigDict) and len(value):
      return Tracked(value, path + ".", self._read)
    self._read.add(path)
    return value

  def __getattr__(self, key):
    if key not in self._node:
      raise AttributeError(f"{self._path}{key}")
    return self._at(key)

  def __getitem__(self, key):
    if key not in self._node:
      raise KeyError(f"{self._path}{key}")
    return self._at(key)

  def __setattr__(self, key, value):
    raise TypeError(f"benchmarks must not write config field "
                    f"{self._path}{key}")

  def get(self, key, default=None):
    return self._at(key) if key in self._node else default

  def __contains__(self, key):
    return key in self._node

  def __iter__(self):
    return iter(self._node.keys())

  def __len__(self):
    return len(self._node)

  def keys(self):
    return self._node.keys()

  def items(self):
    return [(k, self._at(k)) for k in self._node.keys()]

  def values(self):
    return [self._at(k) for k in self._node.keys()]

  def to_dict(self):
    self._read.update(leaves(self._node, self._path))
    return self._node.to_dict()


def leaves(node, path: str = "") -> set[str]:
  """Dotted paths of a ConfigDict's leaves (empty ConfigDicts included)."""
  out = set()
  for k in node.keys():
    v = node[k]
    if isinstance(v, mlc.ConfigDict) and len(v):
      out |= leaves(v, f"{path}{k}.")
    else:
      out.add(f"{path}{k}")
  return out


def run_tracked(config, workdir) -> tuple[dict, set]:
  """Checks ``config`` as ``run_benchmark`` does, runs its benchmark on a
  ``Tracked`` view; returns (results, the leaves never read)."""
  name = experiments.check_benchmark(config)
  read = {"benchmark"}  # run_benchmark's dispatch.
  module = importlib.import_module(f"gitjax.benchmarks.{name}")
  results = module.run(Tracked(config, "", read), str(workdir))
  return results, leaves(config) - read


def _smoke(name: str, arg: str = "smoke=True"):
  module = importlib.import_module(f"configs.benchmarks.{name}")
  return module.get_config(arg)


FAST = ("dlg_lenet_cifar10", "ig_convnet_cifar10", "per_example_grads",
        "tensor_synthetic", "tensor_mnist", "ig_speed")


@pytest.mark.parametrize("name", ["dlg_lenet_cifar10", "per_example_grads",
                                  "tensor_synthetic"])
def test_benchmark_reads_every_field(name, tmp_path):
  results, unread = run_tracked(_smoke(name), tmp_path)
  assert results
  assert not unread, f"{name} never reads config fields {sorted(unread)}"


@pytest.mark.commands
@pytest.mark.parametrize("name", [n for n in FAST if n not in (
    "dlg_lenet_cifar10", "per_example_grads", "tensor_synthetic")])
def test_slower_benchmark_reads_every_field(name, tmp_path):
  results, unread = run_tracked(_smoke(name), tmp_path)
  assert results
  assert not unread, f"{name} never reads config fields {sorted(unread)}"


def test_tracker_names_an_unread_field(tmp_path):
  config = _smoke("per_example_grads")
  config.unused = dict(depth=3)
  _, unread = run_tracked(config, tmp_path)
  assert unread == {"unused.depth"}


def test_attack_name_override_runs_that_attack(tmp_path):
  config = _smoke("dlg_lenet_cifar10")
  config.attack.name = "ig"
  results = experiments.run_benchmark(config, str(tmp_path))
  assert results["attack_name"] == "ig"
  assert results["attack"]["name"] == "ig"
  assert results["label_source"]  # IG's label inference ran.


@pytest.mark.parametrize("change,match", [
    (lambda c: c.attack.update(name="telepathy"),
     "config.attack.name: unknown attack 'telepathy'"),
    (lambda c: c.attack.update(iterations=0),
     "config.attack.iterations must be >= 1"),
    (lambda c: c.data.update(name="imagenet21k"), "config.data.name"),
    (lambda c: c.update(benchmark="nope"), "config.benchmark"),
])
def test_bad_benchmark_config_is_one_line(change, match, tmp_path):
  config = _smoke("dlg_lenet_cifar10")
  change(config)
  with pytest.raises(InputError, match=match) as e:
    experiments.run_benchmark(config, str(tmp_path / "w"))
  assert "\n" not in str(e.value)
  assert not (tmp_path / "w").exists()


def test_bad_case_override_names_the_case(tmp_path):
  config = _smoke("ig_convnet_cifar10")
  config.bench.cases.b2.data.bacth_size = 3
  with pytest.raises(InputError, match="config.bench.cases.b2.data.bacth_size"):
    experiments.run_benchmark(config, str(tmp_path / "w"))
  config = _smoke("ig_convnet_cifar10")
  config.bench.cases.b2.data.batch_size = 0
  with pytest.raises(InputError, match="config.bench.cases.b2: config.data."
                     "batch_size must be >= 1"):
    experiments.run_benchmark(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_bad_case_attack_or_baseline_override_names_it():
  from configs.benchmarks import gismn_cifar10
  config = gismn_cifar10.get_config("cpu=True")
  assert experiments.check_benchmark(config) == "gismn_cifar10"
  config.bench.cases.b1.baselines.ig.restarts = 0
  with pytest.raises(InputError, match="config.bench.cases.b1.baselines.ig."
                     "restarts must be >= 1"):
    experiments.check_benchmark(config)
  config = gismn_cifar10.get_config("cpu=True")
  config.bench.cases.b1_noise.attack.restarts = 0
  with pytest.raises(InputError, match="config.bench.cases.b1_noise: config."
                     "attack.restarts must be >= 1"):
    experiments.check_benchmark(config)


@pytest.mark.parametrize("label", ["gismn", "truth"])
def test_baseline_with_a_taken_label_is_refused(label, tmp_path):
  config = _smoke("gismn_cifar10")
  config.baselines[label] = dict(config.baselines.ig)
  with pytest.raises(InputError, match=f"config.baselines.{label}: the "
                     "label is taken") as e:
    experiments.run_benchmark(config, str(tmp_path / "w"))
  assert "\n" not in str(e.value)
  assert not (tmp_path / "w").exists()
  from gitjax.benchmarks import compare  # A sweep called directly, too.
  with pytest.raises(InputError, match=f"config.baselines.{label}: the "
                     "label is taken"):
    compare.attack_blocks(config)


def test_gismn_refine_arg_reaches_every_cases_attack():
  from configs.benchmarks import gismn_cifar10
  config = gismn_cifar10.get_config("cpu=True")
  assert experiments.check_benchmark(config) == "gismn_cifar10"
  for name, overrides in config.bench.cases.items():
    case = experiments.with_overrides(config, overrides, name)
    steps = 1000 if name == "b1_prune90" else 300
    assert experiments.plain(case.attack)["refine"] == dict(
        iterations=steps, lr=0.003, progress=False)
  config = gismn_cifar10.get_config("cpu=True,refine=0")
  for name, overrides in config.bench.cases.items():
    case = experiments.with_overrides(config, overrides, name)
    assert "refine" not in experiments.plain(case.attack)


def test_sweep_writes_every_image_and_its_scores(monkeypatch, tmp_path):
  from gitjax import attacks
  from gitjax.benchmarks import compare
  config = _smoke("gismn_cifar10")
  config.eval.lpips_net, config.eval.lpips_also = None, ()
  config.bench.cases = dict(b2=dict(data=dict(batch_size=2),
                                    leak=dict(defense=[]),
                                    bench=dict(num_batches=2)))

  def fake(cases, blocks, keys):  # The truth, reversed; then a gray batch.
    out = {}
    for i, label in enumerate(blocks):
      gray = lambda c: (0.5 - np.asarray(c.leak.mean)) / np.asarray(
          c.leak.std) + 0 * c.truth.images
      recs = [attacks.Reconstruction(
          c.truth.images[::-1] if i == 0 else gray(c), None, {})
              for c in cases]
      out[label] = (recs, 0.0)
    return out

  monkeypatch.setattr(compare, "run_attacks", fake)
  row = compare.sweep(config, str(tmp_path))["cases"]["b2"]
  with np.load(tmp_path / "images_b2.npz") as f:
    images = dict(f)
  assert sorted(images) == ["gismn", "ig", "truth"]
  assert images["truth"].shape == (2, 2, 32, 32, 3)
  # Stored in the truth's order (Hungarian), so the reversal is undone.
  np.testing.assert_allclose(images["gismn"], images["truth"], atol=1e-5)
  np.testing.assert_allclose(images["ig"], 0.5, atol=1e-5)
  per = row["ig_per_image"]
  assert len(per["psnr"]) == 4 and len(per["ssim"]) == 4
  mse = ((images["ig"] - images["truth"]) ** 2).mean(axis=(2, 3, 4))
  np.testing.assert_allclose(per["mse"], mse.ravel(), rtol=1e-5)
  assert row["ig"]["psnr"] == pytest.approx(np.mean(per["psnr"]))
  assert (tmp_path / "grid_b2.png").exists()


def test_sweep_attacks_each_case_with_its_own_blocks(monkeypatch, tmp_path):
  from gitjax.benchmarks import compare
  config = _smoke("gismn_cifar10")
  assert config.bench.cases.b1.attack.restarts == 6  # Overrides at B = 1.
  seen = []

  def record(cases, blocks, keys):
    seen.append({k: experiments.plain(b) for k, b in blocks.items()})
    seen[-1]["counts"] = (len(cases), len(keys))
    seen[-1]["keys"] = [jax.random.key_data(k).tolist() for k in keys]
    raise KeyboardInterrupt  # Stop before any attack runs.

  monkeypatch.setattr(compare, "run_attacks", record)
  with pytest.raises(KeyboardInterrupt):
    compare.sweep(config, str(tmp_path))
  assert seen[0]["gismn"]["restarts"] == 6
  assert seen[0]["gismn"]["finalists"] == 2
  assert seen[0]["gismn"]["steps"] == config.attack.steps  # Merged.
  assert seen[0]["ig"]["restarts"] == 3
  assert seen[0]["counts"] == (1, 1)
  # A case's own bench.num_batches: more batches, the same first keys.
  config.bench.cases.b1.bench = dict(num_batches=2)
  with pytest.raises(KeyboardInterrupt):
    compare.sweep(config, str(tmp_path))
  assert seen[1]["counts"] == (2, 2)
  assert seen[1]["keys"][0] == seen[0]["keys"][0]
  # bench.first_batch: other images (held out), the same keys.
  from gitjax.benchmarks import compare as cmp
  b1 = lambda: experiments.with_overrides(config, config.bench.cases.b1,
                                          "b1")
  assert config.bench.first_batch == 0
  assert cmp.sample_seeds(b1(), 2) == [1, 101]
  config.bench.first_batch = 8
  assert cmp.sample_seeds(b1(), 2) == [801, 901]
  config.bench.first_batch = -1  # (ConfigDict refuses a non-integer.)
  with pytest.raises(ValueError, match="config.bench.first_batch must be"):
    cmp.sample_seeds(b1(), 2)


@pytest.fixture(scope="module")
def priors(tmp_path_factory):
  """Smoke-sized DCGAN and style priors (2 steps each)."""
  from configs import prior_dcgan_celeba
  from configs import prior_style_cifar10
  from gitjax import train_prior
  root = tmp_path_factory.mktemp("priors")
  out = {}
  for name, module in (("dcgan", prior_dcgan_celeba),
                       ("style", prior_style_cifar10)):
    prior = module.get_config("smoke=True")
    prior.steps, prior.progress = 2, False
    train_prior.train_and_evaluate(prior, str(root / name))
    out[name] = str(root / name)
  return out


@pytest.mark.commands
@pytest.mark.parametrize("name,prior", [("ggl_celeba_defenses", "dcgan"),
                                        ("gismn_cifar10", "style")])
def test_comparison_benchmark_reads_every_field(name, prior, priors,
                                                tmp_path):
  config = _smoke(name, f"smoke=True,generator_dir={priors[prior]}")
  results, unread = run_tracked(config, tmp_path)
  assert results
  assert not unread, f"{name} never reads config fields {sorted(unread)}"
  rows = results.get("defenses") or results.get("cases")
  row = next(iter(rows.values()))
  assert {"ig", config.attack.name} <= set(row)
  if name == "gismn_cifar10":  # The B = 1 case's own blocks, recorded.
    assert row["gismn_block"]["restarts"] == 6
    assert row["ig_block"]["restarts"] == 3


@pytest.mark.commands
@pytest.mark.parametrize("name", ["git_lenet_cifar10", "git_robustness"])
def test_git_benchmark_reads_every_field(name, tmp_path):
  """Trains its smoke inverters into the workdir, from its own config."""
  results, unread = run_tracked(_smoke(name), tmp_path)
  assert results
  assert not unread, f"{name} never reads config fields {sorted(unread)}"


def test_git_benchmark_records_a_shipped_inverter():
  """A shipped inverter has no run directory: its training record comes
  from the manifest (the benchmark stopped there when given one)."""
  from gitjax import loading
  from gitjax import pretrained
  from gitjax.benchmarks import git_lenet_cifar10 as bench
  record = bench._train_record(loading.inverter("git_lenet_cifar10"))
  metrics = pretrained.entry("git_lenet_cifar10")["metrics"]
  assert record["workdir"] == "pretrained:git_lenet_cifar10"
  assert record["step"] == 4000
  assert record["train_loss"] == metrics["loss"]
  assert record["examples_per_s"] == metrics["examples_per_s"]


def test_git_benchmark_noise_false_leaves_the_noise_inverter_out():
  from configs.benchmarks import git_lenet_cifar10
  assert "git_noise" in git_lenet_cifar10.get_config("smoke=True").inverters
  config = git_lenet_cifar10.get_config("smoke=True,noise=False,batch=4")
  assert set(config.inverters) == {"git", "lti", "flat"}
  config = git_lenet_cifar10.get_config("budget=cpu,noise=False,batch=4")
  assert set(config.inverters) == {"git", "lti"}
  assert config.inverters.git.train.leak.batch_size == 4


def test_gitjax_never_imports_configs():
  import pathlib
  root = pathlib.Path(experiments.__file__).parent
  bad = [str(p.relative_to(root.parent)) for p in root.rglob("*.py")
         if "from configs" in p.read_text() or "import configs" in
         p.read_text()]
  assert not bad, f"gitjax/ modules import configs/: {bad}"


def test_prior_coverage_reads_every_field_and_scores_held_out_images(
    tmp_path):
  from configs import prior_dcgan_celeba
  from gitjax import train_prior
  prior = prior_dcgan_celeba.get_config("smoke=True")
  prior.steps, prior.progress = 2, False
  prior.coverage.update(every=0, final_images=0)
  train_prior.train_and_evaluate(prior, str(tmp_path / "prior"))
  config = _smoke("prior_coverage",
                  f"smoke=True,generator_dir={tmp_path / 'prior'}")
  results, unread = run_tracked(config, tmp_path)
  assert not unread, f"prior_coverage never reads {sorted(unread)}"
  assert results["count"] == 2 and results["holdout"] == prior.holdout
  assert np.isfinite(results["psnr_pm1"])
  assert results["psnr_01"] > results["psnr_pm1"]
  assert (tmp_path / "coverage_fits.png").exists()
  config.prior.generator_dir = str(tmp_path / "nothing")
  with pytest.raises(Exception, match="generator_dir must be the workdir"):
    run_tracked(config, tmp_path)


def test_every_benchmark_config_passes_its_checks():
  """Each benchmark config, at its GPU and CPU budgets, with every case's
  overrides (a case may only set fields its block has)."""
  import pathlib
  root = pathlib.Path(__file__).parent.parent / "configs" / "benchmarks"
  names = sorted(p.stem for p in root.glob("*.py") if p.stem != "__init__")
  assert "ggl_celeba_defenses" in names
  for name in names:
    module = importlib.import_module(f"configs.benchmarks.{name}")
    for arg in ("", "cpu=True"):
      try:
        config = module.get_config(arg)
      except ValueError as e:
        assert "unknown config arg" in str(e), (name, arg, e)
        continue
      assert experiments.check_benchmark(config) == config.benchmark, name
