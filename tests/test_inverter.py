"""GIT follows the victim's layers; LTI's count sketch; matched MSE."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import inverter
from gitjax import inverter_eval
from gitjax import inverter_layers
from gitjax import layer_trace
from gitjax import lti
from gitjax import models
from gitjax import victim as victim_lib

SHAPE = (8, 8, 3)


def _victim(name, **kw):
  return models.make_victim(name, input_shape=SHAPE, num_classes=10, **kw)


def _grads(victim, key, n=2):
  params, state = victim_lib.split(victim_lib.init_variables(victim, key))
  xs = jax.random.uniform(key, (n,) + SHAPE)
  return victim_lib.per_example_grads(victim, params, state, xs,
                                      jnp.arange(n) % 10)


def _abstract_grads(victim, n=2):
  params = jax.eval_shape(
      lambda: victim_lib.init_variables(victim, jax.random.key(0)))["params"]
  return jax.tree.map(lambda p: jax.ShapeDtypeStruct((n,) + p.shape,
                                                     p.dtype), params)


GIT_SMALL = dict(name="git", width=4, heads=2, depth=1, channels=2,
                 cond_dim=4)


@pytest.mark.parametrize("name,kw,groups,layers", [
    ("mlp", dict(hidden=(4, 4)), ["dense0", "dense1", "head"], 3),
    ("lenet", dict(channels=4), ["conv0", "conv1", "conv2", "head"], 4),
    # Stem, 9 residual blocks (conv1, conv2, 2 shortcuts), head.
    ("resnet20", dict(width=2), None, 1 + 9 * 2 + 2 + 1),
])
def test_git_follows_the_victim_tree(name, kw, groups, layers):
  victim = _victim(name, **kw)
  specs = layer_trace.victim_groups(victim)
  params = jax.eval_shape(
      lambda: victim_lib.init_variables(victim, jax.random.key(0)))["params"]
  with_kernel = [k for k, v in params.items() if any(
      p[-1].key == "kernel"
      for p, _ in jax.tree_util.tree_flatten_with_path(v)[0])]
  # One block per layer (or residual block), in call order: jax sorts dict
  # keys, so the order comes from tracing, not from the params dict.
  assert sorted(g.name for g in specs) == sorted(with_kernel)
  if groups:
    assert [g.name for g in specs] == groups
  assert sum(len(g.layers) for g in specs) == layers
  assert np.prod(specs[0].input_shape) == np.prod(SHAPE)  # The image.
  module = inverter.make_inverter(GIT_SMALL, victim, SHAPE, batch_size=2)
  grads = _abstract_grads(victim)
  variables = jax.eval_shape(module.init, jax.random.key(0), grads)
  assert sorted(variables["params"]) == sorted(
      [g.name for g in specs] + ["Dense_0", "Dense_1", "to_image"])
  out = jax.eval_shape(module.apply, variables, grads)
  assert out.shape == (2, 2) + SHAPE  # [N, B, H, W, C].


def test_resnet_blocks_use_batchnorm_bias_and_skip():
  victim = _victim("resnet20", width=2)
  specs = {g.name: g for g in layer_trace.victim_groups(victim)}
  block = specs["stage1_block0"]
  assert [l.path[-1] for l in block.layers] == ["conv1", "conv2",
                                                "shortcut_conv"]
  assert block.layers[0].bias_path == ("stage1_block0", "bn1", "bias")
  assert block.input_shape == (8, 8, 2) and block.output_shape == (4, 4, 4)
  module = inverter.make_inverter(GIT_SMALL, victim, SHAPE)
  variables = jax.eval_shape(module.init, jax.random.key(0),
                             _abstract_grads(victim))
  assert "skip" in variables["params"]["stage1_block0"]


def test_git_forward_is_finite_and_in_unit_range(key):
  victim = _victim("lenet", channels=4)
  grads = _grads(victim, key)
  module = inverter.make_inverter(GIT_SMALL, victim, SHAPE)
  out, _ = jax.jit(module.init_with_output)(jax.random.key(0, impl="rbg"),
                                            grads)
  assert out.shape == (2, 1) + SHAPE
  assert bool(jnp.all((out >= 0) & (out <= 1)))


@pytest.mark.parametrize("index", [0, 1, 2])  # Strides 2, 2, 1.
def test_back_project_is_the_adjoint_of_the_victim_conv(key, index):
  victim = _victim("lenet", channels=4)
  layer = layer_trace.victim_layers(victim)[index]  # Padding 2.
  k1, k2, k3 = jax.random.split(key, 3)
  kernel = jax.random.normal(k1, (1,) + layer.kernel_shape)
  x = jax.random.normal(k2, (1,) + layer.input_shape)
  d = jax.random.normal(k3, (1, 1) + layer.output_shape)
  y = inverter_layers.conv_apply(x, kernel[0], layer.conv)
  assert y.shape[1:] == layer.output_shape
  back = jax.jit(lambda k, d: inverter_layers.back_project(k, d, layer))(
      kernel, d)
  np.testing.assert_allclose(jnp.vdot(y, d[0]), jnp.vdot(x, back[0]),
                             rtol=1e-4)


def test_dense_identity_recovers_the_input_of_a_dense_layer(key):
  # For one example, G = h d^T: the head's input is G d / |d|^2 exactly.
  victim = _victim("mlp", hidden=(4,))
  g = _grads(victim, key, n=1)
  params, _ = victim_lib.split(victim_lib.init_variables(victim, key))
  x = jax.random.uniform(key, (1,) + SHAPE)
  h = victim.features({"params": params}, x)[0]
  gk, gb = g["head"]["kernel"][0], g["head"]["bias"][0]
  np.testing.assert_allclose(gk @ gb / jnp.sum(gb**2), h, rtol=1e-4,
                             atol=1e-6)


def test_fit_reshapes_flat_tensors_exactly():
  x = jnp.arange(2 * 48, dtype=jnp.float32).reshape(2, 48, 1)
  np.testing.assert_array_equal(inverter.fit(x, (4, 4, 3)),
                                x.reshape(2, 4, 4, 3))
  pooled = jnp.ones((2, 3, 5))  # Global pooling's adjoint: broadcast.
  assert inverter.fit(pooled, (4, 4, 3)).shape == (2, 4, 4, 15)
  assert inverter.fit(jnp.ones((2, 2, 2, 5)), (4, 4, 3)).shape == (2, 4, 4, 5)


def test_lti_count_sketch_shapes_and_sums(key):
  victim = _victim("lenet", channels=4)
  p = lti.num_params(victim)
  assert lti.sketch_bins(p, 0.5) == int(p * 0.5)
  assert lti.sketch_bins(p, None) is None
  flat = jax.random.normal(key, (3, p))
  sk = lti.count_sketch(flat, 17, seed=1)
  assert sk.shape == (3, 17)
  np.testing.assert_allclose(sk.sum(-1), flat.sum(-1), rtol=1e-4)  # No signs.
  np.testing.assert_array_equal(sk, lti.count_sketch(flat, 17, seed=1))
  module = inverter.make_inverter(
      dict(name="lti", hidden=8, sketch_rate=0.25), victim, SHAPE,
      batch_size=2)
  assert module.sketch_bins == int(p * 0.25)
  grads = _abstract_grads(victim, n=3)
  variables = jax.eval_shape(module.init, key, grads)
  assert variables["params"]["Dense_0"]["kernel"].shape == (int(p * 0.25), 8)
  assert jax.eval_shape(module.apply, variables, grads).shape == (3, 2) + SHAPE


@pytest.mark.parametrize("model,index", [
    ("resnet20", 7), ("resnet20", 9),  # 3x3 and 1x1 (the shortcut).
    ("lenet", 0), ("lenet", 1)])  # 5x5, padding 2.
def test_back_project_phases_equal_the_convolution_transpose(key, model,
                                                             index):
  kw = dict(width=2) if model == "resnet20" else dict(channels=3)
  layer = layer_trace.victim_layers(_victim(model, **kw))[index]
  assert layer.conv[1] == 2
  k1, k2, k3 = jax.random.split(key, 3)
  kernel = jax.random.normal(k1, (2,) + layer.kernel_shape)
  d = jax.random.normal(k2, (2, 3) + layer.output_shape)
  phases = inverter_layers.back_project(kernel, d, layer, impl="phases")
  geometry = list(layer.conv)
  geometry[2] = [(geometry[2], geometry[2])] * 2  # lax padding: the general
  general = layer._replace(conv=tuple(geometry))  # form, "conv" only.
  conv = inverter_layers.back_project(kernel, d, general)
  np.testing.assert_allclose(phases, conv, rtol=1e-4, atol=1e-5)
  # The derivatives too, for both arguments ("auto" is "phases" here).
  ct = jax.random.normal(k3, phases.shape)
  pull = lambda impl, lay: jax.vjp(
      lambda k, d: inverter_layers.back_project(k, d, lay, impl),
      kernel, d)[1](ct)
  for ours, ref in zip(pull("auto", layer), pull("conv", general)):
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="phases back-projection needs"):
    inverter_layers.back_project(kernel, d, general, impl="phases")
  with pytest.raises(ValueError, match="unknown back-projection 'fft'"):
    inverter_layers.back_project(kernel, d, layer, impl="fft")


def test_flat_ablation_matches_git_parameter_count():
  victim = _victim("lenet", channels=4)
  git = inverter.make_inverter(GIT_SMALL, victim, SHAPE)
  flat = inverter.make_inverter(
      dict(name="flat", layers=2, hidden=0, match=GIT_SMALL), victim, SHAPE)
  n_git = inverter.num_params(git, victim)
  n_flat = inverter.num_params(flat, victim)
  wider = flat.clone(hidden=flat.hidden + 1)
  assert n_flat <= n_git < inverter.num_params(wider, victim)
  grads = _abstract_grads(victim, n=3)
  variables = jax.eval_shape(flat.init, jax.random.key(0), grads)
  assert jax.eval_shape(flat.apply, variables, grads).shape == (3, 1) + SHAPE


def test_flat_inputs_are_unit_rms_blocks_and_log_norms(key):
  victim = _victim("mlp", hidden=(4,))
  g = _grads(victim, key, n=2)
  x = lti.flat_inputs(g)
  leaves = jax.tree.leaves(g)
  sizes = [l[0].size for l in leaves]
  assert x.shape == (2, sum(sizes) + len(leaves) + 1)
  start = 0
  for size in sizes:
    block = x[:, start:start + size]
    np.testing.assert_allclose(jnp.sqrt(jnp.mean(block**2, -1)), 1.0,
                               rtol=1e-5)
    start += size
  scaled = lti.flat_inputs(jax.tree.map(lambda t: 3.0 * t, g))
  np.testing.assert_allclose(scaled[:, :start], x[:, :start], rtol=1e-5)
  np.testing.assert_allclose(scaled[:, -1] - x[:, -1], np.log(3.0) / 10,
                             rtol=1e-4)


@pytest.mark.parametrize("config,match", [
    (dict(name="gan"), "unknown inverter 'gan'"),
    (dict(name="flat"), "a flat inverter needs hidden > 0 or match"),
    (dict(name="flat", match=dict(name="lti")),
     "a flat inverter needs hidden > 0 or match"),
    (dict(name="git", widht=3), r"unknown git inverter settings \['widht'\]"),
    (dict(name="lti", sketch_rate=1.5), r"sketch_rate must be in \(0, 1\]"),
])
def test_bad_inverter_configs(config, match):
  with pytest.raises(ValueError, match=match):
    inverter.make_inverter(config, _victim("mlp", hidden=(4,)), SHAPE)


def test_git_needs_a_linen_victim():
  victim = models.make_victim("two_layer", input_shape=SHAPE, width=4)
  with pytest.raises(ValueError, match="GIT needs a Linen victim"):
    layer_trace.victim_groups(victim)


@pytest.mark.parametrize("b", [1, 3, 7])
def test_matched_errors_are_permutation_invariant(key, b):
  x = jax.random.uniform(key, (2, b, 4, 4, 3))
  perm = np.random.default_rng(0).permutation(b)
  x_hat = x[:, perm] + 0.1
  err = jax.jit(inverter_eval.matched_sq_errors)(x_hat, x)
  np.testing.assert_allclose(err, 0.01, rtol=1e-4)
  noisy = jax.random.uniform(jax.random.key(1), x.shape)
  xn, nn_ = np.asarray(x).reshape(2, b, -1), np.asarray(noisy).reshape(2, b, -1)
  cost = ((nn_[:, :, None] - xn[:, None]) ** 2).mean(-1)  # [N, B_hat, B]
  brute = [min(cost[n, list(p), range(b)].mean()
               for p in itertools.permutations(range(b))) for n in range(2)]
  np.testing.assert_allclose(inverter_eval.matched_sq_errors(noisy, x),
                             brute, rtol=1e-5)
