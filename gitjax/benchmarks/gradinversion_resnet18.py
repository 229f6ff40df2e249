"""GradInversion against Inverting Gradients on ResNet-18 leaks.

The victim's BatchNorm running statistics come from public images
(``config.calibration``), the setting GradInversion's BN prior is made for;
each case of ``config.bench.cases`` (a batch size) attacks
``bench.num_batches`` batches with ``config.attack`` (GradInversion) and
each ``config.baselines`` block (IG) on the same leaks
(``compare.sweep``), scored on [0, 1] after Hungarian matching.
"""

from gitjax.benchmarks import compare


def run(config, workdir):
  return compare.sweep(config, workdir, titles={
      "gradinversion": "GradInversion", "ig": "IG"})
