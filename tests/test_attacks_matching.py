"""Gradient matching on a leak, DLG and Inverting Gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import attacks
from gitjax import leak as leak_lib
from gitjax import models
from gitjax import victim as victim_lib
from gitjax.attacks import gradient_matching as gm
from gitjax.attacks import matching
from gitjax.attacks import objectives


def _psnr(a, b):
  a = np.clip(np.asarray(a), 0, 1)
  return 10 * np.log10(1 / np.mean(np.square(a - np.asarray(b))))


def _leak(key, name="lenet", b=1, shape=(8, 8, 1), num_classes=4, **kw):
  v = models.make_victim(name, input_shape=shape, num_classes=num_classes,
                         **kw.pop("model", {}))
  variables = victim_lib.init_variables(v, key)
  xs = jax.random.uniform(jax.random.fold_in(key, 1), (b,) + shape)
  ys = jnp.arange(b) % num_classes
  leak, truth = leak_lib.simulate(v, variables, xs, ys,
                                  jax.random.fold_in(key, 2), **kw)
  return v, leak, truth


def test_dlg_recovers_tiny_image_and_label(key):
  v, leak, truth = _leak(key)
  rec = gm.dlg(leak, v, dict(iterations=100, restarts=2, progress=False),
               jax.random.key(3))
  assert _psnr(rec.images, truth.images) > 30
  assert rec.info["label_source"] == "joint"
  np.testing.assert_array_equal(rec.labels, truth.labels)
  assert rec.info["loss"] < 1e-4


def test_ig_gradient_distance_falls_and_box_holds(key):
  v, leak, truth = _leak(key, b=2)
  rec = attacks.get("ig")(leak, v, dict(iterations=60, chunk=20,
                                        progress=False), key)
  losses = [h[0] for h in rec.info["history"]["loss"]]
  assert len(losses) == 3 and losses[-1] < 0.5 * losses[0]
  assert rec.images.shape == truth.images.shape
  assert float(rec.images.min()) >= 0.0 and float(rec.images.max()) <= 1.0
  assert rec.info["label_source"] == "llg"
  np.testing.assert_array_equal(np.sort(rec.labels), np.sort(truth.labels))


def test_fedavg_objective_unrolls_local_steps(key):
  cfg = dict(lr=0.1, epochs=2, local_batch_size=1)
  v, leak, truth = _leak(key, name="mlp", b=2, protocol="fedavg",
                         protocol_config=cfg, model=dict(hidden=(8,)))
  s = matching.make_settings(objective="l2", progress=False)
  problem = matching.make_problem(leak, v, s)
  data = matching.make_data(leak, truth.labels)
  # Replaying the client's 4 local steps on its images gives the update.
  assert float(problem({"x": truth.images}, data)) < 1e-10
  g = jax.grad(lambda x: problem({"x": x}, data))(truth.images + 0.1)
  assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0
  # A one-step model of the same update does not match: the steps matter.
  one = leak_lib.dataclasses.replace(leak, protocol_config=dict(lr=0.1))
  data1 = matching.make_data(one, truth.labels)
  p1 = matching.make_problem(one, v, s)
  assert float(p1({"x": truth.images}, data1)) > 1e-6


@pytest.mark.parametrize("defense", [
    dict(name="prune", rate=0.5), dict(name="clip", max_norm=1e-3),
    [dict(name="clip_per_layer", max_norm=1e-3),
     dict(name="gaussian", sigma=0.0)]])
def test_known_defense_is_modeled(key, defense):
  v, leak, truth = _leak(key, b=2, defense=defense)
  s = matching.make_settings(objective="l2", progress=False)
  problem = matching.make_problem(leak, v, s)
  assert float(problem({"x": truth.images},
                       matching.make_data(leak, truth.labels))) < 1e-12


def test_bn_prior_reads_every_batchnorm_layer(key):
  v = models.make_victim("convnet", input_shape=(12, 12, 3), num_classes=4,
                         width=2)
  variables = victim_lib.init_variables(v, key)
  xs = jax.random.uniform(key, (2, 12, 12, 3))
  stats = objectives.bn_statistics(v, variables, xs)
  assert len(stats) == 8 and stats[0][0].shape == (2,)
  np.testing.assert_allclose(stats[0][2], 0.0)  # Running mean at init.
  np.testing.assert_allclose(stats[0][3], 1.0)  # Running var at init.
  g = jax.jit(jax.grad(lambda x: objectives.bn_prior(v, variables, x)))(xs)
  assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0


def test_render_and_penalty_api(key):
  v, leak, truth = _leak(key)
  # GI-SMN-style: optimize a latent through render(); GIT-style: penalty.
  latent = jnp.zeros((2, 1, 8 * 8))  # [R, 1, D]
  render = lambda z, aux: jax.nn.sigmoid(z).reshape((1, 8, 8, 1))
  prox = lambda z, x, aux: 1e-3 * jnp.sum(jnp.square(x - aux))
  res = matching.run(
      leak, v, latent, truth.labels,
      dict(iterations=20, tv=1e-3, progress=False),
      render=render, penalty=prox, aux=truth.images)
  assert res.images.shape == (1, 8, 8, 1)
  assert res.variables.shape == (1, 8 * 8)
  first = res.info["history"]["loss"][0][0]
  assert res.loss < first


def test_bad_inputs_raise_clear_errors(key):
  v, leak, _ = _leak(key)
  cfg = dict(iterations=1, progress=False)
  with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
    gm.inverting_gradients(leak, v, dict(cfg, optimizer="rmsprop"), key)
  with pytest.raises(ValueError, match="unknown distance 'cos2'"):
    gm.inverting_gradients(leak, v, dict(cfg, objective="cos2"), key)
  with pytest.raises(ValueError, match=r"unknown attack config key\(s\) "
                     r"\['step_size'\]"):
    gm.inverting_gradients(leak, v, dict(cfg, step_size=1), key)
  with pytest.raises(ValueError, match="unknown schedule 'linear'"):
    gm.inverting_gradients(leak, v, dict(cfg, schedule="linear"), key)
  with pytest.raises(ValueError, match="unknown init 'noise'"):
    gm.inverting_gradients(leak, v, dict(cfg, init="noise"), key)
  with pytest.raises(ValueError, match="unknown labels mode 'guess'"):
    gm.inverting_gradients(leak, v, dict(cfg, labels="guess"), key)
  with pytest.raises(ValueError, match="unknown attack 'dlg2'"):
    attacks.get("dlg2")
  with pytest.raises(ValueError, match="bn_prior needs a victim with "
                     "BatchNorm; 'lenet'"):
    gm.inverting_gradients(leak, v, dict(cfg, bn_prior=1.0), key)
  other = models.make_victim("lenet", input_shape=(8, 8, 1), num_classes=4,
                             channels=3)
  with pytest.raises(ValueError, match="shape"):
    gm.inverting_gradients(leak, other, cfg, key)
  hidden = leak_lib.dataclasses.replace(leak, batch_size=None)
  with pytest.raises(ValueError, match="set attack.batch_size"):
    gm.inverting_gradients(hidden, v, cfg, key)


@pytest.mark.parametrize("protocol", ["fedsgd", "fedavg"])
def test_second_order_kinds_give_the_same_objective_and_gradient(key,
                                                                 protocol):
  cfg = dict(lr=0.1, epochs=2, local_batch_size=1)
  v, leak, truth = _leak(key, b=2, protocol=protocol,
                         protocol_config=cfg if protocol == "fedavg" else {},
                         defense=[dict(name="prune", rate=0.5)])
  data = matching.make_data(leak, truth.labels)
  x = {"x": jax.random.uniform(key, truth.images.shape)}
  out = []
  for kind in ("forward", "reverse"):
    s = matching.make_settings(tv=1e-4, second_order=kind, conv="im2col")
    problem = matching.make_problem(leak, v, s)
    assert problem.client.second_order == kind
    out.append(jax.value_and_grad(lambda x: problem(x, data))(x))
  np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-6)
  np.testing.assert_allclose(out[0][1]["x"], out[1][1]["x"], rtol=1e-4,
                             atol=1e-7)
  with pytest.raises(ValueError, match="unknown second_order 'fwd'"):
    matching.make_settings(second_order="fwd")
  # The replay's convolutions: the same objective, only rounding differs.
  # "auto" is XLA's with forward-over-reverse and one client ("shape" on
  # a CPU, whose trials run one after another), the platform's default
  # otherwise.
  for kind, conv, want in (("forward", "auto", "shape"),
                           ("reverse", "auto", "im2col"),
                           ("forward", "xla", "xla"),
                           ("forward", "shape", "shape")):
    s = matching.make_settings(tv=1e-4, second_order=kind, conv=conv)
    problem = matching.make_problem(leak, v, s)
    assert problem.client.conv == want
    xla = want in ("xla", "shape")
    assert matching.options(s, problem).trial_axis == (
        "map" if xla else "auto")
    assert matching.options(s, problem).constants == xla
    # A short run does not pay a compile per leak.
    assert not matching.options(s._replace(iterations=499, restarts=2),
                                problem).constants
    got = jax.value_and_grad(lambda x: problem(x, data))(x)
    np.testing.assert_allclose(got[0], out[0][0], rtol=1e-4)
    np.testing.assert_allclose(got[1]["x"], out[0][1]["x"], rtol=1e-3,
                               atol=1e-6)
  with pytest.raises(ValueError, match="unknown conv 'cudnn'"):
    matching.make_settings(conv="cudnn")
  with pytest.raises(ValueError, match="unknown constants 'yes'"):
    matching.make_settings(constants="yes")


def test_layer_weights_by_name(key):
  msg = {"conv0": {"kernel": jnp.ones(2), "bias": jnp.ones(1)},
         "head": {"kernel": jnp.ones(3)}}
  s = matching.make_settings(layer_weights={"head": 0.5})
  assert objectives.layer_weight_list(s.layer_weights, msg) == [1.0, 1.0, 0.5]
  s = matching.make_settings(layer_weights=(1, 2, 3))
  assert objectives.layer_weight_list(s.layer_weights, msg) == [1.0, 2.0, 3.0]
  s = matching.make_settings(layer_weights={"fc9": 0.5})
  with pytest.raises(ValueError, match=r"unknown layers \['fc9'\]"):
    objectives.layer_weight_list(s.layer_weights, msg)


def test_leak_norm_computed_once_gives_the_same_objective(key):
  v, leak, truth = _leak(key, b=2)
  s = matching.make_settings(tv=1e-4, layer_weights=(2.0,) * 4 + (0.5,) * 4
                             + (1.0,) * (len(jax.tree.leaves(leak.message))
                                         - 8))
  problem = matching.make_problem(leak, v, s)
  data = matching.make_data(leak, truth.labels)
  assert len(data["message_squares"]) == len(jax.tree.leaves(leak.message))
  x = {"x": jax.random.uniform(key, truth.images.shape)}
  fresh = {k: w for k, w in data.items() if k != "message_squares"}
  a, ga = jax.value_and_grad(lambda x: problem(x, data))(x)
  b, gb = jax.value_and_grad(lambda x: problem(x, fresh))(x)
  np.testing.assert_allclose(a, b, rtol=1e-6)
  np.testing.assert_allclose(ga["x"], gb["x"], rtol=1e-5, atol=1e-8)


def test_trial_axis_and_loop_kinds_agree(key, restarts=3):
  # vmap vs lax.map over trials, fori_loop on the device vs a host loop: the
  # same iterates (CPU defaults to map + host; accelerators to vmap + device).
  v, leak, truth = _leak(key)
  x0 = jax.random.uniform(jax.random.fold_in(key, 7),
                          (restarts,) + truth.images.shape)
  runs = {}
  for axis in ("vmap", "map"):
    for loop in ("device", "host"):
      s = dict(optimizer="adam", signed=False, lr=0.05, iterations=5,
               chunk=3, progress=False, tv=1e-3, trial_axis=axis, loop=loop)
      runs[axis, loop] = matching.run(leak, v, x0, truth.labels, s)
  ref = runs["vmap", "device"]
  for k, res in runs.items():
    np.testing.assert_allclose(res.images, ref.images, rtol=1e-4, atol=1e-5,
                               err_msg=str(k))
    np.testing.assert_allclose(res.info["trial_losses"],
                               ref.info["trial_losses"], rtol=1e-4)
  with pytest.raises(ValueError, match="unknown loop 'gpu'"):
    matching.make_settings(loop="gpu")
  with pytest.raises(ValueError, match="unknown trial_axis 'pmap'"):
    matching.make_settings(trial_axis="pmap")
