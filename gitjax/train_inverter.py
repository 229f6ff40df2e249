"""Offline training of a gradient inverter (GIT or LTI) on public data.

Training pairs are made on the fly inside the jitted step: the step samples
public images from the dataset held on device (the sample is a pure function
of the data key and the step number), computes their per-example gradients on
the victim (``victim.per_example_grads``; for B > 1, the mean gradient of each
group of B), applies the simulated defense to each message, and fits the
inverter's output to the images with MSE (after optimal assignment for B > 1).

The step is data-parallel over a one-axis mesh of all devices
(``gitjax.parallel``): inverter parameters replicated, the examples sharded on
"data". The train state (inverter params, optimizer state, step, data key) is
checkpointed with Orbax; a run killed at any point and started again in the
same workdir resumes from its last checkpoint and ends with the same
parameters as an uninterrupted run. A workdir holds one run: starting it with
a different config is an error, and its checkpoints are never overwritten.

Workdir layout: ``config.json`` (the run's config), ``checkpoints/<step>/``,
``metrics.jsonl`` (one JSON object per logged step), ``log.txt``, and
``metrics.json`` (final evaluation) when the run ends. What rebuilds the
trained inverter (the ``Setup`` and the train state's layout) is in
``gitjax.inverter_setup``, its evaluation in ``gitjax.inverter_eval``, and
attacks load it with ``gitjax.loading.inverter``.

``python -m launch.train_inverter --config=configs/git_lenet.py --workdir=DIR``
"""

import functools
import logging
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax

from gitjax import checkpoint
from gitjax import data as data_lib
from gitjax import inverter_eval
from gitjax import inverter_setup
from gitjax import leak as leak_lib
from gitjax import loading
from gitjax import parallel
from gitjax import rundir
from gitjax import victim as victim_lib

METRICS_LOG = "metrics.jsonl"
# Config fields that may change when a run is resumed: they affect logging
# and bookkeeping only, never the parameters.
RESUMABLE_FIELDS = ("log_every", "eval_every", "checkpoint_every", "keep",
                    "num_devices")


# ---------------------------------------------------------------------------
# Data.


def sample_indices(rng, step, batch: int, num: int, order=None) -> jax.Array:
  """Indices of step ``step``'s examples: epochs of seeded permutations.

  Example ``step * batch + j`` is position ``(step * batch + j) % num`` of
  epoch ``(step * batch + j) // num``'s permutation, so the data order is a
  pure function of (rng, step) and every epoch sees each example once.
  ``order`` (``epoch_order``: an epoch and the permutations of it and the
  next) saves drawing them here, where a permutation of 50,000 costs a
  tenth of a GIT step on a CPU; the indices are the same either way (if it
  is not the batch's epoch, they are drawn here).
  """
  if batch > num:
    raise ValueError(f"batch of {batch} examples exceeds the {num} in the "
                     "training set")
  pos = step.astype(jnp.int32) * batch + jnp.arange(batch)
  epoch, within = pos // num, pos % num
  first = epoch[0]
  perm = lambda e: _permutation(rng, e, num)

  def drawn():
    here = perm(first)[within]
    # The next epoch's permutation only when the batch reaches it.
    return jax.lax.cond(
        epoch[-1] > first,
        lambda: jnp.where(epoch == first, here, perm(first + 1)[within]),
        lambda: here)

  if order is None:
    return drawn()
  e0, perms = order
  given = lambda: jnp.where(epoch == e0, perms[0][within], perms[1][within])
  return jax.lax.cond(first == e0, given, drawn)


def _permutation(rng, epoch, num: int) -> jax.Array:
  """Epoch ``epoch``'s order of the ``num`` examples (``sample_indices``)."""
  return jax.random.permutation(jax.random.fold_in(rng, epoch), num)


@functools.partial(jax.jit, static_argnums=2)
def epoch_order(rng, epoch, num: int):
  """(epoch, [2, num] permutations of epochs ``epoch`` and ``epoch + 1``):
  ``sample_indices``'s ``order``, drawn once an epoch (``EpochOrder``)."""
  e = jnp.asarray(epoch, jnp.int32)
  return e, jnp.stack([_permutation(rng, e + i, num) for i in (0, 1)])


class EpochOrder:
  """A training loop's ``order`` argument: ``order(step)`` for a Python
  step number, drawn anew when the step's first example starts an epoch.

  ``sharding`` places it (e.g. ``parallel.replicated(mesh)``)."""

  def __init__(self, rng_data, examples_per_step: int, num: int,
               sharding=None):
    self.rng = jax.random.wrap_key_data(rng_data)
    self.per_step, self.num, self.sharding = examples_per_step, num, sharding
    self.epoch, self.order = None, None

  def __call__(self, step: int):
    e = step * self.per_step // self.num
    if e != self.epoch:
      order = epoch_order(self.rng, e, self.num)
      if self.sharding is not None:
        order = jax.device_put(order, self.sharding)
      self.epoch, self.order = e, order
    return self.order


def load_dataset(cfg: dict) -> data_lib.Dataset:
  """Loads ``config.data``/``config.eval_data`` (optionally some classes)."""
  ds = data_lib.load(
      cfg["name"], data_dir=cfg.get("data_dir"), split=cfg.get("split"),
      image_size=cfg.get("image_size"), channels=cfg.get("channels"),
      limit=cfg.get("limit"), **dict(cfg.get("options") or {}))
  if cfg.get("classes") is not None:
    ds = data_lib.filter_classes(ds, list(cfg["classes"]))
  if len(ds.labels) == 0:
    raise ValueError(f"dataset {cfg['name']!r} has no examples for "
                     f"classes {cfg.get('classes')}")
  return ds


def _victim_variables(setup: inverter_setup.Setup, variables, key):
  """The victim's variables for one step (``leak.victim_params``).

  ``variables`` is ``inverter_setup.victim_pool``'s: with "trajectory" the
  stacked snapshots, of which the step draws one.
  """
  mode = setup.leak.victim_params
  if mode == "trajectory":
    n = jax.tree.leaves(variables)[0].shape[0]
    i = jax.random.randint(key, (), 0, n)
    return jax.tree.map(lambda a: a[i], variables)
  if mode == "fresh":
    return victim_lib.init_variables(setup.victim, key)
  if mode == "perturbed":
    return leak_lib.discrepant_variables(
        setup.victim, variables, None, None, key,
        dict(kind="perturbed", scale=setup.leak.perturb_scale))
  return variables


def make_train_step(setup: inverter_setup.Setup, global_batch: int,
                    mesh=None):
  """The jitted step ``(state, images, labels, variables, order=None) ->
  (state, metrics)``.

  ``global_batch`` is N, messages per step (N * B images); ``images`` [M, H,
  W, C] in [0, 1] and ``labels`` [M] are the whole training set on device;
  ``variables`` are the victim's (``inverter_setup.victim_pool``), an
  argument rather than constants baked into the compiled program;
  ``order`` (``EpochOrder``) the data order's permutations, drawn once an
  epoch instead of every step (the same steps with or without).
  """
  leak = setup.leak
  inv = setup.inverter

  def loss_fn(params, msgs, labels, targets):
    x_hat = inv.apply(params, msgs, labels)
    return jnp.mean(inverter_eval.matched_sq_errors(x_hat, targets))

  def step_fn(state, images, labels, victim_variables, order=None):
    rng = jax.random.wrap_key_data(state.rng)
    key = jax.random.fold_in(jax.random.fold_in(rng, 1), state.step)
    k_vic, k_def = jax.random.split(key)
    idx = sample_indices(rng, state.step, global_batch * leak.batch_size,
                         images.shape[0], order)
    x01, ys = images[idx], labels[idx]
    variables = _victim_variables(setup, victim_variables, k_vic)
    msgs, lab = inverter_setup.make_messages(
        setup.victim, variables, inverter_setup.standardize(x01, leak), ys,
        k_def, leak, setup.num_classes, mesh)
    targets = parallel.shard_batch(
        x01.reshape((global_batch, leak.batch_size) + x01.shape[1:]), mesh)
    loss, grads = jax.value_and_grad(loss_fn)(state.params, msgs, lab,
                                              targets)
    updates, opt_state = setup.tx.update(grads, state.opt_state,
                                         state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(loss=loss, grad_norm=optax.tree.norm(grads))
    state = inverter_setup.TrainState(params, opt_state, state.step + 1,
                                      state.rng)
    return state, metrics

  donate = (0,) if jax.default_backend() != "cpu" else ()
  if mesh is None:
    return jax.jit(step_fn, donate_argnums=donate)
  repl = parallel.replicated(mesh)
  return jax.jit(step_fn, donate_argnums=donate,
                 out_shardings=(repl, repl))


# ---------------------------------------------------------------------------
# The run.


def read_metrics(workdir) -> list[dict]:
  """The records of ``<workdir>/metrics.jsonl``, in order."""
  return rundir.read_jsonl(os.path.join(os.fspath(workdir), METRICS_LOG))


def prepare_data(config, setup_fn=inverter_setup.make_setup):
  """Loads the training and evaluation sets; builds the Setup."""
  train = load_dataset(inverter_setup.plain(config.data))
  ev_cfg = inverter_setup.plain(config.eval_data)
  ev = load_dataset(ev_cfg)
  if train.images.shape[1:] != ev.images.shape[1:]:
    raise ValueError(f"training images {train.images.shape[1:]} and "
                     f"evaluation images {ev.images.shape[1:]} differ")
  setup = setup_fn(config, train.images.shape[1:],
                   max(train.num_classes, ev.num_classes))
  b = setup.leak.batch_size
  count = int(ev_cfg.get("count", 64)) * b
  count = min(count, (len(ev.labels) // b) * b)
  if count == 0:
    raise ValueError(f"evaluation set has {len(ev.labels)} images, fewer "
                     f"than one batch of {b}")
  ev = data_lib.sample(ev, count, seed=ev_cfg.get("seed", 0))
  return setup, train, ev


def train_and_evaluate(config: mlc.ConfigDict, workdir: str, *,
                       stop_at: int | None = None,
                       resume: str = "latest") -> dict:
  """Trains the inverter of ``config`` in ``workdir`` (resuming if possible).

  Args:
    config: see ``configs/git_lenet.py``.
    workdir: run directory (``rundir.open_run``): an unfinished run of the
      same config resumes; a finished one is returned as stored, unchanged;
      a different config is refused before anything is written.
    stop_at: stop after this step without finishing, as if killed (for
      tests and time-boxed runs); the latest checkpoint policy still applies.
    resume: "latest", or "intact" to resume from the newest intact
      checkpoint when the latest is corrupt (``Checkpointer.restore_or``).

  Returns:
    Final metrics: step, train loss, eval MSE/PSNR, examples per second.
  """
  run = rundir.open_run(workdir, config, "train_inverter",
                        mutable=RESUMABLE_FIELDS,
                        log=jax.process_index() == 0)
  if run.finished is not None:
    return run.finished
  workdir = run.path
  source = inverter_setup.plain(config.train).get("init_from")
  warm = loading.inverter(source) if source else None  # Fails fast.
  setup, train, ev = prepare_data(config)
  t_cfg = inverter_setup.plain(config.train)
  num_steps = int(t_cfg["num_steps"])
  n = int(t_cfg["batch_size"])
  mesh = parallel.data_mesh(config.get("num_devices"))
  parallel.check_divisible(n, mesh)
  logging.info("Inverter %s for %s on %s (%d images, %d classes); %d "
               "devices; B=%d; %d steps of %d messages",
               config.inverter.name, setup.victim.name, train.name,
               len(train.labels), setup.num_classes, mesh.devices.size,
               setup.leak.batch_size, num_steps, n)

  init = warm_start(inverter_setup.init_state(setup, config.seed), warm,
                    source)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  ckpt = checkpoint.Checkpointer(ckpt_dir, every=config.checkpoint_every,
                                 keep=config.get("keep", 2))
  try:
    with jax.set_mesh(mesh):
      init = parallel.put_replicated(mesh, init)
      restored, start = ckpt.restore_or(init._asdict(), resume=resume)
      state = inverter_setup.TrainState(**restored)
      if jax.process_index() == 0:
        run.write_json(inverter_setup.RUN_INFO, dict(
            image_shape=setup.image_shape, num_classes=setup.num_classes,
            train_images=len(train.labels), train_data=train.name))
        run.trim_jsonl(METRICS_LOG, start)
      if start:
        logging.info("Resumed from step %d of %s", start, ckpt_dir)
      pool = inverter_setup.victim_pool(setup, train.images, train.labels)
      data = parallel.put_replicated(
          mesh, (train.images, train.labels.astype(np.int32), pool))
      step_fn = make_train_step(setup, n, mesh)
      eval_chunks = inverter_eval.make_eval_fn(setup)
      ev_msgs, ev_labels = inverter_eval.eval_messages(
          setup, ev.images, ev.labels, config.seed + 7)
      b = setup.leak.batch_size
      ev_x = jnp.asarray(ev.images).reshape(
          (-1, b) + tuple(ev.images.shape[1:]))
      order = EpochOrder(state.rng, n * b, len(train.labels),
                         parallel.replicated(mesh))
      result = _loop(config, setup, state, start, num_steps, stop_at,
                     step_fn, data, ckpt, run,
                     lambda p: eval_chunks(p, ev_msgs, ev_labels, ev_x)[0], n,
                     order)
  finally:
    ckpt.close()
  if result.get("finished") and jax.process_index() == 0:
    run.finish(result)
  return result


def warm_start(state, trained, source: str = ""):
  """``state`` with the parameters of ``trained`` (``train.init_from``).

  Fine-tuning an inverter (e.g. the clean one, for a noise defense): the
  parameters are copied, the optimizer and the data stream start afresh; a
  checkpoint of this run, once written, takes precedence. The source must
  have this config's inverter architecture.
  """
  if trained is None:
    return state
  new, like = trained.params, state.params
  if (jax.tree.structure(new) != jax.tree.structure(like) or any(
      a.shape != b.shape for a, b in zip(jax.tree.leaves(new),
                                         jax.tree.leaves(like)))):
    raise ValueError(f"train.init_from {source!r}: its inverter's "
                     "parameters do not match this config's inverter")
  return state._replace(params=jax.tree.map(
      lambda a, b: jnp.asarray(a, b.dtype), new, like))


def _check_finite(metrics, step) -> dict:
  metrics = {k: float(v) for k, v in metrics.items()}
  if not all(math.isfinite(v) for v in metrics.values()):
    raise FloatingPointError(
        f"non-finite training metrics at step {step}: {metrics}; the last "
        "checkpoint before it is kept (lower train.lr or raise "
        "train.grad_clip)")
  return metrics


def _loop(config, setup, state, start, num_steps, stop_at, step_fn, data,
          ckpt, run, eval_fn, n, order):
  """The training loop proper (logging, evaluation, checkpoints)."""
  images_per_step = n * setup.leak.batch_size
  log_every = int(config.get("log_every", 50))
  eval_every = int(config.get("eval_every", 0) or 0)
  t_start, t_first, steps_timed, t_aside = time.time(), None, 0, 0.0
  last = {"step": start}
  end = num_steps if stop_at is None else min(stop_at, num_steps)
  every = int(config.checkpoint_every)
  for step in range(start, end):
    state, metrics = step_fn(state, *data, order(step))
    done = step + 1
    if done % every == 0 or done == num_steps:
      _check_finite(metrics, done)  # Never checkpoint a diverged state.
    ckpt.save(done, state._asdict(), force=done == num_steps)
    if t_first is None:
      jax.block_until_ready(state.params)
      t_first, steps_timed = time.time(), 0  # Exclude compilation.
    else:
      steps_timed += 1
    is_eval = eval_every and (done % eval_every == 0 or done == num_steps)
    if done % log_every == 0 or done == end or is_eval:
      metrics = _check_finite(metrics, done)
      elapsed = time.time() - t_first - t_aside
      rate = steps_timed / elapsed if steps_timed else float("nan")
      record = dict(step=done, **metrics,
                    examples_per_s=rate * images_per_step,
                    eta_s=(num_steps - done) / rate if steps_timed else None,
                    wall_s=time.time() - t_start)
      if is_eval:
        t_eval = time.time()
        errs = eval_fn(state.params)
        record["eval_mse"] = float(jnp.mean(errs))
        record["eval_psnr"] = inverter_eval.psnr_from_mse(errs)
        t_aside += time.time() - t_eval  # Not training time.
      if jax.process_index() == 0:
        run.append_jsonl(METRICS_LOG, record)
      logging.info(
          "step %d/%d loss %.5f%s | %.1f examples/s, ETA %s s", done,
          num_steps, metrics["loss"],
          f" eval_mse {record['eval_mse']:.5f}" if is_eval else "",
          record["examples_per_s"], "?" if record["eta_s"] is None
          else f"{record['eta_s']:.0f}")
      last = record
  ckpt.wait()
  out = dict(last)
  out["finished"] = int(state.step) == num_steps
  out["step"] = int(state.step)
  if out["finished"] and "eval_mse" not in out:
    errs = eval_fn(state.params)
    out["eval_mse"] = float(jnp.mean(errs))
    out["eval_psnr"] = inverter_eval.psnr_from_mse(errs)
  return out
