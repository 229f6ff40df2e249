"""The PyTorch twins of the GIT and WGAN-GP training steps compute what
gitjax computes, and ``train_speed`` reports them.

torch is optional: the tests that need it skip without it. The benchmark
without torch is tested everywhere, by making ``available()`` say False.
"""

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax
import pytest

from configs.benchmarks import train_speed as train_speed_config
from gitjax import inverter_setup
from gitjax import prior_setup
from gitjax import train_inverter
from gitjax import train_prior
from gitjax.benchmarks import torch_git_reference
from gitjax.benchmarks import torch_reference
from gitjax.benchmarks import torch_runtime
from gitjax.benchmarks import torch_train_reference as ttr
from gitjax.benchmarks import train_speed
from gitjax.errors import InputError

# ml_collections loads config files through importlib's deprecated
# load_module(); the warning is theirs.
pytestmark = pytest.mark.filterwarnings(
    "ignore:the load_module\\(\\) method is deprecated:DeprecationWarning")

RTOL = 1e-5  # Tiny shapes: float32 kernels agree closely.


def _count(tree) -> int:
  return sum(int(a.size) for a in jax.tree.leaves(tree))


# ------------------------------------------------------------- WGAN-GP ----


def _prior(image_size=16):
  """A tiny prior: at 16x16 the DCGAN has one ConvTranspose + BatchNorm2d
  block and the critic two convs, so every layer kind is exercised."""
  return mlc.ConfigDict(dict(
      seed=0, generator=dict(name="dcgan", latent_dim=4, width=4,
                             image_size=image_size, channels=3),
      critic=dict(width=4), optimizer=dict(lr_generator=1e-3,
                                           lr_critic=2e-3, b1=0.5, b2=0.9),
      batch_size=3, n_critic=2, gp_weight=10.0, drift=1e-3))


def _wgan(key):
  p = _prior()
  mdl = prior_setup.make_models(p)
  state = prior_setup.create_train_state(mdl, key)
  # Random biases and BatchNorm statistics: a fresh init (0, 1) would hide
  # a mix-up. Zero biases also meet leaky ReLU at exactly 0, where jax's
  # derivative is 1 and torch's 0.2: a width-4 generator's ReLUs zero whole
  # pixels, so fakes are exactly 0 there, and so is the critic's first
  # pre-activation.
  noisy = lambda tree, i: jax.tree.map(
      lambda a: a + jax.random.uniform(jax.random.fold_in(key, i + a.size),
                                       a.shape, minval=-0.1, maxval=0.1),
      tree)
  state["gen"]["batch_stats"] = noisy(state["gen"]["batch_stats"], 0)
  for part, i in (("gen", 1), ("critic", 2)):
    state[part]["params"] = {
        k: {**v, "bias": noisy(v["bias"], i)} if "bias" in v else v
        for k, v in state[part]["params"].items()}
  reals = jax.random.uniform(jax.random.fold_in(key, 1),
                             (2, 2, 3, 16, 16, 3), minval=-1.0, maxval=1.0)
  return p, mdl, state, reals


def test_wgan_models_have_gitjax_parameters_and_outputs(key):
  pytest.importorskip("torch")
  import torch  # pylint: disable=g-import-not-at-top
  p, mdl, state, reals = _wgan(key)
  step = ttr.make_wgan_step(mdl, state, p)
  assert sum(x.numel() for x in step.g_params) == _count(
      state["gen"]["params"])
  assert sum(x.numel() for x in step.c_params) == _count(
      state["critic"]["params"])
  z = jax.random.normal(key, (3, 4))
  with torch.no_grad():
    fake = step.gen(torch.from_numpy(np.array(z)))  # Batch statistics.
    d = step.critic(ttr.nchw(reals[0, 0]))
  ours, _ = mdl.gen.apply(state["gen"], z, train=True)
  np.testing.assert_allclose(fake.numpy().transpose(0, 2, 3, 1), ours,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      d.numpy(), mdl.critic.apply(state["critic"], reals[0, 0]), rtol=1e-5,
      atol=1e-6)


def test_wgan_losses_match_gitjax_before_and_after_updates(key):
  pytest.importorskip("torch")
  p, mdl, state, reals = _wgan(key)
  step = ttr.make_wgan_step(mdl, state, p)
  for t in range(2):
    k = jax.random.fold_in(key, 10 + t)
    state, ours = train_prior.train_step(mdl, state, reals[t], k,
                                         p.gp_weight, p.drift)
    ref = step.step(ttr.nchw(reals[t]), ttr.wgan_draws(k, 2, 3, 4))
    assert set(ref) == set(ours)
    diffs = ttr.compare(f"wgan step {t}", ours, ref, RTOL, 1e-7)
    assert all(np.isfinite(list(diffs.values())))
    if t == 0:
      _check_running_stats(state, step)


def _check_running_stats(state, step):
  """Only the generator update moved them, as in gitjax. (After the first
  update they drift apart: the gradient of the fc bias, which BatchNorm
  cancels, is float32 noise, and Adam scales noise to steps of ~lr.)"""
  for name, stats in state["gen"]["batch_stats"].items():
    bn = step.gen.get_submodule(name)
    cols = getattr(bn, "flax_cols", None)
    order = np.argsort(cols) if cols is not None else slice(None)
    np.testing.assert_allclose(bn.running_mean.numpy()[order],
                               stats["mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy()[order], stats["var"],
                               rtol=1e-5, atol=1e-6)


def test_a_missing_or_extra_leaf_is_one_line(key):
  pytest.importorskip("torch")
  p, mdl, state, _ = _wgan(key)
  params = dict(state["critic"]["params"])
  params["extra"] = {"kernel": jnp.zeros((2, 2))}
  with pytest.raises(torch_reference.MismatchError, match="extra") as err:
    ttr.build_critic(p.critic.width, 16, 3, params)
  assert "\n" not in str(err.value)
  del params["extra"], params["out"]
  with pytest.raises(torch_reference.MismatchError, match="out.weight"):
    ttr.build_critic(p.critic.width, 16, 3, params)


def test_a_loss_mismatch_is_one_line_naming_the_key(key):
  pytest.importorskip("torch")
  import torch  # pylint: disable=g-import-not-at-top
  p, mdl, state, reals = _wgan(key)
  step = ttr.make_wgan_step(mdl, state, p)
  with torch.no_grad():
    step.critic.conv0.weight.mul_(1.01)
  k = jax.random.key(7)
  _, ours = train_prior.train_step(mdl, state, reals[0], k, p.gp_weight,
                                   p.drift)
  ref = step.step(ttr.nchw(reals[0]), ttr.wgan_draws(k, 2, 3, 4))
  with pytest.raises(torch_reference.MismatchError, match="on wgan_gp: "
                     "critic_loss") as err:
    ttr.compare("wgan_gp", ours, ref, RTOL, 1e-7)
  assert "\n" not in str(err.value)


# ----------------------------------------------------------------- GIT ----


def _git_config():
  """configs/git_lenet.py's smoke budget with a narrower LeNet: 8x8 images,
  so conv0 and conv1's blocks upsample their previous estimates."""
  config = train_speed_config.get_config("smoke=True").git
  config.victim.update(channels=3, conv="auto")
  config.train.update(batch_size=4, num_steps=10, warmup_steps=3,
                      weight_decay=0.1, grad_clip=0.05)
  return config


def _git(key):
  g = _git_config()
  setup, shape = train_speed.git_setup(g)
  state = inverter_setup.init_state(setup, 0)
  images = np.asarray(jax.random.uniform(key, (12,) + shape))
  labels = np.asarray(jax.random.randint(key, (12,), 0, 10), np.int32)
  return g, setup, state, images, labels


@pytest.mark.parametrize("steps,warmup", [(10, 3), (5, 0), (1, 5), (40, 7)])
def test_schedule_is_the_train_optimizers(steps, warmup):
  """``schedule`` against optax's, built as ``make_train_optimizer`` does."""
  train = dict(num_steps=steps, lr=0.01, warmup_steps=warmup,
               final_lr_fraction=0.05)
  at, w = torch_git_reference.schedule(train)
  sched = optax.warmup_cosine_decay_schedule(0.0, 0.01, w, max(steps, w + 1),
                                             end_value=5e-4)
  for t in range(steps + 3):
    assert at(t) == pytest.approx(float(sched(t)), rel=1e-5, abs=1e-9)


def test_git_step_matches_gitjax_before_and_after_updates(key):
  pytest.importorskip("torch")
  g, setup, state, images, labels = _git(key)
  step = torch_git_reference.make_git_step(setup, state, images, labels, 4)
  lenet, git, names = torch_git_reference.build(setup, state.params)
  assert sum(p.numel() for p in lenet.parameters()) == _count(
      setup.variables["params"])
  assert sum(p.numel() for p in git.parameters()) == _count(state.params)
  assert len(names) == len(jax.tree.leaves(setup.variables["params"]))
  # From the end of warmup: the first update moves the parameters; the
  # gradient is clipped (grad_clip 0.05) and weight decay is on.
  _, warmup = torch_git_reference.schedule(dict(g.train))
  state = state._replace(opt_state=train_speed.at_warmup_end(
      state.opt_state, warmup))
  step.t = warmup
  step_fn = train_inverter.make_train_step(setup, 4)
  rng = jax.random.wrap_key_data(state.rng)
  losses = []
  for t in range(3):
    idx = train_inverter.sample_indices(rng, jnp.asarray(t), 4, 12)
    state, m = step_fn(state, images, labels, setup.variables)
    loss, norm = step.step(np.asarray(idx))
    ttr.compare(f"git step {t}", m, dict(loss=loss, grad_norm=norm), RTOL,
                1e-7)
    assert float(m["grad_norm"]) > 0.05  # The clip was active.
    losses.append(float(m["loss"]))
  assert len(set(losses)) == 3


def test_unsupported_git_settings_are_named(key):
  g, setup, _, _, _ = _git(key)
  assert torch_git_reference.supported(setup) is None
  g.leak.batch_size = 2
  setup2, _ = train_speed.git_setup(g)
  assert "B = 1" in torch_git_reference.supported(setup2)
  with pytest.raises(ValueError, match="no torch GIT step"):
    torch_git_reference.build(setup2, None)


# ----------------------------------------------------------- benchmark ----


def _no_torch(monkeypatch):
  monkeypatch.setattr(torch_runtime, "available", lambda: False)


def test_without_torch_results_have_no_torch_keys(monkeypatch, tmp_path):
  _no_torch(monkeypatch)
  config = train_speed_config.get_config("smoke=True")
  config.rounds = 1
  results = train_speed.run(config, str(tmp_path))
  rows = results["steps"]
  assert set(rows) == {"git", "wgan_gp"}
  assert all(r["ms_per_step"] > 0 and r["gflop_per_step"] > 0
             for r in rows.values())
  assert rows["wgan_gp"]["examples_per_step"] == 4 * 2  # batch x n_critic.
  keys = set(results) | {k for r in rows.values() for k in r}
  assert not [k for k in keys if "torch" in k]


def test_torch_on_without_torch_fails_before_timing(monkeypatch, tmp_path):
  _no_torch(monkeypatch)

  def timed(*args, **kwargs):
    raise AssertionError("timed before checking for torch")

  monkeypatch.setattr(train_speed.ig_speed, "matmul_flops_per_s", timed)
  monkeypatch.setattr(train_speed, "CELLS", {"git": timed, "wgan_gp": timed})
  config = train_speed_config.get_config("smoke=True,torch=on")
  with pytest.raises(InputError, match="torch is not importable") as err:
    train_speed.run(config, str(tmp_path))
  assert "\n" not in str(err.value)


def test_unknown_kind_is_refused(tmp_path):
  config = train_speed_config.get_config("smoke=True")
  config.kinds = ("git", "gan")
  with pytest.raises(InputError, match="config.kinds: unknown"):
    train_speed.run(config, str(tmp_path))


@pytest.mark.commands
def test_train_speed_reads_every_field_and_times_torch(tmp_path):
  from tests import test_benchmarks  # pylint: disable=g-import-not-at-top
  config = train_speed_config.get_config("smoke=True")
  results, unread = test_benchmarks.run_tracked(config, tmp_path)
  assert not unread, f"train_speed never reads {sorted(unread)}"
  if torch_runtime.available():
    for r in results["steps"].values():
      assert r["torch_ms_per_step"] > 0 and r["gitjax_over_torch"] > 0
      assert max(r["torch_check"].values()) < 1e-4
