"""Ships a finished training run's weights in the package (gitjax/weights/).

python -m launch.export_weights --workdir=/tmp/gitjax/git_lenet_cpu \
    --name=git_lenet_cifar10 --kind=inverter \
    --command="python -m launch.train_inverter --config=... --workdir=..."
Writes gitjax/weights/<name>.npz and its manifest entry (config, run_info,
step, metrics, sha256); then ``inverter_dir=<name>`` (or ``generator_dir``)
loads it. An existing name is refused unless --replace. Bad input is one
line on stderr and exit status 2.

A Gaussian image prior (``gitjax.gaussian_prior``, for the ``git_posterior``
attack) is fit to a dataset's training split instead of read from a run:
python -m launch.export_weights --kind=gaussian_prior \
    --name=gaussian_cifar10 --dataset=cifar10 \
    --data_dir=../shared/data/cifar10 --rank=512 --dtype=float16
"""

import os
import sys

from absl import app
from absl import flags
import numpy as np

from gitjax import checkpoint
from gitjax import data as data_lib
from gitjax import gaussian_prior
from gitjax import inverter_setup
from gitjax import loading
from gitjax import pretrained
from gitjax import report
from gitjax import rundir
from gitjax.errors import InputError
from launch import common

# The final file of each kind of run (its metrics), see gitjax.rundir.
_FINAL = {"inverter": rundir.FINAL_FILES["train_inverter"],
          "generator": rundir.FINAL_FILES["train_prior"]}


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_string("workdir", None, "The training run's workdir.",
                      flag_values=fv)
  flags.DEFINE_string("name", None, "Name of the shipped weights.",
                      flag_values=fv)
  flags.DEFINE_enum("kind", "inverter", pretrained.KINDS, "What it is.",
                    flag_values=fv)
  flags.DEFINE_string("data", None, "What it was trained on (default: "
                      "run_info's train_data for inverters).", flag_values=fv)
  flags.DEFINE_string("command", None, "The training command.",
                      flag_values=fv)
  flags.DEFINE_enum("dtype", "float32", pretrained.DTYPES,
                    "Stored float type.", flag_values=fv)
  flags.DEFINE_bool("replace", False, "Overwrite an existing name.",
                    flag_values=fv)
  flags.DEFINE_string("dataset", None, "gaussian_prior: the dataset whose "
                      "training split it is fit to.", flag_values=fv)
  flags.DEFINE_string("data_dir", None, "gaussian_prior: where it is.",
                      flag_values=fv)
  flags.DEFINE_integer("rank", 128, "gaussian_prior: principal directions "
                       "kept.", flag_values=fv)


def _read(workdir: str, name: str):
  path = os.path.join(workdir, name)
  return report.read_json(workdir, name) if os.path.exists(path) else None


def export_run(workdir: str, name: str, kind: str, *, command: str,
               data: str | None = None, dtype: str = "float32",
               replace: bool = False, directory: str | None = None) -> dict:
  """Exports the latest checkpoint of ``workdir``; returns the entry."""
  if not workdir:
    raise InputError("--workdir is required")
  if not command:
    raise InputError("--command is required: the training command that "
                     "produced the run (recorded in the manifest)")
  workdir = os.path.abspath(workdir)
  if kind == "inverter":
    trained = loading.inverter(workdir)
    run_info = _read(workdir, inverter_setup.RUN_INFO)
    tree, config, step = trained.params, trained.config, trained.step
    data = data or (run_info or {}).get("train_data")
  elif kind == "generator":
    _, tree = loading.generator(workdir)
    config, run_info = _read(workdir, loading.CONFIG), None
    ckpt = checkpoint.Checkpointer(
        os.path.join(workdir, loading.CHECKPOINTS), every=10**9)
    try:
      step = ckpt.latest_step()
    finally:
      ckpt.close()
  else:
    raise InputError(f"unknown kind {kind!r}; known: {pretrained.KINDS}")
  if not data:
    raise InputError("--data is required: what the run was trained on")
  return pretrained.export(
      kind, name, tree, config=config, run_info=run_info, step=step,
      data=data, metrics=_read(workdir, _FINAL[kind]) or {},
      command=command, dtype=dtype, directory=directory, replace=replace)


def export_gaussian(dataset: str, data_dir: str, name: str, rank: int, *,
                    dtype: str = "float16", replace: bool = False,
                    directory: str | None = None, command: str = "") -> dict:
  """Fits ``gaussian_prior`` to a dataset's training split and ships it."""
  if not dataset or not data_dir:
    raise InputError("--kind=gaussian_prior needs --dataset and --data_dir")
  ds = data_lib.load(dataset, data_dir=data_dir, split="train")
  images = np.asarray(ds.images, np.float32)  # [0, 1].
  return gaussian_prior.export(
      name, images, rank, data=f"{dataset} train ({len(images)} images)",
      command=command or " ".join(["python -m launch.export_weights"]
                                  + sys.argv[1:]),
      dtype=dtype, replace=replace, directory=directory)


def _fail(message: str) -> None:
  print(f"launch.export_weights: error: {' '.join(message.split())}",
        file=sys.stderr)
  sys.exit(2)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  try:
    if not f.name:
      raise InputError("--name is required")
    if f.kind == gaussian_prior.KIND:
      new = export_gaussian(f.dataset, f.data_dir, f.name, f.rank,
                            dtype=f.dtype, replace=f.replace)
    else:
      new = export_run(f.workdir, f.name, f.kind, command=f.command,
                       data=f.data, dtype=f.dtype, replace=f.replace)
  except common.ONE_LINE_ERRORS as e:
    _fail(str(e) or type(e).__name__)
  print(f"exported {f.name} (step {new['step']}) to "
        f"{pretrained.WEIGHTS_DIR}: {new['files']}")


def _parse(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e))


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=_parse)
