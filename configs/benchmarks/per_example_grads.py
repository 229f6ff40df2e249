r"""Per-example gradient throughput: vmap against a Python loop of jax.grad.

python -m launch.benchmark --config=configs/benchmarks/per_example_grads.py \
    --workdir=/tmp/gitjax/bench_peg

ConvNet (width 64) and ResNet-18 (width 64) at batch 64 on 32x32x3, random
inputs. Reports examples/s for vmapped per-example gradients (chunked and
not) and for a loop of jitted single-example jax.grad calls, plus peak memory
(device memory stats on GPU/TPU; process max RSS on CPU). Results in
BUILD_NOTES.md. ``:cpu=True`` shrinks the batch to 8 for a 2-core CPU.
"""

import ml_collections as mlc

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, smoke=False, cpu=False)
  config = mlc.ConfigDict()  # No attack-experiment blocks: none is used.
  config.benchmark = "per_example_grads"
  config.models = ("convnet", "resnet18")
  config.width = 64
  config.batch_size = 64
  config.chunk_size = 16
  config.image_size = 32
  config.repeats = 3
  config.loop_examples = 16  # The Python loop is timed on a prefix.
  if arg.cpu:  # A budget that finishes on a 2-core CPU.
    config.batch_size = 8
    config.chunk_size = 0  # Skip the chunked variant (lax.map is slow on CPU).
    config.repeats = 1
    config.loop_examples = 8
  if arg.smoke:
    config.models = ("lenet",)
    config.width = 4
    config.batch_size = 4
    config.chunk_size = 2
    config.image_size = 8
    config.repeats = 1
    config.loop_examples = 2
  return config
