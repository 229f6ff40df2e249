"""torch as an optional comparison: import, device, threads, precision.

torch is optional (the ``compare`` extra): it is imported only inside the
functions that need it, and ``available()`` says whether it can be. Used by
the PyTorch references of ``ig_speed`` and ``train_speed``.
"""

import contextlib
import logging
import math
import time

import jax

from gitjax.errors import InputError

MODES = ("auto", "on", "off")
INSTALL = ('pip install -e ".[compare]" '
           "--extra-index-url https://download.pytorch.org/whl/cpu")


def available() -> bool:
  """Whether torch can be imported."""
  try:
    _torch()
  except ImportError:
    return False
  return True


def resolve(mode: str) -> bool:
  """Whether to run torch: ``mode`` is "auto", "on" (torch required), "off".

  "auto" runs torch when it is importable and runs on JAX's kind of device
  (a CPU-only torch against JAX on a GPU measures nothing useful).

  Raises:
    InputError: an unknown mode, or "on" without torch.
  """
  if mode not in MODES:
    raise InputError(f"config.torch must be one of {MODES}; got {mode!r}")
  if mode == "off":
    return False
  if not available():
    if mode == "on":
      raise InputError(f"config.torch='on' but torch is not importable; "
                       f"install it with: {INSTALL}")
    return False
  backend = jax.default_backend()
  if mode == "auto" and {"cpu": "cpu", "gpu": "cuda"}.get(backend) != device():
    logging.warning("torch runs on %s, JAX on %s: no torch reference (set "
                    "config.torch='on' to time it anyway)", device(), backend)
    return False
  return True


def _torch():
  import torch  # pylint: disable=g-import-not-at-top
  return torch


def device() -> str:
  """"cuda" when JAX runs on a GPU and torch sees one, else "cpu"."""
  gpu = jax.default_backend() == "gpu" and _torch().cuda.is_available()
  return "cuda" if gpu else "cpu"


def _sync(dev) -> None:
  if str(dev).startswith("cuda"):
    _torch().cuda.synchronize()


def matmul_flops_per_s(n: int, repeats: int, dev: str = "cpu") -> float:
  """Best FLOP/s of torch's [n, n] x [n, n] float32 matmul."""
  torch = _torch()
  gen = torch.Generator().manual_seed(0)
  a = torch.randn(n, n, generator=gen).to(dev)
  b = torch.randn(n, n, generator=gen).to(dev)
  torch.matmul(a, b)
  _sync(dev)
  best = math.inf
  for _ in range(repeats):
    t = time.perf_counter()
    torch.matmul(a, b)
    _sync(dev)
    best = min(best, time.perf_counter() - t)
  return 2.0 * n**3 / best


def setup(threads: int) -> dict:
  """Sets torch's intra-op threads; returns the version, threads, device."""
  torch = _torch()
  torch.set_num_threads(int(threads))
  return dict(torch_version=torch.__version__,
              torch_threads=torch.get_num_threads(), torch_device=device())


@contextlib.contextmanager
def full_precision():
  """Both sides in plain float32 for the checks (not the timing).

  On a GPU, JAX's default float32 convolutions and products use TF32 and
  so do torch's cuDNN convolutions; through ResNet-18's double backprop
  that moves the objective after one step by ~1% (seen on an H200), more
  than the float32 tolerances here. Timed steps keep each side's default.
  """
  torch = _torch()
  flags = (torch.backends.cudnn.allow_tf32,
           torch.backends.cuda.matmul.allow_tf32)
  torch.backends.cudnn.allow_tf32 = False
  torch.backends.cuda.matmul.allow_tf32 = False
  try:
    with jax.default_matmul_precision("highest"):
      yield
  finally:
    (torch.backends.cudnn.allow_tf32,
     torch.backends.cuda.matmul.allow_tf32) = flags
