"""Trains a generative prior (DCGAN or style-based, WGAN-GP) for GGL/GI-SMN.

python -m launch.train_prior --config=configs/prior_dcgan_celeba.py:cpu=True \
    --workdir=/tmp/gitjax/prior_dcgan_celeba
Started again on the same workdir, training resumes from the last checkpoint
(--resume_intact: from the newest intact one, if the last is corrupt).
"""

from gitjax import train_prior
from launch import common

_FLAGS = common.define_flags("Prior training config file.", resumable=True)

if __name__ == "__main__":
  common.run(train_prior.train_and_evaluate, _FLAGS)
