r"""GGL (CMA-ES through a trained DCGAN) on one CelebA 32x32 image, ResNet-18.

python -m launch.attack \
    --config=configs/ggl_celeba.py:cpu=True,defense=prune \
    --workdir=/tmp/gitjax/ggl_celeba
  With the DCGAN prior shipped in the package (``dcgan_celeba32``, hash
  checked on load). With a prior of one's own:
python -m launch.train_prior --config=configs/prior_dcgan_celeba.py:cpu=True \
    --workdir=/tmp/gitjax/prior_dcgan_celeba
python -m launch.attack \
    --config=configs/ggl_celeba.py:cpu=True,generator_dir=/tmp/gitjax/prior_dcgan_celeba \
    --workdir=/tmp/gitjax/ggl_celeba_own

GGL's CelebA task: a random-init 2-class ResNet-18, B = 1, inputs
normalized with mean = std = 0.5, the label inferred from the gradient and
the defense's parameters estimated from it. ``defense``: none, noise
(sigma 0.1), clip (S = 4), prune (90%) or soteria (80%), as GGL Table 3.
``optimizer``: cmaes (800 x 50), bo (TuRBO-1, 1000 evaluations) or adam
(2500 steps); ``cpu=True`` cuts the budgets by 20x and the ResNet width to
8. The image is CelebA #9001 (never seen by the prior). Expected:
``metrics.json`` with psnr and psnr_ggl (GGL's scale), grid.png;
BUILD_NOTES.md has the benchmark numbers.
"""

from configs import common

DEFENSES = dict(
    none=[],
    noise=[dict(name="gaussian", sigma=0.1)],
    clip=[dict(name="clip", max_norm=4.0)],
    prune=[dict(name="prune", rate=0.9)],
    soteria=[dict(name="soteria", rate=0.8)])
BUDGETS = dict(cmaes=800, bo=1000, adam=2500)


def get_config(arg=None):
  arg = common.parse_arg(arg, cpu=False, smoke=False, defense="none",
                         optimizer="cmaes", data_dir="../shared/data/celeba",
                         generator_dir=common.SHIPPED_PRIORS["celeba"])
  if arg.defense not in DEFENSES:
    raise ValueError(f"unknown defense {arg.defense!r}; known: "
                     f"{sorted(DEFENSES)}")
  if arg.optimizer not in BUDGETS:
    raise ValueError(f"unknown optimizer {arg.optimizer!r}; known: "
                     f"{sorted(BUDGETS)}")
  config = common.base_config()
  config.data.name = "celeba"
  config.data.data_dir = arg.data_dir
  config.data.image_size = 32
  config.data.mean = (0.5,)
  config.data.std = (0.5,)
  config.data.index = (0,)
  config.data.options = dict(start=9000, stop=9016)
  config.victim = dict(name="resnet18", width=64)
  config.leak.defense = DEFENSES[arg.defense]
  config.attack = dict(
      name="ggl", generator_dir=arg.generator_dir, optimizer=arg.optimizer,
      budget=BUDGETS[arg.optimizer], population=50, sigma=1.0,
      distance="l2", kl_weight=0.1 if arg.optimizer == "adam" else 0.0,
      noise_mode="none", bo_candidates=None, log_every=50)
  config.eval.lpips_net = "vgg"
  if arg.cpu:
    config.victim.width = 8
    config.attack.budget = BUDGETS[arg.optimizer] // 20
    config.attack.bo_n_init = 20
    config.attack.bo_candidates = 500
    config.attack.log_every = 10
  if arg.smoke:
    # Embedded photos at the prior's size; no data download.
    config.data.update(name="embedded", data_dir=None,
                       image_size=common.smoke_image_size(arg.generator_dir))
    config.data.options = {}
    config.victim.width = 2
    config.attack.budget = 2
    config.attack.population = 4
    config.attack.bo_n_init = 4
    config.eval.lpips_net = None
  return config
