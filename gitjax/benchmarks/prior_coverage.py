"""A generative prior's coverage: its best latent fit to unseen images.

Loads a trained prior (``prior.generator_dir``: a ``train_prior`` workdir or
the name of shipped weights) and the images its training held out (the last
``holdout`` images of its own training data, which ``train_prior`` never
trains on; ``prior.data_dir`` may point the prior's dataset elsewhere), fits
the generator to the first ``coverage.images`` of them (``gitjax.coverage``:
z for DCGAN; W+ and, with ``coverage.noise``, the noise maps for the style
generator; Adam from ``coverage.restarts`` starts) and reports the PSNR on
[-1, 1] (GGL's figure) and on [0, 1], LPIPS (``eval.lpips_net``) and a
picture of the targets over their fits (``coverage_fits.png``).
"""

import jax
import ml_collections as mlc
import numpy as np

from gitjax import coverage
from gitjax import loading
from gitjax import train_prior


def held_out(prior_config, count: int, data_dir: str = "") -> np.ndarray:
  """The first ``count`` images the prior's training held out, [-1, 1]."""
  config = mlc.ConfigDict(prior_config.to_dict())
  if data_dir:
    config.data.data_dir = data_dir
  ds = train_prior.load_data(config)
  holdout = int(config.holdout)
  return ds.images[-holdout:][:count] * 2.0 - 1.0


def run(config, workdir):
  gen_dir = config.prior.generator_dir
  gen, gen_vars = loading.generator(gen_dir)
  prior_config = loading.generator_config(gen_dir)
  targets = held_out(prior_config, int(config.coverage.images),
                     config.prior.data_dir)
  c = config.coverage
  settings = coverage.Settings(steps=c.steps, restarts=c.restarts, lr=c.lr,
                               noise=c.noise)
  scores, fits = coverage.evaluate(
      gen, gen_vars, targets, jax.random.key(config.seed), settings,
      lpips_net=config.eval.lpips_net or None, progress=config.progress)
  coverage.save_fits(workdir, targets, fits)
  return dict(generator=gen.name, generator_dir=str(gen_dir),
              generator_config=gen.config,
              data=dict(prior_config.data.to_dict(),
                        data_dir=config.prior.data_dir
                        or prior_config.data.data_dir),
              holdout=int(prior_config.holdout), **scores)
