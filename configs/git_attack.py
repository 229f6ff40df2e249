r"""GIT, GIT + Inverting Gradients, or LTI on one leaked LeNet gradient.

Loads a trained inverter, by default a GIT shipped in the package
(``git_lenet_cifar10``: 4,000 steps on CIFAR-10's 50,000 training images;
with ``sigma`` > 0, ``git_lenet_cifar10_noise``, the same budget trained on
leaks with Gaussian noise sigma = 0.1; hashes checked on load;
``gitjax/weights/manifest.json``), or from
``inverter_dir`` (a ``launch.train_inverter`` workdir, or another shipped
name), and attacks a leak simulated like its training data: DLG's LeNet at
random init (victim_seed 0), FedSGD, B = 1, [0, 1] pixels.

python -m launch.attack --config=configs/git_attack.py \
    --workdir=/tmp/gitjax/git_shipped
  The shipped GIT on an embedded photo: one forward pass, no training.
python -m launch.attack --config=configs/git_attack.py:sigma=0.1 \
    --workdir=/tmp/gitjax/git_shipped_noise
  The noise-trained shipped GIT on a leak with Gaussian noise sigma = 0.1.
python -m launch.train_inverter --config=configs/git_lenet.py \
    --workdir=/tmp/gitjax/git_lenet
python -m launch.attack \
    --config=configs/git_attack.py:inverter_dir=/tmp/gitjax/git_lenet \
    --workdir=/tmp/gitjax/git_attack
python -m launch.attack \
    --config=configs/git_attack.py:inverter_dir=/tmp/gitjax/git_lenet,attack=git_ig \
    --workdir=/tmp/gitjax/git_ig_attack

Arguments: ``inverter_dir`` (default: the shipped GIT); ``attack`` (git | git_ig | lti); ``data_dir``
(CIFAR-10 zips; the test split is attacked; empty: embedded photos);
``sigma`` (Gaussian noise on the leaked gradient); ``iterations`` (GIT + IG);
``proximity`` (GIT + IG's pull towards GIT's output).
"""

import ml_collections as mlc

from configs import common

ATTACKS = ("git", "git_ig", "lti")
SHIPPED = "git_lenet_cifar10"  # gitjax/weights/manifest.json.
SHIPPED_NOISE = "git_lenet_cifar10_noise"  # Trained at sigma = 0.1.


def get_config(arg=None):
  arg = common.parse_arg(arg, inverter_dir="", attack="git", data_dir="",
                         sigma=0.0, iterations=1000, proximity=0.0,
                         smoke=False)
  if arg.attack not in ATTACKS:
    raise ValueError(f"unknown attack {arg.attack!r}; known: {ATTACKS}")
  config = common.base_config()
  if arg.data_dir:
    config.data.name = "cifar10"
    config.data.data_dir = arg.data_dir
  config.victim = dict(name="lenet")
  if arg.sigma:
    config.leak.defense = [dict(name="gaussian", sigma=arg.sigma)]
  shipped = not arg.inverter_dir and arg.attack != "lti"
  config.attack = dict(name=arg.attack,
                       inverter_dir=(SHIPPED_NOISE if arg.sigma else
                                     SHIPPED) if shipped else
                       arg.inverter_dir or mlc.config_dict.placeholder(str))
  if arg.attack == "git_ig":
    config.attack.update(iterations=arg.iterations, proximity=arg.proximity)
    if arg.smoke:
      config.attack.iterations = 4
  if arg.smoke and not shipped:  # The size of git_lenet.py's smoke inverter.
    config.data.image_size = 8
  return config
