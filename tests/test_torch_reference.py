"""The PyTorch reference of the IG step computes what gitjax computes.

torch is optional: the tests that need it skip without it. The benchmark
without torch is tested everywhere, by making ``available()`` say False.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.benchmarks import ig_speed as ig_speed_config
from gitjax import models
from gitjax import victim as victim_lib
from gitjax.attacks import engine
from gitjax.attacks import optimizers
from gitjax.benchmarks import ig_speed
from gitjax.benchmarks import torch_reference
from gitjax.benchmarks import torch_runtime
from gitjax.errors import InputError

# (model, width, image size): the ConvNet needs >= 9x9; at 18x18 its head
# sees a 2x2 map, so the NHWC -> NCHW row order of the head is exercised.
CASES = [("convnet", 2, 18), ("resnet18", 2, 8)]


def _perturbed(variables, key):
  """Random biases, BatchNorm scales, offsets and statistics: a fresh init
  (1, 0, 0, 1) would not catch a swapped or missing copy."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(variables)
  out = []
  for i, (path, a) in enumerate(flat):
    noise = jax.random.normal(jax.random.fold_in(key, i), a.shape)
    name = str(getattr(path[-1], "key", ""))
    if name == "var":
      a = a * jnp.exp(0.3 * noise)
    elif name in ("mean", "scale", "bias"):
      a = a + 0.1 * noise
    out.append(a)
  return jax.tree.unflatten(treedef, out)


def _victim(name, width, size, key):
  victim = models.make_victim(name, input_shape=(size, size, 3),
                              num_classes=10, width=width)
  variables = _perturbed(victim_lib.init_variables(victim, key),
                         jax.random.fold_in(key, 1))
  return victim, variables


def _problem(name, width, size, key, iterations=8):
  victim, variables = _victim(name, width, size, key)
  problem, settings, data, carry = ig_speed.setup_problem(
      victim, variables, batch=2, restarts=1, iterations=iterations)
  return problem, settings, data, carry, ig_speed.chunk_kwargs(problem,
                                                               settings)


@pytest.mark.parametrize("name,width,size", CASES)
def test_model_has_the_victims_parameters_and_logits(name, width, size, key):
  pytest.importorskip("torch")
  import torch  # pylint: disable=g-import-not-at-top
  victim, variables = _victim(name, width, size, key)
  model = torch_reference.build_model(victim, variables)
  leaves = jax.tree.leaves(variables["params"])
  assert len(list(model.parameters())) == len(leaves)
  assert sum(p.numel() for p in model.parameters()) == sum(
      a.size for a in leaves)
  x = jax.random.uniform(jax.random.fold_in(key, 2), (3, size, size, 3))
  ours = jax.jit(victim.apply)(variables, x)
  with torch.no_grad():
    theirs = model(torch.from_numpy(np.array(x).transpose(0, 3, 1, 2)))
  np.testing.assert_allclose(theirs.numpy(), ours, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,width,size", CASES)
def test_objective_and_steps_match_gitjax(name, width, size, key):
  pytest.importorskip("torch")
  problem, settings, data, carry, kw = _problem(name, width, size, key)
  x0 = carry.vars["x"][0]
  step = torch_reference.make_ig_step(problem, settings, data, x0)
  ours = ig_speed.gitjax_probe(problem, data, carry, kw)
  ref = torch_reference.probe(step)
  found = torch_reference.compare(name, ours, ref)
  assert found["objective_abs_diff"] <= 1e-5 * max(1.0, ours["objective"])
  assert found["step_x_flipped_fraction"] == 0.0
  # All 8 iterations (lr x0.1 from updates 3, 5 and 7 on). Signs of ~0
  # gradients flip from step 2 on and the flips spread, so the trajectories
  # agree loosely; without the lr decay most pixels would differ.
  step = torch_reference.make_ig_step(problem, settings, data, x0)
  theirs = [float(step.step()) for _ in range(8)]
  assert step.opt.param_groups[0]["lr"] == pytest.approx(1e-4)
  last, losses = engine.run_chunk(carry, data, 8, **kw)
  np.testing.assert_allclose(theirs, np.asarray(losses)[0], rtol=1e-2)
  x8 = step.x.detach().numpy().transpose(0, 2, 3, 1)
  assert np.mean(np.abs(x8 - np.asarray(last.vars["x"][0])) > 1e-5) < 0.1


def test_a_mismatch_is_one_line_naming_the_cell(key):
  pytest.importorskip("torch")
  import torch  # pylint: disable=g-import-not-at-top
  problem, settings, data, carry, kw = _problem("convnet", 2, 18, key)
  step = torch_reference.make_ig_step(problem, settings, data,
                                      carry.vars["x"][0])
  with torch.no_grad():
    step.model.get_submodule("conv3").weight.mul_(1.01)
  with pytest.raises(torch_reference.MismatchError) as err:
    torch_reference.compare("convnet_w2_b2",
                            ig_speed.gitjax_probe(problem, data, carry, kw),
                            torch_reference.probe(step))
  assert "convnet_w2_b2" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("iterations", [1, 8, 20, 4000])
def test_step_lr_is_gitjax_step_schedule(iterations):
  sched = optimizers.schedule("step", 0.1, iterations)
  for t in sorted({0, 1, 2, 3, 7, 8, 12, 17, 1500, 2500, 3500, 3999}):
    assert torch_reference.step_lr(0.1, iterations, t) == pytest.approx(
        float(sched(t)), rel=1e-6)


def _no_torch(monkeypatch):
  monkeypatch.setattr(torch_runtime, "available", lambda: False)


def _cells_only(monkeypatch):
  """Skips the restart comparison and the FLOP count, which compile four
  more programs (the commands tier runs the whole smoke benchmark)."""
  monkeypatch.setattr(ig_speed, "_restarts", lambda config: {})
  monkeypatch.setattr(ig_speed, "step_flops", lambda *args: 1e6)


def test_without_torch_results_have_no_torch_keys(monkeypatch, tmp_path):
  _no_torch(monkeypatch)
  _cells_only(monkeypatch)
  results = ig_speed.run(ig_speed_config.get_config("smoke=True"),
                         str(tmp_path))
  rows = list(results["models"].values())
  assert rows and all(r["ms_per_iteration"] > 0 for r in rows)
  # The double-backprop step is timed beside the forward-over-reverse one.
  assert results["second_order"] == "forward"
  assert all(r["reverse_ms_per_iteration"] > 0 and r["reverse_over_forward"]
             > 0 for r in rows)
  keys = set(results) | {k for r in rows for k in r}
  assert not [k for k in keys if "torch" in k]


def test_torch_on_without_torch_fails_before_timing(monkeypatch, tmp_path):
  _no_torch(monkeypatch)

  def timed(*args, **kwargs):
    raise AssertionError("timed before checking for torch")

  monkeypatch.setattr(ig_speed, "matmul_flops_per_s", timed)
  monkeypatch.setattr(ig_speed, "time_cell", timed)
  config = ig_speed_config.get_config("smoke=True,torch=on")
  with pytest.raises(InputError, match="torch is not importable") as err:
    ig_speed.run(config, str(tmp_path))
  assert "\n" not in str(err.value) and "[compare]" in str(err.value)


def test_unknown_torch_mode_is_refused():
  with pytest.raises(InputError, match="config.torch"):
    torch_runtime.resolve("yes")


def test_benchmark_times_torch_beside_gitjax(monkeypatch, tmp_path):
  pytest.importorskip("torch")
  _cells_only(monkeypatch)
  config = ig_speed_config.get_config("smoke=True,torch=on")
  results = ig_speed.run(config, str(tmp_path))
  assert results["torch_threads"] == 1
  assert results["torch_matmul_gflop_per_s"] > 0
  for row in results["models"].values():
    assert row["torch_ms_per_iteration"] > 0
    assert row["gitjax_over_torch"] > 0
    assert row["torch_fraction_of_matmul"] > 0
    assert row["torch_check"]["objective_abs_diff"] < 1e-4


def test_timed_step_is_a_whole_runs_step(key):
  """ig_speed times chunks of a few iterations, but the step of a whole
  run: on a CPU the leak is compiled in, as IG's ``constants="auto"`` does
  for runs of at least ``CONSTANTS_MIN_STEPS`` trial steps."""
  *_, kw = _problem("convnet", 2, 18, key, iterations=1)
  assert kw["options"].iterations == 1
  assert kw["options"].constants == (jax.default_backend() == "cpu")
