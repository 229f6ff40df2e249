"""Test setup: several virtual CPU devices and shared fixtures."""

import os

# Multi-device code is tested on 8 virtual CPU devices. Must precede jax use.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

# Tests check correctness on tiny shapes, where XLA's compile time is most of
# the run; its backend optimizations are off (as in the Flax examples' tests).
# Speed lives in benchmarks, never here.
jax.config.update("jax_disable_most_optimizations", True)



@pytest.fixture
def key():
  return jax.random.key(0)
