r"""GradInversion against Inverting Gradients on CIFAR-10, ResNet-18 with
BatchNorm running statistics.

python -m launch.benchmark \
    --config=configs/benchmarks/gradinversion_resnet18.py:cpu=True \
    --workdir=/tmp/gitjax/bench_gradinversion

The victim: a CIFAR ResNet-18 (PyTorch init) whose BatchNorm running
statistics are those of 512 CIFAR-10 training images
(``config.calibration``), as a server that trained on its data holds; the
attacked: distinct-label test images, FedSGD, labels inferred. Cases B = 1
and B = 4, ``bench.num_batches`` batches each; both attacks on the same
leaks with the same iterations and restarts: GradInversion
(``configs/gradinversion_resnet18.py``'s attack: squared L2 x 0.5e-4, BN
prior 0.1, TV 1e-4, L2 1e-6, group consistency 0.01 over the restarts,
Adam 0.1 with cosine decay, warmup and Langevin noise) and IG (cosine,
signed Adam, TV 1e-4). GPU: width 64, 4,000 iterations, 4 batches; CPU:
width 16, 500 iterations, 2 batches.

Measured 2026-12-03 (``:cpu=True``, ``data_dir=/work/shared/data/cifar10``,
2-core CPU shared with the test tier, 1,930 s wall): mean PSNR
GradInversion 10.43 / IG 9.73 dB at B = 1 and 10.08 / 8.99 dB at B = 4,
LPIPS 0.205 / 0.250 and 0.189 / 0.294; at 500 iterations neither
reconstructs the images (BUILD_NOTES.md).

``bench.cases`` set ``data.batch_size`` per case (as the other sweeps);
batch j of a case with B images is sampled with seed 100 j + B, its leak
key is ``seed + 1 + j``, every attack's key ``seed + 11 + j``.
"""

from configs import common
from configs import gradinversion_resnet18 as attack_config


def get_config(arg=None):
  arg = common.parse_arg(arg, cpu=False, smoke=False,
                         data_dir="../shared/data/cifar10")
  config = common.base_config()
  config.benchmark = "gradinversion_resnet18"
  config.data.update(name="cifar10", data_dir=arg.data_dir, image_size=32,
                     mean=(0.4914, 0.4822, 0.4465),
                     std=(0.2470, 0.2435, 0.2616), distinct_labels=True)
  del config.data["batch_size"]  # Set per case (bench.cases).
  config.victim = dict(name="resnet18", width=64, init="torch")
  config.calibration = dict(num_images=512, split="train")
  config.attack = attack_config.attack_block(iterations=4000, restarts=4)
  config.baselines = dict(ig=dict(name="ig", iterations=4000, restarts=4,
                                  tv=1e-4, progress=False))
  config.eval.lpips_net = "alex"
  config.bench = dict(num_batches=4, cases=dict(
      b1=dict(data=dict(batch_size=1)), b4=dict(data=dict(batch_size=4))))
  if arg.cpu:
    config.victim.width = 16
    config.attack.iterations = config.baselines.ig.iterations = 500
    config.bench.num_batches = 2
  if arg.smoke:
    config.data.update(name="embedded", data_dir=None, image_size=12)
    config.calibration.num_images = 8
    config.victim.width = 2
    config.attack.update(iterations=4, group_every=2, restarts=2)
    config.baselines.ig.update(iterations=4, restarts=2)
    config.bench.num_batches = 1
    config.bench.cases = dict(b2=dict(data=dict(batch_size=2)))
    config.eval.lpips_net = None
  return config
