r"""Style-based generator prior for GI-SMN on CIFAR-10 32x32 (train split).

python -m launch.train_prior --config=configs/prior_style_cifar10.py:cpu=True \
    --workdir=/tmp/gitjax/prior_style_cifar10

A small StyleGAN2-like generator (mapping z -> w, modulated convolutions
with demodulation, noise inputs, learned constant, W+ styles) trained with
WGAN-GP. GPU (``cpu=False``): width 256, w_dim 256, 30k steps, batch 64.
``cpu=True``: width 32, w_dim 64, batch 32, 2 critic steps, EMA 0.999,
10,000 steps on all 50k images (87 min on one core, 2026-12-03); shipped as
``style_cifar10_32``: held-out coverage 24.39 dB on [0, 1] with W+ and
noise (64 images; BUILD_NOTES.md). GI-SMN's published generator is StyleGAN-XL (not
available in JAX); see BUILD_NOTES.md for what the substitute changes.
"""

import ml_collections as mlc

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, cpu=False, smoke=False,
                         data_dir="../shared/data/cifar10")
  config = mlc.ConfigDict()
  config.seed = 0
  config.data = dict(name="cifar10", data_dir=arg.data_dir, split="train",
                     image_size=32, channels=3, limit=None, options={})
  config.generator = dict(name="style", latent_dim=64, w_dim=256, width=256,
                          mapping_layers=4, image_size=32, channels=3)
  config.critic = dict(width=256)
  config.optimizer = dict(lr_generator=1e-4, lr_critic=1e-4, b1=0.0, b2=0.9)
  config.batch_size = 64
  config.n_critic = 5
  config.gp_weight = 10.0
  config.drift = 1e-3
  # Exponential moving average of the generator's weights (0: none); the
  # average is the prior that samples, coverage and the attacks use.
  config.ema = 0.999
  config.steps = 30000
  config.holdout = 500
  config.coverage_samples = 1024
  config.log_every = 200
  config.sample_every = 1000
  config.checkpoint_every = 1000
  config.keep_checkpoints = 2
  # The prior's measure (gitjax.coverage): PSNR of the best latent fit to
  # held-out images, logged every ``every`` steps and scored at the end.
  config.coverage = dict(every=1000, images=16, steps=100, restarts=2,
                         lr=0.05, noise=True, final_images=64,
                         final_steps=300, final_restarts=4,
                         lpips_net="alex")
  config.max_minutes = 0.0
  config.progress = True
  if arg.cpu:
    config.data.limit = None  # All 50,000 training images.
    config.generator.width = 32
    config.generator.w_dim = 64
    config.critic.width = 64
    config.batch_size = 32
    config.n_critic = 2
    config.optimizer.lr_generator = 2e-4
    config.optimizer.lr_critic = 2e-4
    config.optimizer.b1 = 0.5
    config.steps = 10000
    config.max_minutes = 150.0
    config.log_every = 100
    config.sample_every = 500
    config.checkpoint_every = 250
    config.coverage.every = 1000
  if arg.smoke:
    config.data = dict(name="embedded", data_dir=None, split="test",
                       image_size=8, channels=3, limit=None, options={})
    config.generator = dict(name="style", latent_dim=8, w_dim=8, width=8,
                            mapping_layers=2, image_size=8, channels=3)
    config.critic = dict(width=8)
    config.batch_size = 4
    config.n_critic = 2
    config.steps = 4
    config.holdout = 4
    config.coverage_samples = 16
    config.log_every = 2
    config.sample_every = 2
    config.checkpoint_every = 2
    config.coverage.update(every=2, images=2, steps=2, restarts=1,
                           final_images=2, final_steps=2, final_restarts=1,
                           lpips_net="")
  return config
