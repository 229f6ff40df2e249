r"""GIT on CIFAR-10 / LeNet (DLG's, random init, fixed), B = 1, [0, 1] pixels.

Trains (or loads) GIT, LTI and a GIT trained with Gaussian gradient noise
sigma = 0.1 on 10,000 CIFAR-10 training images, then scores them on 256 test
images, runs DLG, IG and GIT + IG on the first ``num_attack`` leaks, and
times one GIT forward pass against a full IG run (``gitjax.benchmarks.
git_lenet_cifar10``). Targets (the GIT paper, second-hand): GIT MSE <= 0.010
and below LTI's (0.015); GIT MSE <= 0.012 at sigma = 0.1; GIT + IG reaches
IG's final PSNR in a quarter of IG's iterations and ends higher.

CPU budget (each inverter trained ~20 min on 2 shared cores; the three
training runs can be started separately and passed as *_dir):
python -m launch.benchmark --config=configs/benchmarks/git_lenet_cifar10.py \
    --workdir=/tmp/gitjax/bench_git
python -m launch.benchmark \
    --config=configs/benchmarks/git_lenet_cifar10.py:git_dir=/tmp/gitjax/git_lenet_cpu,lti_dir=/tmp/gitjax/lti_lenet_cpu,git_noise_dir=/tmp/gitjax/git_noise_cpu \
    --workdir=/tmp/gitjax/bench_git
GPU budget (60,000 steps of 256 on all 50,000 training images):
python -m launch.benchmark \
    --config=configs/benchmarks/git_lenet_cifar10.py:budget=full \
    --workdir=/tmp/gitjax/bench_git_full

Measured results: see the benchmark section of BUILD_NOTES.md and the report
of issue 5 (CPU budget, 2026-11-21).
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, data_dir="../shared/data/cifar10",
                         budget="cpu", git_dir="", lti_dir="",
                         git_noise_dir="", smoke=False)
  config = common.base_config()
  config.benchmark = "git_lenet_cifar10"
  config.data_dir = arg.data_dir
  config.budget = arg.budget  # Training budget of configs/git_lenet.py.
  config.git_dir = arg.git_dir
  config.lti_dir = arg.lti_dir
  config.git_noise_dir = arg.git_noise_dir
  config.num_test = 256
  config.num_attack = 4
  config.sigma = 0.1
  config.dlg_iterations = 300
  config.ig_iterations = 1000
  config.proximity = 0.0
  if arg.smoke:
    config.data_dir = ""  # Embedded photos.
    config.budget = "smoke"
    config.num_test = 4
    config.num_attack = 1
    config.dlg_iterations = 2
    config.ig_iterations = 4
  return config
