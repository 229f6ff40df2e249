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
