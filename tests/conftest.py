"""Test setup: several virtual CPU devices and shared fixtures."""

import os
import shutil
import tempfile

# Multi-device code is tested on 8 virtual CPU devices. XLA:CPU's older
# (non-MLIR) fusion emitters compile the suite's small programs 2-3x faster
# (the sharded GIT train step: 8.3 s -> 3.1 s, same run time; BUILD_NOTES.md).
# Must precede jax use. JAX_PLATFORMS=cuda runs the suite on a GPU: the
# XLA:CPU flag is then left out (a jaxlib that no longer knows a flag
# aborts the process at start).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_FLAGS = ("--xla_force_host_platform_device_count=8",) + (
    ("--xla_cpu_use_fusion_emitters=false",)
    if os.environ["JAX_PLATFORMS"] == "cpu" else ())
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", "")]
    + [f for f in _FLAGS if f.split("=")[0] not in
       os.environ.get("XLA_FLAGS", "")]).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

# Tests check correctness on tiny shapes, where XLA's compile time is most of
# the run; its backend optimizations are off (as in the Flax examples' tests).
# Speed lives in benchmarks, never here.
jax.config.update("jax_disable_most_optimizations", True)

# Many tests build the same small programs (a victim's init, its gradient)
# from fresh closures, which jit's in-memory cache cannot reuse. XLA's
# persistent cache, keyed by the program itself, can: one fresh folder per
# test run, made by the first process (xdist's controller), inherited by
# its workers through the environment and removed by its maker at the end.
_CACHE = os.environ.get("GITJAX_TEST_XLA_CACHE")
_OWNER = _CACHE is None
if _OWNER:
  _CACHE = os.environ["GITJAX_TEST_XLA_CACHE"] = tempfile.mkdtemp(
      prefix="gitjax-test-xla-")
if _CACHE != "none":  # GITJAX_TEST_XLA_CACHE=none: no persistent cache.
  jax.config.update("jax_compilation_cache_dir", _CACHE)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_sessionfinish(session):
  del session
  if _OWNER and _CACHE != "none":
    shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture
def key():
  return jax.random.key(0)
