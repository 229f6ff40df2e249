"""Trains a gradient inverter (GIT or LTI). The logic is in the library.

python -m launch.train_inverter --config=configs/git_lenet.py \
    --workdir=/tmp/gitjax/git_lenet
Started again with the same workdir, a killed run resumes from its last
checkpoint (--resume_intact: from the newest intact one, if the last is
corrupt). Fields are overridden ml_collections style:
--config.train.num_steps=500.
"""

from gitjax import train_inverter
from launch import common

_FLAGS = common.define_flags("Inverter training config file.",
                             resumable=True)

if __name__ == "__main__":
  common.run(train_inverter.train_and_evaluate, _FLAGS)
