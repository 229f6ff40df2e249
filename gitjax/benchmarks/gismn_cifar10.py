"""GI-SMN against Inverting Gradients on CIFAR-10, random-init ResNet-18.

Cases (``config.bench.cases``: a ``data.batch_size`` and a ``leak.defense``
each): batch sizes without a defense, and B = 1 under 90% pruning and under
Gaussian (DP-style) noise. Each case attacks ``bench.num_batches`` batches of
distinct-label test images (``experiments.make_cases``, batch j sampled with
seed 100 j + B) with ``config.attack`` (GI-SMN, the trained style generator)
and each ``config.baselines`` block (IG with the same iteration budget), on
the same leaks, and scores with ``experiments.evaluate`` on [0, 1] after
Hungarian matching (PSNR, SSIM, LPIPS).
"""

from gitjax.benchmarks import compare


def run(config, workdir):
  results = compare.sweep(config, workdir, titles={"gismn": "GI-SMN",
                                                   "ig": "IG"})
  results["published_gismn_best_psnr"] = 36.98
  return results
