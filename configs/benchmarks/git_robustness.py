r"""GIT's robustness: gradient noise, pruning, distribution shift, parameter
discrepancy (CIFAR-10 / LeNet, B = 1); one PNG plot per sweep.

Uses the inverters of the git_lenet_cifar10 benchmark (pass their workdirs;
an empty git_dir trains one at ``budget``), scores ``num_test`` test images
per point (``gitjax.benchmarks.git_robustness``).

python -m launch.benchmark \
    --config=configs/benchmarks/git_robustness.py:git_dir=/tmp/gitjax/git_lenet_cpu,git_noise_dir=/tmp/gitjax/git_noise_cpu \
    --workdir=/tmp/gitjax/bench_git_robustness
Add ``shift_steps=N`` to also train (N steps) an inverter on classes 0-4 and
test it on classes 0-4 and 5-9 (or pass ``shift_dir``), and
``moving_steps=N`` to train (N steps) one for a server whose model moves:
each training step sees the victim's parameters perturbed by relative
Gaussian noise of ``perturb_scale`` (``moving_mode=trajectory``: drawn from
snapshots of a public SGD trajectory instead; see ``configs/git_lenet.py``)
(or pass ``moving_dir``); the discrepancy sweep then scores it beside the
fixed-victim GIT.

Measured results: see the report of issue 5 and BUILD_NOTES.md (CPU budget,
2026-11-21).

Fields: ``inverters.<name>``: ``dir`` and ``train`` as in
``configs/benchmarks/git_lenet_cifar10.py`` (``git_noise`` is only loaded,
given its dir; ``shift`` is trained only with ``shift_steps`` > 0, on
classes 0-4, and its classes are read from its own training config;
``moving`` only with ``moving_steps`` > 0);
``bench``: the sweeps (``noise_sigmas``, ``prune_rates``,
``shift_datasets``, ``discrepancy_steps`` with ``discrepancy_lr`` and
``discrepancy_batch``) and ``num_test``.
"""

import ml_collections as mlc

from configs import common
from configs import git_lenet


def get_config(arg=None):
  arg = common.parse_arg(arg, data_dir="../shared/data/cifar10",
                         mnist_dir="../shared/data/mnist", budget="cpu",
                         git_dir="", git_noise_dir="", shift_dir="",
                         shift_steps=0, moving_dir="", moving_steps=0,
                         moving_mode="perturbed", perturb_scale=0.05,
                         smoke=False)
  if arg.smoke:
    arg.data_dir, arg.budget = "", "smoke"  # Embedded photos.
    arg.shift_steps = arg.moving_steps = 2
  train = f"data_dir={arg.data_dir},budget={arg.budget}"
  config = mlc.ConfigDict()
  config.benchmark = "git_robustness"
  config.inverters = dict(
      git=dict(dir=arg.git_dir, train=git_lenet.get_config(train)),
      git_noise=dict(dir=arg.git_noise_dir, train=None),
      shift=dict(dir=arg.shift_dir, train=git_lenet.get_config(
          f"{train},classes=0-1-2-3-4,steps={arg.shift_steps}")
                 if arg.shift_steps else None),
      moving=dict(dir=arg.moving_dir, train=git_lenet.get_config(
          f"{train},victim_params={arg.moving_mode},perturb_scale="
          f"{arg.perturb_scale},steps={arg.moving_steps}")
                  if arg.moving_steps else None))
  config.bench = dict(
      num_test=128,
      noise_sigmas=(0.0, 0.001, 0.01, 0.03, 0.1, 0.3),
      prune_rates=(0.0, 0.5, 0.9, 0.99),
      shift_datasets=[
          dict(label="skimage photos (embedded)", name="embedded",
               split="test"),
          dict(label="MNIST", name="mnist", data_dir=arg.mnist_dir,
               split="test", limit=1000)],
      discrepancy_steps=(0, 10, 100, 1000),
      discrepancy_lr=0.01,
      discrepancy_batch=64)
  if arg.smoke:
    config.bench.update(
        num_test=4, noise_sigmas=(0.0, 0.1), prune_rates=(0.0, 0.9),
        shift_datasets=[dict(label="digits", name="digits", split="test")],
        discrepancy_steps=(0, 2))
  return config
