r"""DLG (iDLG labels) on DLG's LeNet at random init, one embedded photo.

python -m launch.attack --config=configs/dlg_lenet.py \
    --workdir=/tmp/gitjax/dlg_lenet

Squared-L2 gradient matching with L-BFGS (history 100, zoom line search) on
DLG's sigmoid LeNet (uniform(-0.5, 0.5) init), FedSGD, B = 1; the label is
read off the gradient (iDLG).

Measured 2026-11-21 on the embedded photo (index 0, the astronaut), 2-core
CPU shared with other jobs (load average 5-9): PSNR 46.1 dB, SSIM 0.9998,
label accuracy 1.0; 40 s wall for the whole command (setup 10 s, attack
26 s of which 8 s compiling), 3,000 L-BFGS iterations. Under heavier load
(average ~9) the same run took 111 s. The run directory gets grid.png
(ground truth over reconstruction), metrics.json, config.json and log.txt.

Args: ``iterations``, ``restarts``, ``labels`` ("auto": iDLG; "joint": DLG's
soft-label optimization), ``batch``, ``data_dir`` (CIFAR-10 zips instead of
the embedded photos), ``index`` (which image), ``smoke`` (8x8 images, a few
iterations: for tests).
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, iterations=3000, restarts=1, labels="auto",
                         batch=1, data_dir="", index=0, smoke=False)
  config = common.base_config()
  config.data.batch_size = arg.batch
  config.data.index = tuple(range(arg.index, arg.index + arg.batch))
  if arg.data_dir:
    config.data.name = "cifar10"
    config.data.data_dir = arg.data_dir
  config.victim = dict(name="lenet")
  config.attack = dict(name="dlg", iterations=arg.iterations,
                       restarts=arg.restarts, labels=arg.labels, chunk=250)
  if arg.smoke:
    config.data.image_size = 8
    config.attack.update(iterations=4, chunk=2)
  return config
