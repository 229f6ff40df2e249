r"""DLG on DLG's LeNet (random init), 16 CIFAR-10 test images, B = 1.

python -m launch.benchmark --config=configs/benchmarks/dlg_lenet_cifar10.py \
    --workdir=/tmp/gitjax/bench_dlg

Squared-L2 gradient matching, L-BFGS (history 100, zoom line search), labels
inferred from each gradient (iDLG), 1 restart; all 16 images run as one
vmapped program. Target: median PSNR >= 40 dB on [0, 1] pixels.

Measured 2026-11-21 (``:restarts=1``, now the default), 2-core CPU shared
with other jobs (load average 9-16): median PSNR 50.9 dB (mean 52.1, 15 of
16 images >= 40 dB, lowest 39.5), label accuracy 1.0; 2,442 s for the 16
images together (153 s per image, 293 s of it the first chunk with
compilation), 2,504 s wall. On an idle machine a single image runs at about
90 L-BFGS iterations/s (configs/dlg_lenet.py). Args: ``data_dir`` (holding ``cifar10/``),
``iterations``, ``restarts``, ``num_images``, ``labels`` ("auto": iDLG;
"joint": DLG's soft labels), ``smoke`` (embedded photos, 8x8, 4 iterations).
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, data_dir="../shared/data", iterations=3000,
                         restarts=1, num_images=16, labels="auto",
                         smoke=False)
  config = common.base_config()
  config.benchmark = "dlg_lenet_cifar10"
  config.dataset = "cifar10"
  config.data_dir = arg.data_dir
  config.image_size = 32
  config.num_images = arg.num_images
  config.batch_size = 1
  config.images_per_program = 0  # 0: all images in one program.
  config.attack = dict(name="dlg", iterations=arg.iterations,
                       restarts=arg.restarts, labels=arg.labels, chunk=500,
                       progress=False)
  if arg.smoke:
    config.dataset = "embedded"
    config.image_size = 8
    config.num_images = 2
    config.attack.update(iterations=4, chunk=2)
  return config
