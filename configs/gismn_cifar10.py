r"""GI-SMN (style-latent refinement) on a CIFAR-10 batch, random ResNet-18.

python -m launch.attack --config=configs/gismn_cifar10.py:cpu=True,batch=4 \
    --workdir=/tmp/gitjax/gismn_cifar10
  With the style prior shipped in the package (``style_cifar10_32``, hash
  checked on load). With a prior of one's own:
python -m launch.train_prior --config=configs/prior_style_cifar10.py:cpu=True \
    --workdir=/tmp/gitjax/prior_style_cifar10
python -m launch.attack \
    --config=configs/gismn_cifar10.py:cpu=True,generator_dir=/tmp/gitjax/prior_style_cifar10 \
    --workdir=/tmp/gitjax/gismn_cifar10_own

W+ styles and noise inputs of the trained style generator, Adam lr 0.1,
L1 gradient matching, TV / L2 / group-consistency terms after 4/9 of the
3600 steps (GI-SMN's code), labels inferred from the gradient,
distinct-label test images. ``defense``: none, prune (90%) or noise
(Gaussian sigma 0.01). ``cpu=True``: ResNet-18 width 8 and 300 steps.
Expected: metrics.json (PSNR / SSIM / LPIPS-alex on [0, 1]) and grid.png;
BUILD_NOTES.md has the benchmark numbers.
"""

from configs import common

DEFENSES = dict(none=[], prune=[dict(name="prune", rate=0.9)],
                noise=[dict(name="gaussian", sigma=0.01)])


def get_config(arg=None):
  arg = common.parse_arg(arg, cpu=False, smoke=False, batch=1,
                         defense="none", data_dir="../shared/data/cifar10",
                         generator_dir=common.SHIPPED_PRIORS["cifar10"])
  if arg.defense not in DEFENSES:
    raise ValueError(f"unknown defense {arg.defense!r}; known: "
                     f"{sorted(DEFENSES)}")
  config = common.base_config()
  config.data.name = "cifar10"
  config.data.data_dir = arg.data_dir
  config.data.batch_size = arg.batch
  config.data.distinct_labels = True
  config.data.mean = (0.4914, 0.4822, 0.4465)
  config.data.std = (0.2470, 0.2435, 0.2616)
  config.victim = dict(name="resnet18", width=64)
  config.leak.defense = DEFENSES[arg.defense]
  config.attack = dict(name="gismn", generator_dir=arg.generator_dir,
                       steps=3600, lr=0.1, distance="l1")
  config.eval.lpips_net = "alex"
  if arg.cpu:
    config.victim.width = 8
    config.attack.steps = 300
  if arg.smoke:
    # Embedded photos at the prior's size; no data download.
    config.data.update(name="embedded", data_dir=None,
                       image_size=common.smoke_image_size(arg.generator_dir))
    config.victim.width = 2
    config.attack.steps = 3
    config.eval.lpips_net = None
  return config
