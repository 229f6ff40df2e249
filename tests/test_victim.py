"""Victims: shapes, parameter counts, per-example and batch gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import models
from gitjax import victim as victim_lib

TINY = {
    "mlp": dict(input_shape=(8, 8, 1), num_classes=3, hidden=(16,)),
    "lenet": dict(input_shape=(8, 8, 3), num_classes=4),
    "convnet": dict(input_shape=(9, 9, 3), num_classes=4, width=2),
    "resnet18": dict(input_shape=(8, 8, 3), num_classes=4, width=2),
    "resnet20": dict(input_shape=(8, 8, 3), num_classes=4, width=2),
    "two_layer": dict(input_shape=(4, 4, 1), width=32),
}


def _setup(name, key, b=3):
  v = models.make_victim(name, **TINY[name])
  variables = victim_lib.init_variables(v, key)
  kx, ky = jax.random.split(jax.random.fold_in(key, 1))
  xs = jax.random.uniform(kx, (b,) + v.input_shape)
  if v.loss == "squared":
    ys = jax.random.normal(ky, (b,))
  else:
    ys = jax.random.randint(ky, (b,), 0, v.num_classes)
  return v, variables, xs, ys


# ResNet-18 shares every code path with ResNet-20 and only costs compile time.
@pytest.mark.parametrize("name", sorted(set(TINY) - {"resnet18"}))
def test_per_example_grads_match_loop_and_batch(name, key):
  v, variables, xs, ys = _setup(name, key)
  params, state = victim_lib.split(variables)
  pe = jax.jit(victim_lib.per_example_grads, static_argnums=(0,))(
      v, params, state, xs, ys)
  one = jax.jit(jax.grad(victim_lib.batch_loss, argnums=1),
                static_argnums=0)  # Compiled once: op-by-op is slow.
  for i in range(xs.shape[0]):
    gi = one(v, params, state, xs[i:i + 1], ys[i:i + 1])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(
        a[i], b, rtol=2e-4, atol=1e-6), pe, gi)
  batch = jax.jit(victim_lib.batch_grad, static_argnums=0)(
      v, params, state, xs, ys)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a.mean(0), b, rtol=2e-4, atol=1e-6), pe, batch)


def test_chunked_per_example_grads_equal_unchunked(key):
  v, variables, xs, ys = _setup("lenet", key, b=4)
  params, state = victim_lib.split(variables)
  full = victim_lib.per_example_grads(v, params, state, xs, ys)
  chunked = jax.jit(victim_lib.per_example_grads, static_argnums=(0, 5))(
      v, params, state, xs, ys, 2)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-7),
               full, chunked)
  with pytest.raises(ValueError, match="multiple of chunk_size"):
    victim_lib.per_example_grads(v, params, state, xs, ys, 3)


def test_param_counts_match_breaching():
  # Reference counts of breaching's CIFAR models (breaching.md section 1.2).
  counts = {"lenet": 15_826, "convnet": 2_904_970, "resnet18": 11_173_962}
  for name, want in counts.items():
    v = models.make_victim(name)
    shapes = jax.eval_shape(
        lambda v=v: victim_lib.init_variables(v, jax.random.key(0)))
    got = sum(np.prod(x.shape) for x in jax.tree.leaves(shapes["params"]))
    assert got == want, name


def test_lenet_uniform_init_range(key):
  v = models.make_victim("lenet", input_shape=(8, 8, 3))
  params = victim_lib.init_variables(v, key)["params"]
  for leaf in jax.tree.leaves(params):
    assert float(jnp.max(jnp.abs(leaf))) <= 0.5


def test_batchnorm_train_mode_uses_batch_statistics(key):
  v, variables, xs, _ = _setup("resnet20", key, b=4)
  apply = jax.jit(v.apply, static_argnames="train")  # Op by op is slow.
  eval_out = apply(variables, xs)
  train_out = apply(variables, xs, train=True)
  assert eval_out.shape == train_out.shape == (4, 4)
  assert not np.allclose(eval_out, train_out)


def test_features_feed_the_head(key):
  v, variables, xs, _ = _setup("lenet", key)
  feats = v.features(variables, xs)
  head = variables["params"]["head"]
  np.testing.assert_allclose(feats @ head["kernel"] + head["bias"],
                             v.apply(variables, xs), rtol=1e-5, atol=1e-6)


def test_unknown_model_and_bad_config():
  with pytest.raises(ValueError, match="unknown model 'vgg'"):
    models.make_victim("vgg")
  with pytest.raises(ValueError, match="bad config for model 'lenet'"):
    models.make_victim("lenet", depth=3)
  with pytest.raises(ValueError, match="unknown activation"):
    models.make_victim("mlp", activation="swishy")


def test_check_images_names_expected_shape(key):
  v = models.make_victim("lenet", input_shape=(8, 8, 3))
  with pytest.raises(ValueError, match=r"expects \[B, 8, 8, 3\]"):
    victim_lib.check_images(v, jnp.zeros((2, 8, 8, 1)))


def test_torch_init_redraws_dense_and_conv_like_pytorch(key):
  v = models.make_victim("convnet", input_shape=(9, 9, 3), num_classes=4,
                         width=2, init="torch")
  assert v.config["init"] == "torch"
  params = victim_lib.init_variables(v, key)["params"]
  for name in ("conv0", "conv3", "head"):
    kernel, bias = params[name]["kernel"], params[name]["bias"]
    bound = 1.0 / np.sqrt(np.prod(kernel.shape[:-1]))
    assert float(jnp.max(jnp.abs(kernel))) <= bound
    assert float(jnp.max(jnp.abs(kernel))) > 0.8 * bound  # Uniform, not normal.
    assert float(jnp.max(jnp.abs(bias))) <= bound
    assert float(jnp.max(jnp.abs(bias))) > 0.0  # PyTorch biases are not zero.
  np.testing.assert_array_equal(params["bn0"]["scale"], 1.0)
  flax_params = victim_lib.init_variables(
      models.make_victim("convnet", input_shape=(9, 9, 3), num_classes=4,
                         width=2), key)["params"]
  assert float(jnp.max(jnp.abs(flax_params["head"]["bias"]))) == 0.0
  with pytest.raises(ValueError, match="unknown init 'xavier'"):
    models.make_victim("mlp", init="xavier")


def test_torchvision_init_draws_conv_kernels_by_fan_out(key):
  """inversefed's ResNet-18 (GGL's and IG's victim): conv kernels from
  N(0, 2 / (kh kw out)), the head as PyTorch's Linear."""
  v = models.make_victim("resnet18", input_shape=(8, 8, 3), num_classes=2,
                         width=4, init="torchvision")
  assert v.config["init"] == "torchvision"
  params = victim_lib.init_variables(v, key)["params"]
  kernels = [(path, leaf) for path, leaf in
             jax.tree_util.tree_leaves_with_path(params)
             if leaf.ndim == 4]
  assert kernels
  for path, k in kernels:
    want = np.sqrt(2.0 / (k.shape[0] * k.shape[1] * k.shape[3]))
    got = float(jnp.std(k))
    assert 0.6 * want < got < 1.4 * want, (path, got, want)
  head = [leaf for leaf in jax.tree.leaves(params) if leaf.ndim == 2]
  assert len(head) == 1
  bound = 1.0 / np.sqrt(head[0].shape[0])
  assert float(jnp.max(jnp.abs(head[0]))) <= bound
  with pytest.raises(ValueError, match="unknown conv_kernels 'x'"):
    from gitjax.models import common
    common.torch_init(v.init, "x")


@pytest.mark.parametrize("kernel,stride,padding", [
    ((3, 3), 1, 1), ((5, 5), 2, 2), ((1, 1), 2, 0), ((3, 3), 2, 0)])
def test_im2col_conv_matches_xla_to_second_order(kernel, stride, padding,
                                                 key):
  """Same values, gradients and gradient-of-gradient-distance as lax."""
  from gitjax.models import common
  kx, kw, kt = jax.random.split(key, 3)
  x = jax.random.normal(kx, (2, 9, 9, 3))
  w = jax.random.normal(kw, kernel + (3, 4))

  def xla(x, w):
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), [(padding, padding)] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  def im2col(x, w):
    return common.im2col_conv(x, w, stride, padding)

  np.testing.assert_allclose(im2col(x, w), xla(x, w), atol=1e-5)
  target = jax.random.normal(kt, xla(x, w).shape)

  def matching_grad(conv):
    def w_grad(x, w):  # The "leaked" weight gradient as a function of x.
      return jax.grad(lambda w: jnp.sum(jnp.tanh(conv(x, w)) * target))(w)
    return jax.grad(lambda x: jnp.sum(jnp.square(w_grad(x, w))))(x)

  got, want = matching_grad(im2col), matching_grad(xla)
  # float32 rounding, relative to the gradient's scale (it reaches ~1e3).
  assert float(jnp.max(jnp.abs(got - want))) <= 1e-5 * float(
      jnp.max(jnp.abs(want)))


@pytest.mark.parametrize("conv", ["im2col", "shape"])
@pytest.mark.parametrize("name", ["lenet", "convnet", "resnet20"])
def test_conv_implementation_changes_neither_parameters_nor_function(
    name, conv, key):
  a = models.make_victim(name, conv="xla", **TINY[name])
  b = models.make_victim(name, conv=conv, **TINY[name])
  assert a.config == b.config  # Not part of the model's identity.
  va, vb = (victim_lib.init_variables(v, key) for v in (a, b))
  jax.tree.map(np.testing.assert_array_equal, va, vb)
  xs = jax.random.uniform(jax.random.fold_in(key, 1), (2,) + a.input_shape)
  ys = jnp.array([0, 1])
  np.testing.assert_allclose(jax.jit(a.apply)(va, xs),
                             jax.jit(b.apply)(va, xs), atol=1e-5)
  params, state = victim_lib.split(va)
  ga = victim_lib.batch_grad(a, params, state, xs, ys)
  gb = victim_lib.batch_grad(b, params, state, xs, ys)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=1e-5),
               ga, gb)
  with pytest.raises(ValueError, match="unknown conv implementation 'fft'"):
    models.make_victim(name, conv="fft", **TINY[name])


@pytest.mark.parametrize("size,want", [(2, "im2col"), (6, "xla")])
def test_shape_conv_takes_im2col_where_the_kernel_outweighs_the_map(
    size, want, key):
  """conv="shape": im2col when batch x output pixels < output channels
  (2 x 2 x 2 = 8 < 16), XLA's convolution otherwise (2 x 6 x 6 = 72)."""
  from gitjax.models import common
  x = jax.random.normal(key, (2, size, size, 3))
  out = {}
  for impl in ("shape", "xla"):
    conv = common.Conv(16, (3, 3), padding=1, impl=impl)
    variables = conv.init(jax.random.key(0), x)
    out[impl] = conv.apply(variables, x)
    if impl == "shape":
      text = str(jax.make_jaxpr(conv.apply)(variables, x))
      assert ("conv_general_dilated" in text) == (want == "xla")
  np.testing.assert_allclose(out["shape"], out["xla"], atol=1e-5)


def test_calibrated_batch_stats_make_eval_match_training_mode():
  v = models.make_victim("resnet18", input_shape=(8, 8, 3), num_classes=4,
                         width=2)
  variables = victim_lib.init_variables(v, jax.random.key(0))
  xs = jax.random.uniform(jax.random.key(1), (8, 8, 8, 3))
  cal = victim_lib.calibrate_batch_stats(v, variables, xs)
  apply = jax.jit(v.apply, static_argnames="train")  # Op by op is slow.
  np.testing.assert_allclose(apply(cal, xs), apply(variables, xs, train=True),
                             atol=1e-4)
  assert jax.tree.structure(cal) == jax.tree.structure(variables)
  assert cal["params"] is variables["params"]
  lenet = models.make_victim("lenet", input_shape=(8, 8, 3), num_classes=4)
  with pytest.raises(ValueError, match="has no BatchNorm statistics"):
    victim_lib.calibrate_batch_stats(
        lenet, victim_lib.init_variables(lenet, jax.random.key(0)), xs)


def test_sgd_trajectory_snapshots_continue_one_run(key):
  v, variables, xs, ys = _setup("lenet", key, b=6)
  snaps = victim_lib.sgd_trajectory(v, variables, xs, ys, [0, 1, 3],
                                    lr=0.1, batch=4, seed=2)
  assert snaps[0] is not None and len(snaps) == 3
  for a, b in zip(jax.tree.leaves(snaps[0]), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(a, b)
  # Step 0 by hand: the batch drawn from fold_in(key(2), 0).
  idx = jax.random.randint(jax.random.fold_in(jax.random.key(2), 0), (4,),
                           0, 6)
  params, state = victim_lib.split(variables)
  g = victim_lib.batch_grad(v, params, state, xs[idx], ys[idx])
  by_hand = jax.tree.map(lambda p, d: p - 0.1 * d, params, g)
  for a, b in zip(jax.tree.leaves(snaps[1]["params"]),
                  jax.tree.leaves(by_hand)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # A later snapshot is the same run carried on, not a new one.
  alone = victim_lib.sgd_trajectory(v, variables, xs, ys, [3], lr=0.1,
                                    batch=4, seed=2)[0]
  for a, b in zip(jax.tree.leaves(snaps[2]), jax.tree.leaves(alone)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="step counts >= 0"):
    victim_lib.sgd_trajectory(v, variables, xs, ys, [-1])
  with pytest.raises(ValueError, match="batch >= 1"):
    victim_lib.sgd_trajectory(v, variables, xs, ys, [1], batch=0)


@pytest.mark.parametrize("name", ["lenet", "resnet20"])
def test_forward_over_reverse_gradient_has_double_backprops_derivatives(
    name, key):
  """batch_grad_fr: batch_grad's values, and the same derivatives for every
  argument (images, soft labels, params, BatchNorm state) as reverse over
  reverse; unperturbed arguments (integer labels) are skipped."""
  v, variables, xs, ys = _setup(name, key, b=2)
  params, state = victim_lib.split(variables)
  soft = jax.nn.softmax(jax.random.normal(key, (2, v.num_classes)))
  target = victim_lib.batch_grad(v, params, state, 0.5 * xs, ys)

  def objective(grad, *args):  # A nonlinear function of the message.
    m = grad(v, *args)
    return sum(jnp.sum(a * jnp.sin(b)) for a, b in
               zip(jax.tree.leaves(m), jax.tree.leaves(target)))

  close = lambda a, b: jax.tree.map(
      lambda u, w: np.testing.assert_allclose(u, w, rtol=2e-5, atol=1e-7),
      a, b)
  close(victim_lib.batch_grad_fr(v, params, state, xs, ys),
        victim_lib.batch_grad(v, params, state, xs, ys))
  for labels, argnums in ((ys, (2,)), (soft, (0, 1, 2, 3))):
    args = (params, state, xs, labels)
    want = [jax.grad(lambda *a: objective(g, *a), argnums=argnums)(*args)
            for g in (victim_lib.batch_grad, victim_lib.batch_grad_fr)]
    close(want[1], want[0])
  assert victim_lib.grad_fn("reverse") is victim_lib.batch_grad
  with pytest.raises(ValueError, match="unknown second_order 'mixed'"):
    victim_lib.grad_fn("mixed")
