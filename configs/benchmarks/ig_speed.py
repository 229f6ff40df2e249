r"""Inverting Gradients: ms per iteration and FLOP/s utilization.

python -m launch.benchmark --config=configs/benchmarks/ig_speed.py \
    --workdir=/tmp/gitjax/bench_ig_speed

ConvNet (width 64) and ResNet-18 (width 64) at B = 1 and B = 8 on 32x32x3
random-init victims: ms per IG iteration (the engine's compiled chunk),
GFLOP per iteration from XLA's cost analysis of the compiled step, achieved
GFLOP/s as a fraction of a 4096^2 float32 matmul measured in the same run,
and 8 vmapped restarts against 8 sequential runs (ConvNet, B = 1).
``:cpu=True`` is the CPU budget: the same models, timing 1 iteration, and the
restart comparison on a width-16 ConvNet. Measured 2026-11-21 on the 2-core
CPU (table in BUILD_NOTES.md): ConvNet-64 258 ms (B = 1) and 5.0 s (B = 8)
per iteration, ResNet-18 172 ms and 1.5 s, i.e. 36% / 15% / 15% / 14% of
the matmul rate (target for ResNet-18: 50%, missed on this CPU); 8
restarts in one program 1.21x faster than 8 separate runs (those figures
are the best of 1 timed chunk; cells now report the median of ``rounds``).
Re-measured 2026-12-04 with ``:cpu=True --config.rounds=10`` (idle; the
replay on XLA's convolutions with forward-over-reverse, the launcher's
XLA:CPU flag, the cosine as vdot, the leak compiled in as constants):
ConvNet-64 136 / 874 ms (B = 1 / 8), ResNet-18 127 / 401; gitjax /
PyTorch 0.91 / 0.86 / 0.85 / 0.92; 65% / 81% / 19% / 48% of the matmul
rate; 8 restarts "map"-ped 2.04x faster than 8 separate runs.
2026-12-06, ``:cpu=True --config.rounds=5`` on a 2-core AMD EPYC (idle;
the replay's convolutions now chosen per layer, ``conv="shape"``):
ConvNet-64 177 / 1,129 ms, ResNet-18 135 / 476; gitjax / PyTorch 1.05 /
0.91 / 0.69 / 1.05; 75% / 94% / 27% / 61% of the matmul rate. Later that
day, the same command with YNNPACK's reductions and products
(``gitjax.xla_cpu.FLAGS``): ConvNet-64 176 / 1,169 ms, ResNet-18 98 / 409;
gitjax / PyTorch 0.98 / 0.90 / 0.70 / 0.81; 70% / 84% / 35% / 65%.
2026-12-07, ``:cpu=True --config.rounds=7`` (idle; one image's cosine
through ``ghost``, ``matching.Settings.ghost``, with the leak's low-rank
kernels factored): ConvNet-64 132 / 835 ms, ResNet-18 66 / 357; gitjax /
PyTorch 0.84 / 0.78 / 0.39 / 0.74 (ResNet-18 B = 1: 0.45 with 20 rounds);
72% / 91% / 40% / 58% of a 262 GFLOP/s matmul.

PyTorch reference (``gitjax/benchmarks/torch_reference.py``): with torch
importable, each cell also times the same IG step in PyTorch, interleaved
with gitjax round by round, after checking that both give the same logits,
objective and step; rows gain ``torch_ms_per_iteration``,
``gitjax_over_torch`` and ``torch_fraction_of_matmul``. ``:torch=off``
skips it, ``:torch=on`` fails when torch is missing. Install the CPU wheel
with the ``compare`` extra:

pip install -e ".[compare]" \
    --extra-index-url https://download.pytorch.org/whl/cpu

``torch_threads`` (0: all cores) sets ``torch.set_num_threads``. On cores
shared with another job, use 1 (or OMP_WAIT_POLICY=PASSIVE): torch's
OpenMP threads spin-wait for each other. On the 2-core CPU beside a busy
job, a ConvNet-16 step (32x32, B = 1) took 3.1 s with 2 threads, 81 ms with
1 and 89 ms with 2 passive threads.
"""

import ml_collections as mlc

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, cpu=False, smoke=False, torch="auto",
                         second_order="forward", compare_second_order=True)
  config = mlc.ConfigDict()  # No attack-experiment blocks: none is used.
  config.benchmark = "ig_speed"
  config.models = (("convnet", 64), ("resnet18", 64))
  config.batch_sizes = (1, 8)
  config.image_size = 32
  config.iterations = 20
  config.repeats = 3
  config.restarts = 8
  config.restart_model = ("convnet", 64)
  config.matmul_size = 4096
  config.rounds = 20  # Interleaved gitjax / torch rounds per cell.
  config.torch = arg.torch  # "auto" (when importable), "on" or "off".
  config.torch_threads = 0  # torch.set_num_threads; 0: os.cpu_count().
  config.second_order = arg.second_order  # "forward" or "reverse".
  config.compare_second_order = arg.compare_second_order
  if arg.cpu:
    config.iterations = 1
    config.repeats = 1
    config.rounds = 5
    config.matmul_size = 2048
    config.restart_model = ("convnet", 16)
  if arg.smoke:
    config.models = (("convnet", 2),)
    config.batch_sizes = (1,)
    config.image_size = 12
    config.iterations = 2
    config.repeats = 1
    config.restarts = 2
    config.restart_model = ("convnet", 2)
    config.matmul_size = 64
    config.rounds = 2
    config.torch_threads = 1  # Tiny shapes: more threads only wait.
  return config
