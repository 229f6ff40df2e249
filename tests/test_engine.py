"""The trial loop: restarts, best iterates, non-finite trials, hooks, tx."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gitjax import static
from gitjax.attacks import engine
from gitjax.attacks import optimizers


def _quadratic(v, target):
  return jnp.sum(jnp.square(v - target))


def _log_loss(v, data):
  del data
  return jnp.sum(jnp.square(v - 1.0)) + 0.0 * jnp.sum(jnp.log(v))


def _opts(**kw):
  return engine.Options(progress=False, **kw)


def test_restarts_run_together_and_the_best_is_picked():
  init = jnp.asarray([[5.0], [0.5], [-3.0]])  # [R=3, 1]
  tx = optimizers.transformation("sgd", 0.05, 5)
  best, info = engine.optimize(_quadratic, init, tx, jnp.asarray([1.0]),
                               options=_opts(iterations=5))
  assert info["restarts"] == 3 and info["best_trial"] == 1
  assert info["trial_losses"][1] == min(info["trial_losses"])
  assert abs(float(best[0]) - 1.0) < 0.5
  assert info["nonfinite_trials"] == []


def test_nonfinite_trial_is_masked_and_reported():
  init = jnp.asarray([[-0.5], [3.0], [2.0]])  # log(-0.5) is NaN.
  tx = optimizers.transformation("adam", 0.1, 40)
  best, info = engine.optimize(_log_loss, init, tx,
                               options=_opts(iterations=40))
  assert info["nonfinite_trials"] == [0] and info["died_at"][0] == 0
  assert info["trial_losses"][0] == float("inf")
  assert info["best_trial"] in (1, 2) and np.isfinite(info["loss"])
  assert all(np.isfinite(info["final_losses"][1:]))
  assert abs(float(best[0]) - 1.0) < 0.5


def test_any_optax_transformation_runs_and_keep_last_returns_the_end():
  init = jnp.asarray([[3.0]])
  tx = optax.chain(optax.clip(0.1), optax.sgd(1.0))  # 0.1 per step to 1.
  last, info = engine.optimize(_quadratic, init, tx, jnp.asarray([1.0]),
                               options=_opts(iterations=10, keep="last"))
  np.testing.assert_allclose(last, [2.0], atol=1e-6)
  best, _ = engine.optimize(_quadratic, init, tx, jnp.asarray([1.0]),
                            options=_opts(iterations=10))
  np.testing.assert_allclose(best, [2.0], atol=1e-6)  # Also the best here.
  assert info["iterations"] == 10


def test_on_chunk_sees_every_boundary_and_changes_data():
  calls = []

  def hook(step, v, data):
    calls.append((step, float(v[0, 0])))
    return jnp.asarray([10.0]) if step >= 4 else None  # Move the target.

  tx = optax.sgd(0.25)  # Halves the distance to the target per step.
  best, info = engine.optimize(
      _quadratic, jnp.asarray([[0.0]]), tx, jnp.asarray([2.0]),
      options=_opts(iterations=10, chunk=3, stops=(4,), keep="last"),
      on_chunk=hook)
  assert [c[0] for c in calls] == [0, 3, 4, 7]  # Chunks 3, 1, 3, 3.
  assert info["history"]["iteration"] == [3, 4, 7, 10]
  np.testing.assert_allclose(calls[2][1], 2.0 * (1 - 0.5**4), rtol=1e-5)
  x4 = 2.0 * (1 - 0.5**4)
  np.testing.assert_allclose(best, [10.0 - (10.0 - x4) * 0.5**6], rtol=1e-5)


def test_paused_and_resumed_run_equals_one_run_bit_for_bit():
  init = jnp.asarray([[5.0], [0.5], [-3.0]])
  tx = optimizers.transformation("adam", 0.1, 10)
  target = jnp.asarray([1.0])
  seen = []
  hook = lambda step, v, data: seen.append(step)
  opts = _opts(iterations=10, chunk=3, keep="best")
  whole, info = engine.optimize(_quadratic, init, tx, target, options=opts,
                                on_chunk=hook)
  first, paused = engine.optimize(_quadratic, init, tx, target,
                                  options=opts, on_chunk=hook, until=4)
  assert int(paused["carry"].step) == 4 and paused["iterations"] == 4
  assert "carry" not in info
  rest, resumed = engine.optimize(_quadratic, None, tx, target, options=opts,
                                  on_chunk=hook, resume=paused["carry"])
  np.testing.assert_array_equal(np.asarray(rest), np.asarray(whole))
  assert resumed["trial_losses"] == info["trial_losses"]
  assert resumed["history"]["iteration"] == [6, 9, 10]
  assert seen == [0, 3, 6, 9] + [0, 3] + [4, 6, 9]  # Chunk ends kept.
  assert "carry" not in resumed


def test_bad_pause_and_resume_raise():
  tx = optimizers.transformation("sgd", 0.1, 4)
  init, target = jnp.asarray([[0.0]]), jnp.asarray([1.0])
  for until in (0, 5):
    with pytest.raises(ValueError, match=r"until must be in \[1, 4\] and "
                       f"past the resume step 0; got {until}"):
      engine.optimize(_quadratic, init, tx, target,
                      options=_opts(iterations=4), until=until)
  _, paused = engine.optimize(_quadratic, init, tx, target,
                              options=_opts(iterations=4), until=2)
  with pytest.raises(ValueError, match="past the resume step 2; got 2"):
    engine.optimize(_quadratic, None, tx, target, options=_opts(iterations=4),
                    until=2, resume=paused["carry"])


def test_lbfgs_line_search_reuses_its_value():
  tx = optimizers.transformation("lbfgs", 1.0, 20)
  best, info = engine.optimize(_quadratic, jnp.asarray([[4.0, -2.0]]), tx,
                               jnp.asarray([1.0, 1.0]),
                               options=_opts(iterations=20))
  np.testing.assert_allclose(best, [1.0, 1.0], atol=1e-5)
  assert info["loss"] < 1e-10


def test_trials_sharded_over_devices_match_unsharded():
  init = jnp.linspace(-2.0, 2.0, 8)[:, None]  # [R=8, 1]; 8 CPU devices.
  tx = optimizers.transformation("adam", 0.1, 6, signed=True)
  target = jnp.asarray([0.3])
  _, a = engine.optimize(_quadratic, init, tx, target,
                         options=_opts(iterations=6), select=False)
  best, b = engine.optimize(_quadratic, init, tx, target, select=False,
                            options=_opts(iterations=6, shard_trials=True))
  np.testing.assert_allclose(a["trial_losses"], b["trial_losses"],
                             rtol=1e-5)
  assert len(best.sharding.device_set) == jax.device_count()
  with pytest.raises(ValueError, match="divisible by the 8 devices"):
    engine.optimize(_quadratic, init[:3], tx, target,
                    options=_opts(iterations=6, shard_trials=True))


def test_bad_options_and_names_raise():
  for kw, msg in ((dict(loop="gpu"), "unknown loop 'gpu'"),
                  (dict(trial_axis="pmap"), "unknown trial_axis 'pmap'"),
                  (dict(keep="worst"), "unknown keep 'worst'"),
                  (dict(iterations=0), "iterations must be >= 1")):
    with pytest.raises(ValueError, match=msg):
      engine.check_options(engine.Options(**kw))
  with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
    optimizers.transformation("rmsprop")
  with pytest.raises(ValueError, match="unknown schedule 'cyclic'"):
    optimizers.transformation(schedule_name="cyclic")
  assert optimizers.transformation("adam", 0.1) is optimizers.transformation(
      "adam", 0.1)  # Cached: the compiled step is reused.


@pytest.mark.parametrize("loop", ["host", "device"])
def test_data_compiled_in_as_constants_gives_the_same_run(loop):
  init = jnp.asarray([[5.0], [0.5], [-3.0]])
  tx = optimizers.transformation("adam", 0.1, 6)
  target = jnp.asarray([1.0])
  runs = [engine.optimize(_quadratic, init, tx, target,
                          options=_opts(iterations=6, chunk=2, loop=loop,
                                        constants=c))
          for c in (False, True)]
  np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-6)
  assert runs[0][1]["trial_losses"] == pytest.approx(
      runs[1][1]["trial_losses"], rel=1e-6)
  # The same arrays find the same program (one compile for every chunk);
  # optimize frees the leak's programs when it returns.
  const = engine.Constant({"t": target})
  assert const == engine.Constant({"t": target})
  assert const != engine.Constant({"t": jnp.asarray([1.0])})
  # Keyed by type too: another static argument holding the same arrays is
  # a different program's key.
  # pylint: disable-next=protected-access
  other = type("Other", (static.Keyed,), {"_key": const._key})()
  assert other != const
  carry = engine.init_carry(init, tx)
  kw = dict(loss_fn=_quadratic, project=None, tx=tx, per_trial=False,
            options=_opts(iterations=6, chunk=2, loop="host",
                          constants=True))
  # pylint: disable=protected-access
  engine._one_step_c.clear_cache()
  for _ in range(2):
    carry, _ = engine.run_chunk(carry, target, 2, **kw)
  assert engine._one_step_c.cache_size() == 1
  # Freeing them leaves the programs of runs without constants compiled.
  engine.optimize(_quadratic, init, tx, target,
                  options=kw["options"]._replace(constants=False))
  kept = engine._one_step.cache_size()
  assert kept >= 1
  engine.optimize(_quadratic, init, tx, target, options=kw["options"])
  assert engine._one_step_c.cache_size() == 0
  assert engine._one_step.cache_size() == kept


def _conv_loss(v, target):
  """A convolution's output against a target (gradients: two more)."""
  y = jax.lax.conv_general_dilated(
      v.reshape(1, 6, 6, 2), jnp.ones((3, 3, 2, 2)) * 0.1, (1, 1), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jnp.sum(jnp.square(y.ravel() - target))


@pytest.mark.parametrize("trials", [3, engine.MAX_UNROLLED_TRIALS + 1])
def test_loop_bodies_with_convolutions_match_the_host_loop(trials):
  """The device loop and lax.map over trials (loop bodies, canonical
  convolutions on a CPU) give the host loop's vmapped run."""
  init = jax.random.normal(jax.random.key(0), (trials, 72))
  target = jnp.linspace(-1.0, 1.0, 72)
  tx = optimizers.transformation("adam", 0.05, 6)
  runs = [engine.optimize(_conv_loss, init, tx, target, options=_opts(
      iterations=6, loop=loop, trial_axis=axis))[1]["trial_losses"]
          for loop, axis in (("host", "vmap"), ("device", "vmap"),
                             ("host", "map"))]
  for other in runs[1:]:
    np.testing.assert_allclose(other, runs[0], rtol=1e-5)
