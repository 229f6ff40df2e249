r"""Learning-to-Invert baseline (Wu et al. 2023) for DLG's LeNet, B = 1.

The same data, victim, defense and budget as ``configs/git_lenet.py`` (all
its arguments apply), with LTI's inverter: the flattened gradient (P = 15,826
entries for LeNet on 32x32x3) through Linear(P, 3000)-ReLU-Linear(3000,
3000)-ReLU-Linear(3000, 3072)-Sigmoid, Adam at LTI's lr 1e-4. For large
victims set ``sketch_rate`` (LTI uses 0.5 for ResNet-20): the gradient is
count-sketched into int(P * rate) bins by a fixed hash.

python -m launch.train_inverter --config=configs/lti_lenet.py \
    --workdir=/tmp/gitjax/lti_lenet
python -m launch.train_inverter \
    --config=configs/lti_lenet.py:data_dir=../shared/data/cifar10,budget=cpu \
    --workdir=/tmp/gitjax/lti_lenet_cpu
"""

from configs import git_lenet


def get_config(arg=None):
  config = git_lenet.base_config(
      arg, inverter=dict(name="lti", hidden=3000, sketch_rate=None,
                         sketch_seed=0))
  config.train.lr = 1e-4
  if config.train.num_steps <= 4:  # The smoke budget.
    config.inverter.hidden = 8
  return config
