"""gitjax.xla_cpu: measured XLA:CPU flags, set once before JAX starts."""

import os
import subprocess
import sys

import pytest

from gitjax import xla_cpu

_SCRIPT = r"""
import os
from gitjax import xla_cpu
os.environ.pop("XLA_FLAGS", None)
assert xla_cpu.configure() == xla_cpu.FLAGS, os.environ.get("XLA_FLAGS")
assert os.environ["XLA_FLAGS"] == " ".join(xla_cpu.FLAGS)
assert xla_cpu.configure() == ()  # Already named: nothing twice.
os.environ["XLA_FLAGS"] = "--xla_cpu_experimental_ynn_fusion_type=dot"
assert xla_cpu.configure() == ()  # The user's own setting is kept.
assert os.environ["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=dot"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
supported, xla_cpu.SUPPORTED = xla_cpu.SUPPORTED, ((0, 1), (0, 2))
assert xla_cpu.configure() == ()  # An unknown jaxlib gets no flag.
xla_cpu.SUPPORTED = supported
assert xla_cpu.configure() == xla_cpu.FLAGS
import jax
assert jax.device_count() == 2  # The other flag survived.
float(jax.numpy.ones(2).sum())
try:
  xla_cpu.configure()
except RuntimeError as e:
  assert "before JAX's first computation" in str(e)
else:
  raise AssertionError("no error after the backend started")
print("ok")
"""


def test_configure_adds_keeps_and_refuses_late():
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env,
                       capture_output=True, text=True, timeout=120,
                       check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().endswith("ok")


def test_configure_in_a_started_process_is_an_error():
  import jax  # pylint: disable=g-import-not-at-top
  jax.numpy.ones(1).block_until_ready()
  with pytest.raises(RuntimeError, match="before JAX's first computation"):
    xla_cpu.configure()


def test_compiler_options_unless_xla_flags_name_them(monkeypatch):
  # The test process runs on the CPU and its XLA_FLAGS do not name them.
  assert xla_cpu.compiler_options() == {
      f.split("=", 1)[0][2:]: f.split("=", 1)[1] for f in xla_cpu.FLAGS}
  monkeypatch.setenv("XLA_FLAGS", " ".join(xla_cpu.FLAGS))
  assert xla_cpu.compiler_options() == {}


def test_jit_compiles_with_the_options_and_clears(key):
  import jax  # pylint: disable=g-import-not-at-top

  @xla_cpu.jit(static_argnames=("k",))
  def conv(x, w, k):
    return k * jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

  x = jax.random.normal(key, (2, 5, 5, 3))
  w = jax.random.normal(key, (3, 3, 3, 4))
  want = 2.0 * jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  got = jax.grad(lambda w: conv(x, w, k=2.0).sum())(w)
  ref = jax.grad(lambda w: (2.0 * jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"))).sum())(w)
  assert abs(float((conv(x, w, k=2.0) - want).max())) < 1e-5
  assert float(abs(got - ref).max()) < 1e-4
  assert conv.cache_size() >= 1
  conv.clear_cache()
  assert conv.cache_size() == 0


def test_options_give_ynnpack_dots_and_reductions_not_convolutions():
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  opts = xla_cpu.compiler_options()
  conv = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  programs = {  # (function, arguments, YNNPACK fusion wanted)
      "convolution": (conv, (jnp.ones((32, 32, 32, 32)),
                             jnp.ones((3, 3, 32, 32))), False),
      "product": (jnp.matmul, (jnp.ones((64, 64)),) * 2, True),
      "reduction": (lambda a: a.sum(-1), (jnp.ones((64, 256)),), True)}
  for name, (fn, args, wanted) in programs.items():
    text = jax.jit(fn).lower(*args).compile(opts).as_text()
    assert ("__ynn_fusion" in text) == wanted, name


def _conv_step(x, w, groups=1):
  """Gradients of a loss through a strided, dilated convolution and one in
  NCHW (JAX emits their transposes in non-canonical dimension numbers)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  def loss(x, w):
    y = jax.lax.conv_general_dilated(
        x, w, (2, 2), [(1, 2), (0, 1)], rhs_dilation=(1, 2),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    z = jax.lax.conv_general_dilated(  # A nested jit, a custom_jvp.
        jax.jit(jax.nn.relu)(y).transpose(0, 3, 1, 2),
        w[..., :4 // groups, :], (1, 1), "SAME", feature_group_count=groups,
        dimension_numbers=("NCHW", "HWIO", "NHWC"))
    return jnp.sum(jnp.tanh(z) ** 2)

  @jax.custom_vjp
  def smooth(x):  # Evaluated, not differentiated: inlined too.
    return jax.lax.conv_general_dilated(
        x.transpose(0, 3, 1, 2), w, (1, 1), "SAME",
        dimension_numbers=("NCHW", "HWIO", "NCHW")).transpose(0, 2, 3, 1)

  smooth.defvjp(lambda x: (smooth(x), None), lambda _, g: (g,))
  gx, gw = jax.grad(loss, (0, 1))(x, w)
  return x - 0.1 * gx + 1e-3 * smooth(x), w - 0.1 * gw


def test_canonical_convs_same_values_and_canonical_in_a_loop(key):
  import functools  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  kx, kw = jax.random.split(key)
  x = jax.random.normal(kx, (2, 9, 8, 4))
  w = jax.random.normal(kw, (3, 3, 4, 4)) * 0.3
  grouped = functools.partial(_conv_step, groups=2)
  for fn in (_conv_step, grouped):
    got = jax.jit(xla_cpu.canonical_convs(fn))(x, w)
    for a, b in zip(got, jax.jit(fn)(x, w)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  step = xla_cpu.canonical_convs(_conv_step)
  loop = lambda f: jax.jit(lambda x, w: jax.lax.fori_loop(
      0, 3, lambda i, c: tuple(f(*c)), (x, w)))
  text = loop(step).lower(x, w).compile().as_text()
  labels = re.findall(r"convolution\(.*?dim_labels=(\S+?),", text)
  assert len(labels) >= 5, text  # Forward, input and filter gradients.
  assert set(labels) == {"b01f_01io->b01f"}, labels  # Eigen's form.
  for a, b in zip(loop(step)(x, w), loop(_conv_step)(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
