r"""Learning-to-Invert baseline (Wu et al. 2023) for DLG's LeNet, B = 1.

The same data, victim, defense and budget as ``configs/git_lenet.py`` (all
its arguments apply), with LTI's inverter: the flattened gradient (P = 15,826
entries for LeNet on 32x32x3) through Linear(P, 3000)-ReLU-Linear(3000,
3000)-ReLU-Linear(3000, 3072)-Sigmoid, Adam at LTI's lr 1e-4 (1e-3 with
batches of 256 for the CPU budget, the same 38,400 examples as GIT's). For large
victims set ``sketch_rate`` (LTI uses 0.5 for ResNet-20): the gradient is
count-sketched into int(P * rate) bins by a fixed hash.

python -m launch.train_inverter --config=configs/lti_lenet.py \
    --workdir=/tmp/gitjax/lti_lenet
python -m launch.train_inverter \
    --config=configs/lti_lenet.py:data_dir=../shared/data/cifar10,budget=cpu \
    --workdir=/tmp/gitjax/lti_lenet_cpu
  With ``steps=4000,limit=50000``: 500 steps of 256 on all 50,000 images, the
  examples of the shipped GIT's 4,000 steps of 32.
"""

from configs import git_lenet


def get_config(arg=None):
  config = git_lenet.base_config(
      arg, inverter=dict(name="lti", hidden=3000, sketch_rate=None,
                         sketch_seed=0))
  config.train.lr = 1e-4
  if config.victim.name == "resnet20":  # LTI's own rate for ResNet-20.
    config.inverter.sketch_rate = 0.5
  if config.train.num_steps <= 4:  # The smoke budget.
    config.inverter.hidden = 8
  if config.train.batch_size == 32 and config.eval_data.limit == 1_000:
    # The CPU budget: GIT's training examples (1,200 or ``steps`` x 32) in
    # LTI's batches of 256 (at 32, updating the 66M parameters dominates
    # the step on a CPU), with a learning rate raised for the fewer steps.
    steps = max(1, config.train.num_steps * 32 // 256)
    config.train.update(batch_size=256, num_steps=steps, warmup_steps=10,
                        lr=1e-3)
    config.checkpoint_every = 25
    config.eval_every = 50
    config.log_every = 10
    if config.victim.name == "resnet20":
      # Width 3,000 on ResNet-20's sketch (136k bins) is 426M parameters:
      # 21 GB resident and 4.9 examples/s on one core, killed by the OOM
      # killer while checkpointing (2026-12-04). The CPU budget uses 1,000.
      config.inverter.hidden = 1000
  return config
