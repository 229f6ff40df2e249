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
``iterations``, ``width``, ``num_images``, ``cpu``, ``smoke``.
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, data_dir="../shared/data", iterations=4000,
                         width=64, num_images=16, cpu=False, smoke=False)
  config = common.base_config()
  config.benchmark = "ig_convnet_cifar10"
  config.dataset = "cifar10"
  config.data_dir = arg.data_dir
  config.image_size = 32
  config.width = arg.width
  config.init = "torch"  # PyTorch's default init, as in the published runs.
  config.num_images = arg.num_images
  config.batch_size = 1  # Set per run from batch_sizes.
  config.batch_sizes = (1, 4)
  config.images_per_program = 0  # 0: all images in one program.
  config.attack = dict(name="ig", iterations=arg.iterations, restarts=1,
                       tv=1e-4, chunk=100, progress=False)
  if arg.cpu:
    config.width = 32
    config.num_images = 4
    config.batch_sizes = (1,)
  if arg.smoke:
    config.dataset = "embedded"
    config.image_size = 12
    config.width = 2
    config.num_images = 2
    config.batch_sizes = (1, 2)
    config.attack.update(iterations=4, chunk=2)
  return config
