r"""Inverting Gradients on IG's ConvNet (random init), CIFAR-10, B = 1 and 4.

python -m launch.benchmark --config=configs/benchmarks/ig_convnet_cifar10.py \
    --workdir=/tmp/gitjax/bench_ig_convnet

Full budget (GPU-sized): ConvNet width 64, 16 test images per batch size,
4,000 iterations of IG (cosine, signed Adam 0.1, step decay, box, TV 1e-4),
labels inferred (iDLG for B = 1, LLG-style counts for B = 4); target median
PSNR >= 28 dB at B = 1. ``:cpu=True`` is the 2-core CPU budget: width 32,
B = 1 only, 4 images, the full 4,000 iterations (about 0.12 s per iteration
on 2 idle cores). Measured 2026-11-21 (BUILD_NOTES.md): median PSNR 19.1 dB
over the 4 images (target 28 dB missed at width 32), label accuracy 1.0,
373 s per image on a shared 2-core CPU. Args: ``data_dir`` (holding ``cifar10/``),
``iterations``, ``width``, ``num_images``, ``batch_sizes`` (e.g. ``1-4``;
empty: the budget's), ``cpu``, ``smoke``.

Blocks as in an attack config (``configs/common.py``) but for
``data.batch_size``: ``bench.cases`` is the batch-size sweep (one
``data.batch_size`` per case, results under the case's name),
``bench.reference_psnr`` the noise references.
Images, victim init and attack keys as in the measured run (per batch size:
``num_images`` x B images sampled with ``seed``, attack key ``seed + 1000``).
"""

import os

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, data_dir="../shared/data", iterations=4000,
                         width=64, num_images=16, batch_sizes="",
                         cpu=False, smoke=False)
  config = common.base_config()
  config.benchmark = "ig_convnet_cifar10"
  config.data.update(name="cifar10", image_size=32,
                     data_dir=os.path.join(arg.data_dir, "cifar10"))
  # PyTorch's default init, as in the published runs.
  del config.data["batch_size"]  # Set per case (bench.cases).
  config.victim = dict(name="convnet", width=arg.width, init="torch")
  config.attack = dict(name="ig", iterations=arg.iterations, restarts=1,
                       tv=1e-4, chunk=100, progress=False)
  config.bench = dict(
      num_images=arg.num_images,
      images_per_program=0,  # 0: all images in one program.
      cases=dict(b1=dict(data=dict(batch_size=1)),
                 b4=dict(data=dict(batch_size=4))),
      reference_psnr=(30.0, 40.0))
  if arg.cpu:
    config.victim.width = 32
    config.bench.num_images = 4
    config.bench.cases = dict(b1=dict(data=dict(batch_size=1)))
  if arg.smoke:
    config.data.update(name="embedded", data_dir=None, image_size=12)
    config.victim.width = 2
    config.bench.num_images = 2
    config.bench.cases = dict(b1=dict(data=dict(batch_size=1)),
                              b2=dict(data=dict(batch_size=2)))
    config.attack.update(iterations=4, chunk=2)
  if arg.batch_sizes:
    config.bench.cases = {f"b{b}": dict(data=dict(batch_size=int(b)))
                          for b in arg.batch_sizes.split("-")}
  return config
