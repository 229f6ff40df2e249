"""Inverting Gradients on IG's ConvNet (random init), CIFAR-10, B = 1 and 4.

For each batch size: ``num_images`` FedSGD leaks of B CIFAR-10 test images,
labels inferred (iDLG for B = 1, LLG-style counts for B > 1), all leaks
attacked in one vmapped program (``images_per_program`` splits them), PSNR on
[0, 1] pixels after order matching.
"""

from gitjax import models
from gitjax.attacks import gradient_matching as gm
from gitjax.benchmarks import dlg_lenet_cifar10 as common


def run(config, workdir):
  del workdir
  results = {"width": config.width, "batch_sizes": list(config.batch_sizes)}
  for b in config.batch_sizes:
    cfg = config.copy_and_resolve_references()
    cfg.batch_size = b
    private = common.load_images(cfg)
    victim = models.make_victim(
        "convnet", input_shape=private.images.shape[1:],
        num_classes=private.num_classes, width=config.width,
        init=config.get("init", "torch"))
    results[f"b{b}"] = common.attack_images(cfg, victim, gm.IG_DEFAULTS,
                                            private)
  return results
