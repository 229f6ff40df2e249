r"""Coverage of a trained generative prior on images it never saw.

python -m launch.train_prior --config=configs/prior_dcgan_celeba.py:cpu=True \
    --workdir=/tmp/gitjax/prior_dcgan_celeba
python -m launch.benchmark --config=configs/benchmarks/prior_coverage.py \
    --workdir=/tmp/gitjax/bench_prior_coverage

``gitjax/benchmarks/prior_coverage.py``: the best latent fit of the prior in
``generator_dir`` (a ``train_prior`` workdir or shipped weights' name) to the
first ``images`` of the images its training held out (``data_dir``
overrides its dataset's folder), PSNR on [-1, 1] and [0, 1] and LPIPS.
Targets (issue 14): DCGAN on CelebA 32x32 >= 13 dB on [-1, 1] (GGL's
prior); style generator on CIFAR-10 >= 22 dB on [0, 1] with W+ and noise
(``generator_dir=/tmp/gitjax/prior_style_cifar10,lpips_net=alex``).
Arguments: ``generator_dir``, ``data_dir``, ``images`` (64), ``steps``
(300), ``restarts`` (4), ``noise`` (True), ``lpips_net`` (vgg; empty: none).
"""

import ml_collections as mlc

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, generator_dir="/tmp/gitjax/prior_dcgan_celeba",
                         data_dir="", images=64, steps=300, restarts=4,
                         noise=True, lpips_net="vgg", smoke=False)
  config = mlc.ConfigDict()
  config.benchmark = "prior_coverage"
  config.seed = 0
  config.progress = True
  config.prior = dict(generator_dir=arg.generator_dir, data_dir=arg.data_dir)
  config.coverage = dict(images=arg.images, steps=arg.steps,
                         restarts=arg.restarts, lr=0.05, noise=arg.noise)
  config.eval = dict(lpips_net=arg.lpips_net)
  if arg.smoke:
    config.coverage.update(images=2, steps=2, restarts=1)
    config.eval.lpips_net = ""
    config.progress = False
  return config
