"""Test setup: several virtual CPU devices and shared fixtures."""

import os

# Multi-device code is tested on 8 virtual CPU devices. Must precede jax use.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402



@pytest.fixture
def key():
  return jax.random.key(0)
