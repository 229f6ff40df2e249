"""Training throughput: one GIT inverter step and one WGAN-GP prior step.

Two step kinds (``config.kinds``), each built as its trainer builds it:

* "git": ``train_inverter.make_train_step`` for ``config.git`` (a
  ``configs/git_lenet.py`` budget: LeNet victim, B = 1 image per leaked
  message, N messages per step), data-parallel over all devices as in
  training, on ``config.git.images`` uniform random images held on the
  device. One step samples N images, takes each one's victim gradient (the
  leaked message), runs the GIT inverter on the N messages, and updates it
  (MSE, clipped AdamW with warmup and cosine decay). Examples: messages
  (= images at B = 1), N per step.
* "wgan_gp": ``train_prior.train_step`` for ``config.prior`` (a
  ``configs/prior_dcgan_celeba.py`` budget): ``n_critic`` critic updates
  with a gradient penalty by double backprop, then one generator update
  (BatchNorm in train mode), on a fixed set of uniform "real" batches.
  Examples: real images, batch * n_critic per step.

Per kind: ``ms_per_step`` (the median over ``config.rounds`` rounds of
``config.steps_per_round`` steps), ``examples_per_s`` at that median, the
FLOPs of one step from XLA's cost analysis of the compiled step (for GIT
with XLA's convolutions in the victim, as ``ig_speed`` counts: the im2col
form also counts products with its zero padding) and their rate as a
fraction of a float32 matmul's FLOP/s measured in the same run.

With PyTorch (``config.torch``: "auto", "on", "off"; ``torch_reference``)
each round also runs the same steps in torch, right after gitjax's
(``torch_git_reference``, ``torch_train_reference``: the models rebuilt
with gitjax's initial parameters, counts checked), after checking that both
sides compute the same losses on the same inputs (gitjax's images, z and
eps handed to torch): for GIT the MSE and the gradient norm of two steps
(both optimizers' schedules started at the end of warmup, so that the
first update moves the parameters), for WGAN-GP the critic loss,
Wasserstein estimate and penalty of the last critic update and the
generator loss, of two steps. Rows then gain ``torch_ms_per_step``,
``torch_examples_per_s``, ``gitjax_over_torch`` (the median of per-round
ratios), ``torch_fraction_of_matmul`` (the same XLA FLOP count over the
same JAX matmul rate) and ``torch_check`` (the absolute differences); a
kind the torch port does not cover gets ``torch_skipped`` (why) instead.
"""

import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gitjax import inverter_setup
from gitjax import models
from gitjax import parallel
from gitjax import prior_setup
from gitjax import train_inverter
from gitjax import train_prior
from gitjax.benchmarks import ig_speed
from gitjax.benchmarks import torch_git_reference
from gitjax.benchmarks import torch_runtime
from gitjax.benchmarks import torch_train_reference as ttr
from gitjax.errors import InputError

KINDS = ("git", "wgan_gp")
# The checks' |gitjax - torch| <= ATOL + RTOL * |gitjax| (float32, different
# kernels). Measured on CPU on 2026-12-03 at the cpu budget: GIT within 1e-5
# relative (the gradient norm after an update), WGAN-GP within 2e-7; GPUs
# may convolve in TF32, hence the margin.
RTOL, ATOL = 1e-3, 1e-6


def _sync(dev: str) -> None:
  if dev == "cuda":
    import torch  # pylint: disable=g-import-not-at-top
    torch.cuda.synchronize()


class Cell:
  """One step kind ready to time: gitjax's ``run(k)`` and torch's (or
  None) run k steps and wait for them."""

  def __init__(self, examples: str, per_step: int, flops: float):
    self.examples, self.per_step, self.flops = examples, per_step, flops
    self.ours = self.theirs = None
    self.compile_s, self.check, self.skipped = np.nan, None, None


# ----------------------------------------------------------------- GIT ----


def git_setup(g):
  """(Setup, image shape) of the ``config.git`` block."""
  shape = (g.data.image_size, g.data.image_size, g.data.channels)
  return inverter_setup.make_setup(g, shape, g.num_classes), shape


def at_warmup_end(opt_state, warmup: int):
  """``opt_state`` with its schedule's count at ``warmup`` (peak lr)."""
  is_sched = lambda s: isinstance(s, optax.ScaleByScheduleState)
  return jax.tree.map(
      lambda s: s._replace(count=jnp.full_like(s.count, warmup))
      if is_sched(s) else s, opt_state, is_leaf=is_sched)


def _git_check(setup, step_fn, state, data, torch_step, n) -> dict:
  """Two steps each side from the end of warmup (module docstring);
  ``state`` is gitjax's initial one, which torch's was built from."""
  _, warmup = torch_git_reference.schedule(
      inverter_setup.plain(setup.config.train))
  state = state._replace(opt_state=at_warmup_end(state.opt_state, warmup))
  torch_step.t = warmup
  rng = jax.random.wrap_key_data(state.rng)
  # Before any step: a step may donate the state, rng's buffer with it.
  idxs = [train_inverter.sample_indices(rng, jnp.asarray(t), n,
                                        data[0].shape[0]) for t in (0, 1)]
  # ``data`` ends with the order of epoch 0: the steps are steps 0 and 1.
  ours, ref = {}, {}
  for idx, tag in zip(idxs, ("", "_after_update")):
    state, m = step_fn(state, *data)
    loss, norm = torch_step.step(np.asarray(idx))
    ours.update({f"loss{tag}": m["loss"], f"grad_norm{tag}": m["grad_norm"]})
    ref.update({f"loss{tag}": loss, f"grad_norm{tag}": norm})
  return ttr.compare("git", ours, ref, RTOL, ATOL)


def git_cell(config, with_torch: bool, dev: str) -> Cell:
  """The "git" kind: gitjax's compiled step, its FLOPs, torch's twin."""
  g = config.git
  setup, shape = git_setup(g)
  n = int(g.train.batch_size)
  mesh = parallel.data_mesh()
  parallel.check_divisible(n, mesh)
  m = int(g.images)
  rng = np.random.default_rng(1)  # numpy: eager jax.random compiles.
  images = rng.uniform(size=(m,) + shape).astype(np.float32)
  labels = rng.integers(0, g.num_classes, m).astype(np.int32)
  init = inverter_setup.init_state(setup, g.seed)
  kw = inverter_setup.plain(g.victim)
  name = kw.pop("name")
  flop_setup = None  # The timed program, when its convolutions are XLA's.
  if models.common.resolve_conv(kw.get("conv", "auto")) != "xla":
    flop_setup = setup._replace(victim=models.make_victim(
        name, input_shape=shape, num_classes=g.num_classes,
        **{**kw, "conv": "xla"}))
  b = setup.leak.batch_size
  cell = Cell(f"messages (B = {b} image{'s' * (b > 1)} each)", n, np.nan)
  torch_step = None
  if with_torch:
    cell.skipped = torch_git_reference.supported(setup)
    if cell.skipped:
      cell.skipped = f"no torch GIT step for {cell.skipped}"
      logging.warning("train_speed: git: %s", cell.skipped)
    else:
      torch_step = torch_git_reference.make_git_step(setup, init, images,
                                                     labels, n, dev)
  # Steps may donate their state (not on CPU): each use gets its own copy.
  fresh = lambda tree: jax.tree.map(jnp.copy, tree)
  with jax.set_mesh(mesh):
    data = parallel.put_replicated(mesh, (images, labels, setup.variables))
    state = {"s": parallel.put_replicated(mesh, init), "t": int(init.step)}
    # The data order as a training run draws it: once an epoch.
    order = train_inverter.EpochOrder(init.rng, n * b, m,
                                      parallel.replicated(mesh))
    step_fn = train_inverter.make_train_step(setup, n, mesh)
    t = time.perf_counter()
    compiled = step_fn.lower(state["s"], *data, order(0)).compile()
    cell.compile_s = time.perf_counter() - t
    if flop_setup is not None:
      compiled = train_inverter.make_train_step(flop_setup, n, mesh).lower(
          state["s"], *data, order(0)).compile()
    cell.flops = ig_speed.cost_flops(compiled)
    if torch_step is not None:
      with torch_runtime.full_precision():  # Not TF32 on a GPU.
        cell.check = _git_check(setup, step_fn, fresh(state["s"]),
                                (*data, order(0)), torch_step, n)
      cell.theirs = _torch_runner(torch_step.step, dev)

  def ours(k):
    with jax.set_mesh(mesh):
      for _ in range(k):
        state["s"], metrics = step_fn(state["s"], *data, order(state["t"]))
        state["t"] += 1
      jax.block_until_ready(metrics)

  cell.ours = ours
  return cell


# ------------------------------------------------------------- WGAN-GP ----


def wgan_cell(config, with_torch: bool, dev: str) -> Cell:
  """The "wgan_gp" kind: ``train_prior.train_step`` and torch's twin."""
  p = config.prior
  mdl = prior_setup.make_models(p)
  # Jitted: eagerly, every initializer op compiles on its own (~10 s).
  init = jax.jit(prior_setup.create_train_state, static_argnums=0)(
      mdl, jax.random.key(p.seed))
  b, n_critic = int(p.batch_size), int(p.n_critic)
  reals = jnp.asarray(np.random.default_rng(3).uniform(
      -1.0, 1.0, (n_critic, b) + tuple(mdl.gen.image_shape)), jnp.float32)
  key = jax.random.key(p.seed + 1)
  args = (p.gp_weight, p.drift)
  t = time.perf_counter()
  compiled = train_prior.train_step.lower(mdl, init, reals, key,
                                          *args).compile()
  cell = Cell("real images (batch x n_critic)", b * n_critic,
              ig_speed.cost_flops(compiled))
  cell.compile_s = time.perf_counter() - t
  if with_torch:  # Before gitjax's step, which donates its state.
    torch_step = ttr.make_wgan_step(mdl, init, p, dev)
    reals_t = ttr.nchw(reals, dev)
    ours, ref = {}, {}
    state = jax.tree.map(jnp.copy, init)
    with torch_runtime.full_precision():  # Not TF32 on a GPU.
      for i, tag in enumerate(("", "_after_update")):
        k = jax.random.fold_in(jax.random.key(p.seed + 2), i)
        state, m = train_prior.train_step(mdl, state, reals, k, *args)
        r = torch_step.step(reals_t, ttr.wgan_draws(
            k, n_critic, b, mdl.gen.latent_dim, dev))
        ours.update({f"{name}{tag}": v for name, v in m.items()})
        ref.update({f"{name}{tag}": v for name, v in r.items()})
    cell.check = ttr.compare("wgan_gp", ours, ref, RTOL, ATOL)
    cell.theirs = _torch_runner(lambda: torch_step.step(reals_t), dev)
  state = {"s": init, "i": 0}

  def ours_fn(k):
    for _ in range(k):
      state["i"] += 1
      state["s"], metrics = train_prior.train_step(
          mdl, state["s"], reals, jax.random.fold_in(key, state["i"]), *args)
    jax.block_until_ready(metrics)

  cell.ours = ours_fn
  return cell


# ---------------------------------------------------------------- both ----


def _torch_runner(step, dev: str):
  """``run(k)``: k torch steps, then a device sync; warmed up once."""

  def run(k):
    for _ in range(k):
      step()
    _sync(dev)

  run(1)
  return run


def time_cell(cell: Cell, rounds: int, k: int):
  """Seconds per step, per round: (gitjax [rounds], torch [rounds] or [])."""
  cell.ours(1)  # Warm-up (the check, if any, ran other inputs).
  ours, theirs = [], []
  for _ in range(rounds):
    t = time.perf_counter()
    cell.ours(k)
    ours.append((time.perf_counter() - t) / k)
    if cell.theirs is not None:
      t = time.perf_counter()
      cell.theirs(k)
      theirs.append((time.perf_counter() - t) / k)
  return ours, theirs


def row(cell: Cell, ours, theirs, ref: float) -> dict:
  """A kind's results from its per-round seconds and the matmul rate."""
  s = float(np.median(ours))
  out = dict(examples=cell.examples, examples_per_step=cell.per_step,
             ms_per_step=1e3 * s, examples_per_s=cell.per_step / s,
             gflop_per_step=cell.flops / 1e9, gflop_per_s=cell.flops / s / 1e9,
             fraction_of_matmul=cell.flops / s / ref,
             compile_s=cell.compile_s)
  if theirs:
    t = float(np.median(theirs))
    out.update(torch_ms_per_step=1e3 * t,
               torch_examples_per_s=cell.per_step / t,
               gitjax_over_torch=float(np.median(np.divide(ours, theirs))),
               torch_fraction_of_matmul=cell.flops / t / ref,
               torch_check=cell.check)
  if cell.skipped:
    out["torch_skipped"] = cell.skipped
  return out


CELLS = {"git": git_cell, "wgan_gp": wgan_cell}


def run(config, workdir):
  del workdir
  kinds = tuple(config.kinds)
  unknown = sorted(set(kinds) - set(KINDS))
  if unknown:
    raise InputError(f"config.kinds: unknown {unknown}; known: {KINDS}")
  with_torch = torch_runtime.resolve(config.torch)  # Before any timing.
  threads = config.torch_threads or os.cpu_count()
  ref = ig_speed.matmul_flops_per_s(config.matmul_size, config.repeats)
  results = {"xla_flags": os.environ.get("XLA_FLAGS", ""),
             "matmul_size": config.matmul_size,
             "matmul_gflop_per_s": ref / 1e9, "rounds": config.rounds,
             "steps_per_round": config.steps_per_round,
             "devices": jax.device_count(), "steps": {}}
  logging.info("float32 matmul %d: %.1f GFLOP/s", config.matmul_size,
               ref / 1e9)
  dev = "cpu"
  if with_torch:
    results.update(torch_runtime.setup(threads))
    dev = results["torch_device"]
    results["torch_matmul_gflop_per_s"] = torch_runtime.matmul_flops_per_s(
        config.matmul_size, config.repeats, dev) / 1e9
    logging.info("torch %s", {k: v for k, v in results.items()
                              if k.startswith("torch")})
  for kind in kinds:
    cell = CELLS[kind](config, with_torch, dev)
    ours, theirs = time_cell(cell, config.rounds, config.steps_per_round)
    results["steps"][kind] = row(cell, ours, theirs, ref)
    logging.info("%s: %s", kind, results["steps"][kind])
  return results
