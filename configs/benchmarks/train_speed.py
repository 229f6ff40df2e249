r"""Training throughput: a GIT inverter step and a WGAN-GP prior step.

python -m launch.benchmark --config=configs/benchmarks/train_speed.py:cpu=True \
    --workdir=/tmp/gitjax/bench_train_speed

Examples per second of one training step of each trainer, against the same
step in PyTorch timed interleaved in the same process
(``gitjax/benchmarks/train_speed.py``):

* ``git``: ``train_inverter``'s step for ``configs/git_lenet.py``'s budget
  (``cpu=True``: its cpu budget, LeNet on 32x32x3 images, B = 1, 32
  messages per step, inverter width 32; default: the full budget, 256
  messages, width 64), on random images held on the device; examples are
  messages (one image each);
* ``wgan_gp``: ``train_prior``'s step for ``configs/prior_dcgan_celeba.py``
  (``cpu=True``: DCGAN width 128, batch 32, 2 critic updates; default:
  width 512, batch 64, 5); examples are real images, batch x n_critic.

Each row has ms per step (median of ``rounds``), examples/s, GFLOP per step
from XLA's cost analysis and the fraction of a ``matmul_size``^2 float32
matmul's FLOP/s measured in the same run. With torch importable
(``:torch=auto``; ``on`` requires it, ``off`` skips it: install with the
``compare`` extra, see ``configs/benchmarks/ig_speed.py``) the rows also
have torch's ms per step and examples/s, the median gitjax/torch ratio of
the rounds, torch's fraction of the (JAX) matmul rate for the same XLA
FLOP count, and the checked loss differences. ``torch_threads`` (0: all
cores) sets ``torch.set_num_threads``; on cores shared with another job
use 1 (``ig_speed``'s docstring). ``:smoke=True``: 8x8 images, widths 2-8,
2 rounds (72 s on the shared 2-core CPU, most of it compiling the GIT step).

Measured 2026-12-07 with ``:cpu=True --config.rounds=7`` (idle, AMD EPYC
host; the data order drawn once an epoch and the LayerNorm's channel
means as products, BUILD_NOTES.md): GIT 181 ms per step, torch 170
(1.05; 1.02 in a second run), 34% of the matmul rate; WGAN-GP 147 ms,
torch 170 (0.87). 2026-12-06, ``--config.rounds=5`` (idle, AMD EPYC
host, YNNPACK's reductions and products, ``gitjax.xla_cpu.FLAGS``): GIT
249 ms per step, torch 186 (1.29); WGAN-GP 185 ms, torch 191 (0.98).
2026-12-05, the same command (the YNN list then empty): GIT 201 ms per
step, torch 174 ms (gitjax/torch 1.23; 241 / 175 = 1.39 before the
back-projection through strided layers became one batched product,
BUILD_NOTES.md); WGAN-GP 160 ms, 401 real images/s, torch 167 (0.97).
2026-12-04 (Intel host): GIT 235 ms, torch 157 (1.45; 2.08 before that
day's changes); WGAN-GP 149 / 150.
Earlier, 2026-12-03, with ``:cpu=True`` and ``--config.rounds=3
--config.torch_threads=1``, each kind in its own run, on the 2-core CPU
beside a busy training job (rough): GIT 1.30 s per step, 24.7 messages/s,
15.9 GFLOP per step, 37% of the matmul rate; torch 0.85 s, 37.7 messages/s
(gitjax/torch 1.50; the inverter's backward pass is most of the gap:
XLA:CPU's 3x3 convolution gradients ran at ~0.6x oneDNN's). WGAN-GP 0.75 s
per step, 86 real images/s, 13.4 GFLOP, 51%; torch 0.78 s, 82/s
(gitjax/torch 0.94).
"""

import ml_collections as mlc

from configs import common
from configs import git_lenet
from configs import prior_dcgan_celeba


def _git_block(budget: str) -> dict:
  """What ``inverter_setup.make_setup`` reads from a git_lenet config."""
  g = git_lenet.get_config(f"budget={budget}")
  return dict(
      seed=g.seed, victim_seed=g.victim_seed, victim=g.victim.to_dict(),
      data=dict(image_size=g.data.image_size, channels=g.data.channels,
                mean=g.data.mean, std=g.data.std),
      leak=g.leak.to_dict(), inverter=g.inverter.to_dict(),
      train=g.train.to_dict(), num_classes=10,
      images=g.data.limit or 50_000)  # Random images on the device.


def _prior_block(cpu: bool, smoke: bool) -> dict:
  """What ``train_prior.train_step`` needs of a prior config."""
  p = prior_dcgan_celeba.get_config(f"cpu={cpu},smoke={smoke}")
  return dict(seed=p.seed, generator=p.generator.to_dict(),
              critic=p.critic.to_dict(), optimizer=p.optimizer.to_dict(),
              batch_size=p.batch_size, n_critic=p.n_critic,
              gp_weight=p.gp_weight, drift=p.drift)


def get_config(arg=None):
  arg = common.parse_arg(arg, cpu=False, smoke=False, torch="auto")
  budget = "smoke" if arg.smoke else "cpu" if arg.cpu else "full"
  config = mlc.ConfigDict()
  config.benchmark = "train_speed"
  config.kinds = ("git", "wgan_gp")
  config.git = _git_block(budget)
  config.prior = _prior_block(arg.cpu, arg.smoke)
  config.matmul_size = 4096
  config.repeats = 3  # Of the matmul (best of).
  config.rounds = 20  # Interleaved gitjax / torch rounds per step kind.
  config.steps_per_round = 1
  config.torch = arg.torch  # "auto" (when importable), "on" or "off".
  config.torch_threads = 0  # torch.set_num_threads; 0: os.cpu_count().
  if arg.cpu:
    config.matmul_size = 2048
    config.repeats = 1
    config.rounds = 5
  if arg.smoke:
    config.matmul_size = 64
    config.repeats = 1
    config.rounds = 2
    config.torch_threads = 1  # Tiny shapes: more threads only wait.
    # XLA's convolutions: the FLOPs are counted on them, so the timed
    # program is the counted one ("auto" is im2col on CPU: two compiles).
    config.git.victim.update(channels=4, conv="xla")
  return config
