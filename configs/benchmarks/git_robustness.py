r"""GIT's robustness: gradient noise, pruning, distribution shift, parameter
discrepancy (CIFAR-10 / LeNet, B = 1); one PNG plot per sweep.

Uses the inverters of the git_lenet_cifar10 benchmark (pass their workdirs;
an empty git_dir trains one at ``budget``), scores ``num_test`` test images
per point (``gitjax.benchmarks.git_robustness``).

python -m launch.benchmark \
    --config=configs/benchmarks/git_robustness.py:git_dir=/tmp/gitjax/git_lenet_cpu,git_noise_dir=/tmp/gitjax/git_noise_cpu \
    --workdir=/tmp/gitjax/bench_git_robustness
Add ``shift_steps=N`` to also train (N steps) an inverter on classes 0-4 and
test it on classes 0-4 and 5-9 (or pass ``shift_dir``).

Measured results: see the report of issue 5 and BUILD_NOTES.md (CPU budget,
2026-11-21).
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, data_dir="../shared/data/cifar10",
                         mnist_dir="../shared/data/mnist", budget="cpu",
                         git_dir="", git_noise_dir="", shift_dir="",
                         shift_steps=0, smoke=False)
  config = common.base_config()
  config.benchmark = "git_robustness"
  config.data_dir = arg.data_dir
  config.budget = arg.budget
  config.git_dir = arg.git_dir
  config.git_noise_dir = arg.git_noise_dir
  config.shift_dir = arg.shift_dir
  config.shift_steps = arg.shift_steps
  config.shift_classes = (0, 1, 2, 3, 4)
  config.num_test = 128
  config.noise_sigmas = (0.0, 0.001, 0.01, 0.03, 0.1, 0.3)
  config.prune_rates = (0.0, 0.5, 0.9, 0.99)
  config.shift_datasets = [
      dict(label="skimage photos (embedded)", name="embedded",
           split="test"),
      dict(label="MNIST", name="mnist", data_dir=arg.mnist_dir,
           split="test", limit=1000)]
  config.discrepancy_steps = (0, 10, 100, 1000)
  config.discrepancy_lr = 0.01
  config.discrepancy_batch = 64
  if arg.smoke:
    config.data_dir = ""
    config.budget = "smoke"
    config.num_test = 4
    config.shift_steps = 2
    config.noise_sigmas = (0.0, 0.1)
    config.prune_rates = (0.0, 0.9)
    config.shift_datasets = [dict(label="digits", name="digits",
                                  split="test")]
    config.discrepancy_steps = (0, 2)
  return config
