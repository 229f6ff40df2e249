r"""WGAN-GP DCGAN prior for GGL on CelebA 32x32 (images 1-9000).

python -m launch.train_prior --config=configs/prior_dcgan_celeba.py:cpu=True \
    --workdir=/tmp/gitjax/prior_dcgan_celeba

GGL's architecture (Linear(128 -> 4*4*512) + BN + ReLU, ConvT k2 s2 blocks,
tanh) at width 512 on a GPU (``cpu=False``: 20k generator steps, batch 64,
5 critic steps). ``cpu=True`` is the 2-core CPU budget: width 128, batch 32,
2 critic steps, EMA 0.999, 10,000 steps (83 min on one core, 2026-12-03);
shipped as ``dcgan_celeba32``: held-out coverage 15.25 dB on [-1, 1]
(64 images; BUILD_NOTES.md). The last 500 training images
are held out for ``coverage_mse``. Images 9001-10000 are never seen: the GGL
benchmark attacks them. Writes checkpoints, samples_*.png, metrics.jsonl.
"""

import ml_collections as mlc

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, cpu=False, smoke=False,
                         data_dir="../shared/data/celeba")
  config = mlc.ConfigDict()
  config.seed = 0
  config.data = dict(name="celeba", data_dir=arg.data_dir, split="train",
                     image_size=32, channels=3, limit=None,
                     options=dict(start=0, stop=9000))
  config.generator = dict(name="dcgan", latent_dim=128, width=512,
                          image_size=32, channels=3)
  config.critic = dict(width=512)
  config.optimizer = dict(lr_generator=1e-4, lr_critic=1e-4, b1=0.5, b2=0.9)
  config.batch_size = 64
  config.n_critic = 5
  config.gp_weight = 10.0
  config.drift = 1e-3
  # Exponential moving average of the generator's weights (0: none); the
  # average is the prior that samples, coverage and the attacks use.
  config.ema = 0.999
  config.steps = 20000
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
                         lpips_net="vgg")
  config.max_minutes = 0.0  # 0: no wall-time limit.
  config.progress = True
  if arg.cpu:
    config.generator.width = 128
    config.critic.width = 128
    config.batch_size = 32
    config.n_critic = 2
    config.optimizer.lr_generator = 2e-4
    config.optimizer.lr_critic = 2e-4
    config.steps = 10000
    config.max_minutes = 150.0
    config.log_every = 100
    config.sample_every = 500
    config.checkpoint_every = 250
    config.coverage.every = 1000
  if arg.smoke:
    config.data = dict(name="embedded", data_dir=None, split="test",
                       image_size=8, channels=3, limit=None, options={})
    config.generator = dict(name="dcgan", latent_dim=8, width=8,
                            image_size=8, channels=3)
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
