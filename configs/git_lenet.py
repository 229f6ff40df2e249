r"""GIT inverter for DLG's LeNet (random init, fixed), B = 1, [0, 1] pixels.

Trains Coarse-GIT offline on gradients of public images computed on the fly
(``gitjax.train_inverter``); the workdir then serves as ``inverter_dir`` of
the ``git`` / ``git_ig`` attacks (``configs/git_attack.py``).

python -m launch.train_inverter --config=configs/git_lenet.py \
    --workdir=/tmp/gitjax/git_lenet
  Embedded photos (180 crops), 2,000 steps of 32: a quick demo.

python -m launch.train_inverter \
    --config=configs/git_lenet.py:data_dir=../shared/data/cifar10,budget=cpu \
    --workdir=/tmp/gitjax/git_lenet_cpu
  CIFAR-10, 10,000 training images, 1,200 steps of 32 (see
  configs/benchmarks/git_lenet_cifar10.py for the measured result). Adding
  ``steps=4000,limit=50000`` (all training images) took 29 min on 2 idle
  cores on 2026-11-21 and reached test MSE 0.0062 (BUILD_NOTES.md).

python -m launch.train_inverter \
    --config=configs/git_lenet.py:data_dir=DIR,budget=full --workdir=DIR
  The GPU budget (50,000 images, 60,000 steps of 256).

Arguments: ``data_dir`` (CIFAR-10 zips; empty: embedded photos), ``budget``
(smoke | default | cpu | full; ``smoke=True`` is ``budget=smoke``),
``sigma`` (Gaussian gradient noise simulated in training), ``classes``
(e.g. ``0-1-2-3-4``: train on these classes only), ``steps`` (override the
budget's step count), ``limit`` (training images; 50000: all of CIFAR-10's;
the smoke budget ignores ``steps`` and ``limit``),
``batch`` (B, images per leaked message), ``victim`` (another registered
model), ``victim_params`` (fixed | fresh | perturbed | trajectory: the
victim's parameters at each training step, for a server whose model moves),
``perturb_scale`` (relative Gaussian perturbation of "perturbed") and
``trajectory_steps`` (with "trajectory", each step's victim is one of 16
snapshots of the victim trained up to this many SGD steps, lr 0.01, batches
of 64, on the training images: ``gitjax.inverter_setup.TRAJECTORY``) and
``init_from`` (start from the parameters of a trained inverter of the same
architecture, a workdir or shipped name, e.g. the clean GIT before
training with ``sigma``).
"""

import ml_collections as mlc

from configs import common

BUDGETS = ("smoke", "default", "cpu", "full")


def base_config(arg=None, inverter=None):
  """The training config shared by GIT and LTI (``configs/lti_lenet.py``)."""
  arg = common.parse_arg(arg, data_dir="", budget="default", sigma=0.0,
                         classes="", steps=0, limit=0, batch=1,
                         victim="lenet", victim_params="fixed",
                         perturb_scale=0.0, trajectory_steps=1000,
                         init_from="", smoke=False)
  if arg.smoke:
    arg.budget = "smoke"
  if arg.budget not in BUDGETS:
    raise ValueError(f"unknown budget {arg.budget!r}; known: {BUDGETS}")
  config = mlc.ConfigDict()
  config.seed = 0
  cifar = bool(arg.data_dir)
  classes = tuple(int(c) for c in arg.classes.split("-")) if arg.classes \
      else None
  config.data = dict(
      name="cifar10" if cifar else "embedded",
      data_dir=arg.data_dir or None, split="train", image_size=32,
      channels=3, limit=10_000 if cifar else None, classes=classes,
      mean=(0.0,), std=(1.0,), options={})
  config.eval_data = dict(
      name=config.data.name, data_dir=config.data.data_dir, split="test",
      image_size=32, channels=3, limit=None, classes=None, count=64, seed=0,
      options={})
  config.victim = dict(name=arg.victim)
  config.victim_seed = 0
  config.leak = dict(
      batch_size=arg.batch,
      defense=[dict(name="gaussian", sigma=arg.sigma)] if arg.sigma else [],
      labels_shared=False,
      victim_params=arg.victim_params,  # See the docstring.
      perturb_scale=arg.perturb_scale)
  if arg.victim_params == "trajectory":
    config.leak.trajectory = dict(
        steps=2 if arg.budget == "smoke" else arg.trajectory_steps)
  config.inverter = inverter or dict(
      name="git", width=32, heads=4, depth=2, channels=8, cond_dim=64)
  config.train = dict(batch_size=32, num_steps=2_000, lr=1e-3,
                      warmup_steps=100, weight_decay=0.0, grad_clip=1.0,
                      final_lr_fraction=0.01, chunk_size=None)
  config.checkpoint_every = 500
  config.keep = 2
  config.log_every = 50
  config.eval_every = 500
  config.num_devices = None  # None: all devices.
  if arg.budget == "smoke":
    config.data.image_size = config.eval_data.image_size = 8
    config.data.limit = 32
    config.eval_data.count = 4
    config.train.update(batch_size=8, num_steps=4, warmup_steps=1)
    config.checkpoint_every = 2
    config.log_every = config.eval_every = 2
    if config.inverter.name == "git":
      config.inverter.update(width=4, heads=2, depth=1, channels=2,
                             cond_dim=8)
  elif arg.budget == "cpu":  # About 20 minutes on 2 shared CPU cores.
    config.eval_data.update(count=256, limit=1_000)
    config.train.update(batch_size=32, num_steps=1_200, warmup_steps=100)
    config.checkpoint_every = 200
    config.eval_every = 300
  elif arg.budget == "full":
    config.data.limit = None  # All 50,000 training images.
    config.eval_data.update(count=256, limit=1_000)
    config.train.update(batch_size=256, num_steps=60_000, warmup_steps=1_000)
    config.checkpoint_every = 2_000
    config.eval_every = 5_000
    config.log_every = 200
    if config.inverter.name == "git":
      config.inverter.update(width=64)
  if (arg.victim == "resnet20" and arg.budget in ("default", "cpu")
      and config.inverter.name == "git"):
    # ResNet-20's 19 conv layers at GIT's LeNet size: 7 s per step of 32 on
    # one core. Two error maps per layer and width 16 cut it to ~3 s
    # (measured 2026-12-04, BUILD_NOTES.md).
    config.inverter.update(width=16, depth=1, heads=2)
  if arg.init_from:
    config.train.init_from = arg.init_from
  if arg.budget != "smoke":  # Smoke stays a few seconds whatever is asked.
    if arg.steps:
      config.train.num_steps = arg.steps
    if arg.limit:
      config.data.limit = arg.limit
  return config


def get_config(arg=None):
  return base_config(arg)
