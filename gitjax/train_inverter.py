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
``metrics.json`` (final evaluation) when the run ends.

``python -m launch.train_inverter --config=configs/git_lenet.py --workdir=DIR``
"""

import functools
import itertools
import logging
import math
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax
import scipy.optimize

from gitjax import checkpoint
from gitjax import data as data_lib
from gitjax import defenses
from gitjax import inverter as inverter_lib
from gitjax import leak as leak_lib
from gitjax import models
from gitjax import parallel
from gitjax import report
from gitjax import rundir
from gitjax import victim as victim_lib

METRICS_LOG = "metrics.jsonl"
RUN_INFO = "run_info.json"  # Image shape and classes, for loading.
VICTIM_PARAMS = ("fixed", "fresh", "perturbed")
# Config fields that may change when a run is resumed: they affect logging
# and bookkeeping only, never the parameters.
RESUMABLE_FIELDS = ("log_every", "eval_every", "checkpoint_every", "keep",
                    "num_devices")
# Defenses that need the client's inputs or change the protocol cannot be
# simulated per message here.
_UNSUPPORTED_DEFENSES = ("soteria", "dp_sgd")


class TrainState(NamedTuple):
  params: Any  # Inverter parameters.
  opt_state: Any
  step: jax.Array  # int32 [], steps done.
  rng: jax.Array  # uint32 [2], key data of the data stream.


class LeakSettings(NamedTuple):
  """How training messages are made (static inside the jitted step)."""
  batch_size: int  # B, images per message.
  defense: tuple  # Defense dicts as (name, ((key, value), ...)) tuples.
  labels_shared: bool
  victim_params: str  # "fixed", "fresh" or "perturbed".
  perturb_scale: float
  mean: tuple
  std: tuple
  chunk_size: int | None


class Setup(NamedTuple):
  """Everything a config determines, built once."""
  config: Any
  victim: victim_lib.Victim
  variables: Any  # The victim's fixed variables (victim_seed).
  inverter: Any  # Linen module.
  tx: optax.GradientTransformation
  leak: LeakSettings
  image_shape: tuple
  num_classes: int


# ---------------------------------------------------------------------------
# Messages and loss.


def _defense_spec(leak: LeakSettings) -> list[dict]:
  return [dict(name=n, **dict(kv)) for n, kv in leak.defense]


def sample_indices(rng, step, batch: int, num: int) -> jax.Array:
  """Indices of step ``step``'s examples: epochs of seeded permutations.

  Example ``step * batch + j`` is position ``(step * batch + j) % num`` of
  epoch ``(step * batch + j) // num``'s permutation, so the data order is a
  pure function of (rng, step) and every epoch sees each example once.
  """
  if batch > num:
    raise ValueError(f"batch of {batch} examples exceeds the {num} in the "
                     "training set")
  pos = step.astype(jnp.int32) * batch + jnp.arange(batch)
  epoch, within = pos // num, pos % num
  first = epoch[0]
  perm_a = jax.random.permutation(jax.random.fold_in(rng, first), num)
  perm_b = jax.random.permutation(jax.random.fold_in(rng, first + 1), num)
  return jnp.where(epoch == first, perm_a[within], perm_b[within])


def make_messages(victim, variables, xs, ys, key, leak: LeakSettings,
                  num_classes: int, mesh=None):
  """Defended gradient messages of N groups of B examples.

  Args:
    victim: the model; ``variables`` its variables.
    xs: [N*B, H, W, C] images in the victim's input space; ys: [N*B] labels.
    key: defense randomness.
    leak: settings.
    num_classes: for the one-hot labels.
    mesh: shard the examples over it (None: no constraint).

  Returns:
    (messages, labels): params-shaped tree with leaves [N, ...]; labels
    [N, B, num_classes] one-hot if shared, else None.
  """
  b = leak.batch_size
  n = xs.shape[0] // b
  xs = parallel.shard_batch(xs, mesh)
  params, state = victim_lib.split(variables)
  g = parallel.per_example_grads(victim, params, state, xs, ys,
                                 leak.chunk_size, mesh)
  if b > 1:  # The gradient of the mean loss of each group.
    g = jax.tree.map(lambda t: t.reshape((n, b) + t.shape[1:]).mean(1), g)
  spec = _defense_spec(leak)
  if spec:
    keys = jax.random.split(key, n)
    g = jax.vmap(lambda m, k: defenses.apply(spec, m, k))(g, keys)
  labels = None
  if leak.labels_shared:
    labels = jax.nn.one_hot(ys, num_classes).reshape(n, b, num_classes)
  return g, labels


def matched_sq_errors(x_hat: jax.Array, x: jax.Array) -> jax.Array:
  """Mean squared error per message after the best assignment of images.

  Args:
    x_hat, x: [N, B, ...].

  Returns:
    [N] MSE of each message, with the B reconstructions assigned to the B
    images one-to-one so that the summed MSE is least. B <= 6 takes the min
    over all B! permutations inside the graph; larger B calls scipy's
    ``linear_sum_assignment`` through ``jax.pure_callback`` (the assignment
    is a constant for differentiation; the MSE of the matched pairs is
    differentiable).
  """
  n, b = x.shape[:2]
  d = x_hat.reshape(n, b, 1, -1) - x.reshape(n, 1, b, -1)
  cost = jnp.mean(jnp.square(d), -1)  # [N, B_hat, B]
  if b == 1:
    return cost[:, 0, 0]
  if b <= 6:
    perms = jnp.asarray(list(itertools.permutations(range(b))))  # [P, B]
    per = cost[:, jnp.arange(b)[None, :], perms]  # [N, P, B]
    return jnp.min(per.mean(-1), axis=-1)

  def assign(c):
    c = np.asarray(c)
    return np.stack([scipy.optimize.linear_sum_assignment(ci)[1]
                     for ci in c]).astype(np.int32)

  cols = jax.pure_callback(assign, jax.ShapeDtypeStruct((n, b), jnp.int32),
                           jax.lax.stop_gradient(cost),
                           vmap_method="sequential")
  return jnp.take_along_axis(cost, cols[..., None], -1)[..., 0].mean(-1)


# ---------------------------------------------------------------------------
# Setup.


def _plain(x):
  return x.to_dict() if hasattr(x, "to_dict") else dict(x)


def leak_settings(config) -> LeakSettings:
  lk = _plain(config.leak)
  spec = defenses.as_list(lk.get("defense"))
  for s in spec:
    if s["name"] in _UNSUPPORTED_DEFENSES:
      raise ValueError(
          f"defense {s['name']!r} cannot be simulated in inverter training "
          f"(supported: {sorted(set(defenses.DEFENSES) - {'soteria'})})")
  vp = lk.get("victim_params", "fixed")
  if vp not in VICTIM_PARAMS:
    raise ValueError(f"unknown leak.victim_params {vp!r}; known: "
                     f"{VICTIM_PARAMS}")
  b = int(lk.get("batch_size", 1))
  if b < 1:
    raise ValueError(f"leak.batch_size must be >= 1; got {b}")
  d = _plain(config.data)
  return LeakSettings(
      batch_size=b,
      defense=tuple((s.pop("name"), tuple(sorted(s.items()))) for s in spec),
      labels_shared=bool(lk.get("labels_shared", False)),
      victim_params=vp, perturb_scale=float(lk.get("perturb_scale", 0.0)),
      mean=tuple(d.get("mean", (0.0,))), std=tuple(d.get("std", (1.0,))),
      chunk_size=config.train.get("chunk_size"))


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


def make_optimizer(train) -> optax.GradientTransformation:
  steps = int(train["num_steps"])
  warmup = min(int(train.get("warmup_steps", 0)), max(steps - 1, 0))
  lr = optax.warmup_cosine_decay_schedule(
      0.0, train["lr"], warmup, max(steps, warmup + 1),
      end_value=train["lr"] * train.get("final_lr_fraction", 0.01))
  return optax.chain(
      optax.clip_by_global_norm(train.get("grad_clip", 1.0)),
      optax.adamw(lr, weight_decay=train.get("weight_decay", 0.0)))


def make_setup(config, image_shape, num_classes) -> Setup:
  """Builds victim, inverter and optimizer for images of ``image_shape``."""
  kw = _plain(config.victim)
  name = kw.pop("name")
  victim = models.make_victim(name, input_shape=tuple(image_shape),
                              num_classes=num_classes, **kw)
  if victim.loss != "cross_entropy":
    raise ValueError(f"inverter training needs a classifier victim; "
                     f"{name!r} has a {victim.loss} loss")
  variables = victim_lib.init_variables(victim,
                                        jax.random.key(config.victim_seed))
  leak = leak_settings(config)
  inverter = inverter_lib.make_inverter(
      config.inverter, victim, image_shape, leak.batch_size)
  return Setup(config, victim, variables, inverter,
               make_optimizer(_plain(config.train)), leak,
               tuple(image_shape), num_classes)


def _victim_variables(setup: Setup, variables, key):
  """The victim's variables for one step: fixed, fresh or perturbed."""
  mode = setup.leak.victim_params
  if mode == "fresh":
    return victim_lib.init_variables(setup.victim, key)
  if mode == "perturbed":
    return leak_lib.discrepant_variables(
        setup.victim, variables, None, None, key,
        dict(kind="perturbed", scale=setup.leak.perturb_scale))
  return variables


def init_state(setup: Setup, seed: int) -> TrainState:
  """Fresh inverter parameters and optimizer; the data key of ``seed``."""
  k_data = jax.random.fold_in(jax.random.key(seed), 0)
  # Parameter init draws from an "rbg" key: XLA compiles the inverter's many
  # initializers several times faster than with threefry. The data stream
  # keeps threefry, whose values do not depend on the sharding.
  k_init = jax.random.key(seed, impl="rbg")
  n = 1
  xs = jnp.zeros((n * setup.leak.batch_size,) + setup.image_shape)
  ys = jnp.zeros((n * setup.leak.batch_size,), jnp.int32)
  msgs, labels = jax.eval_shape(
      lambda: make_messages(setup.victim, setup.variables, xs, ys,
                            jax.random.key(0), setup.leak, setup.num_classes))
  msgs = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), msgs)
  if labels is not None:
    labels = jnp.zeros(labels.shape, labels.dtype)
  params = jax.jit(setup.inverter.init)(k_init, msgs, labels)
  return TrainState(params=params, opt_state=setup.tx.init(params),
                    step=jnp.zeros((), jnp.int32),
                    rng=jax.random.key_data(k_data))


def _normalize(x01, leak: LeakSettings):
  return (x01 - jnp.asarray(leak.mean)) / jnp.asarray(leak.std)


def make_train_step(setup: Setup, global_batch: int, mesh=None):
  """The jitted step ``(state, images, labels, variables) -> (state,
  metrics)``.

  ``global_batch`` is N, messages per step (N * B images); ``images`` [M, H,
  W, C] in [0, 1] and ``labels`` [M] are the whole training set on device;
  ``variables`` are the victim's (``setup.variables``), an argument rather
  than constants baked into the compiled program.
  """
  leak = setup.leak
  inv = setup.inverter

  def loss_fn(params, msgs, labels, targets):
    x_hat = inv.apply(params, msgs, labels)
    return jnp.mean(matched_sq_errors(x_hat, targets))

  def step_fn(state, images, labels, victim_variables):
    rng = jax.random.wrap_key_data(state.rng)
    key = jax.random.fold_in(jax.random.fold_in(rng, 1), state.step)
    k_vic, k_def = jax.random.split(key)
    idx = sample_indices(rng, state.step, global_batch * leak.batch_size,
                         images.shape[0])
    x01, ys = images[idx], labels[idx]
    variables = _victim_variables(setup, victim_variables, k_vic)
    msgs, lab = make_messages(setup.victim, variables, _normalize(x01, leak),
                              ys, k_def, leak, setup.num_classes, mesh)
    targets = parallel.shard_batch(
        x01.reshape((global_batch, leak.batch_size) + x01.shape[1:]), mesh)
    loss, grads = jax.value_and_grad(loss_fn)(state.params, msgs, lab,
                                              targets)
    updates, opt_state = setup.tx.update(grads, state.opt_state,
                                         state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(loss=loss, grad_norm=optax.tree.norm(grads))
    return TrainState(params, opt_state, state.step + 1, state.rng), metrics

  donate = (0,) if jax.default_backend() != "cpu" else ()
  if mesh is None:
    return jax.jit(step_fn, donate_argnums=donate)
  repl = parallel.replicated(mesh)
  return jax.jit(step_fn, donate_argnums=donate,
                 out_shardings=(repl, repl))


@functools.lru_cache(maxsize=16)
def _eval_forward(inverter):
  """Jitted ``(params, msgs, labels, x) -> (mse [N], x_hat)``, cached."""

  @jax.jit
  def fwd(params, msgs, labels, x01):
    x_hat = inverter.apply(params, msgs, labels)
    return matched_sq_errors(x_hat, x01), x_hat

  return fwd


@functools.lru_cache(maxsize=16)
def _eval_messages_fn(victim, leak, num_classes):
  return jax.jit(functools.partial(make_messages, victim, leak=leak,
                                   num_classes=num_classes))


def make_eval_fn(setup: Setup, chunk: int = 64):
  """``(params, messages, labels, images) -> (mse [N], x_hat)`` in chunks."""
  fwd = _eval_forward(setup.inverter)

  def evaluate(params, msgs, labels, x01):
    n = x01.shape[0]
    errs, outs = [], []
    for i in range(0, n, chunk):
      sl = lambda t: t[i:i + chunk]  # pylint: disable=cell-var-from-loop
      e, o = fwd(params, jax.tree.map(sl, msgs),
                 None if labels is None else sl(labels), sl(x01))
      errs.append(e)
      outs.append(o)
    return jnp.concatenate(errs), jnp.concatenate(outs)

  return evaluate


def eval_messages(setup: Setup, x01, ys, seed: int, variables=None):
  """Defended messages of the evaluation images at the fixed victim.

  Args:
    setup: the run; x01 [N*B, H, W, C] in [0, 1]; ys [N*B].
    seed: defense randomness.
    variables: the victim's variables (default: the fixed ones).
  """
  variables = setup.variables if variables is None else variables
  fn = _eval_messages_fn(setup.victim, setup.leak, setup.num_classes)
  return fn(variables, _normalize(jnp.asarray(x01), setup.leak),
            jnp.asarray(ys), jax.random.key(seed))


def with_defense(setup: Setup, defense) -> Setup:
  """The setup with another simulated defense (a config or list of them)."""
  spec = defenses.as_list(defense)
  frozen = tuple((d.pop("name"), tuple(sorted(d.items()))) for d in spec)
  return setup._replace(leak=setup.leak._replace(defense=frozen))


def evaluate(trained, x01, ys, *, defense="training", variables=None,
             seed: int = 0, chunk: int = 64) -> dict:
  """Scores a trained inverter on leaks of the images ``x01``.

  Args:
    trained: ``load(workdir)``'s result.
    x01: [N*B, H, W, C] images in [0, 1]; ys: [N*B] labels.
    defense: "training" (the defense simulated in training) or a defense
      config (None or [] for none).
    variables: the victim's variables at which the leaks are computed
      (default: the training ones), e.g. a victim trained further.
    seed: the defense's randomness.
    chunk: messages per forward pass.

  Returns:
    dict with "mse" [N] (per message, after matching), "x_hat" [N, B, H,
    W, C] and "x" [N, B, H, W, C].
  """
  setup = trained.setup
  if defense != "training":
    setup = with_defense(setup, defense)
  msgs, labels = eval_messages(setup, x01, ys, seed, variables)
  b = setup.leak.batch_size
  x = jnp.asarray(x01).reshape((-1, b) + tuple(x01.shape[1:]))
  mse, x_hat = make_eval_fn(setup, chunk)(trained.params, msgs, labels, x)
  return dict(mse=np.asarray(mse), x_hat=np.asarray(x_hat), x=np.asarray(x))


def psnr_from_mse(mse) -> float:
  return float(np.mean(10.0 * np.log10(1.0 / np.maximum(np.asarray(mse),
                                                        1e-10))))


# ---------------------------------------------------------------------------
# The run.


def read_metrics(workdir) -> list[dict]:
  """The records of ``<workdir>/metrics.jsonl``, in order."""
  return rundir.read_jsonl(os.path.join(os.fspath(workdir), METRICS_LOG))


def _state_dict(state: TrainState) -> dict:
  return state._asdict()


def prepare_data(config, setup_fn=make_setup):
  """Loads the training and evaluation sets; builds the Setup."""
  train = load_dataset(_plain(config.data))
  ev_cfg = _plain(config.eval_data)
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
  setup, train, ev = prepare_data(config)
  t_cfg = _plain(config.train)
  num_steps = int(t_cfg["num_steps"])
  n = int(t_cfg["batch_size"])
  mesh = parallel.data_mesh(config.get("num_devices"))
  parallel.check_divisible(n, mesh)
  logging.info("Inverter %s for %s on %s (%d images, %d classes); %d "
               "devices; B=%d; %d steps of %d messages",
               config.inverter.name, setup.victim.name, train.name,
               len(train.labels), setup.num_classes, mesh.devices.size,
               setup.leak.batch_size, num_steps, n)

  ckpt_dir = os.path.join(workdir, "checkpoints")
  ckpt = checkpoint.Checkpointer(ckpt_dir, every=config.checkpoint_every,
                                 keep=config.get("keep", 2))
  try:
    init = init_state(setup, config.seed)
    with jax.set_mesh(mesh):
      init = parallel.put_replicated(mesh, init)
      restored, start = ckpt.restore_or(_state_dict(init), resume=resume)
      state = TrainState(**restored)
      if jax.process_index() == 0:
        run.write_json(RUN_INFO, dict(
            image_shape=setup.image_shape, num_classes=setup.num_classes,
            train_images=len(train.labels), train_data=train.name))
        run.trim_jsonl(METRICS_LOG, start)
      if start:
        logging.info("Resumed from step %d of %s", start, ckpt_dir)
      data = parallel.put_replicated(
          mesh, (train.images, train.labels.astype(np.int32),
                 setup.variables))
      step_fn = make_train_step(setup, n, mesh)
      evaluate = make_eval_fn(setup)
      ev_msgs, ev_labels = eval_messages(setup, ev.images, ev.labels,
                                         config.seed + 7)
      b = setup.leak.batch_size
      ev_x = jnp.asarray(ev.images).reshape(
          (-1, b) + tuple(ev.images.shape[1:]))
      result = _loop(config, setup, state, start, num_steps, stop_at,
                     step_fn, data, ckpt, run,
                     lambda p: evaluate(p, ev_msgs, ev_labels, ev_x)[0], n)
  finally:
    ckpt.close()
  if result.get("finished") and jax.process_index() == 0:
    run.finish(result)
  return result


def _check_finite(metrics, step) -> dict:
  metrics = {k: float(v) for k, v in metrics.items()}
  if not all(math.isfinite(v) for v in metrics.values()):
    raise FloatingPointError(
        f"non-finite training metrics at step {step}: {metrics}; the last "
        "checkpoint before it is kept (lower train.lr or raise "
        "train.grad_clip)")
  return metrics


def _loop(config, setup, state, start, num_steps, stop_at, step_fn, data,
          ckpt, run, eval_fn, n):
  """The training loop proper (logging, evaluation, checkpoints)."""
  images_per_step = n * setup.leak.batch_size
  log_every = int(config.get("log_every", 50))
  eval_every = int(config.get("eval_every", 0) or 0)
  t_start, t_first, steps_timed, t_aside = time.time(), None, 0, 0.0
  last = {"step": start}
  end = num_steps if stop_at is None else min(stop_at, num_steps)
  every = int(config.checkpoint_every)
  for step in range(start, end):
    state, metrics = step_fn(state, *data)
    done = step + 1
    if done % every == 0 or done == num_steps:
      _check_finite(metrics, done)  # Never checkpoint a diverged state.
    ckpt.save(done, _state_dict(state), force=done == num_steps)
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
        record["eval_psnr"] = psnr_from_mse(errs)
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
    out["eval_psnr"] = psnr_from_mse(errs)
  return out


# ---------------------------------------------------------------------------
# Loading a trained inverter (for attacks).


class Trained(NamedTuple):
  """A trained inverter, as ``load`` returns it."""
  config: Any  # The training config (ConfigDict).
  setup: Setup
  params: Any
  step: int
  workdir: str


def load(workdir: str, step: int | None = None) -> Trained:
  """Restores the inverter trained in ``workdir`` (latest step by default).

  Raises:
    FileNotFoundError: if ``workdir`` has no config.json or no checkpoint.
    checkpoint.CheckpointError: if the checkpoint does not match the config.
  """
  workdir = os.path.abspath(os.fspath(workdir))
  path = os.path.join(workdir, report.CONFIG)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"no inverter training run in {workdir} (missing {path}); train one "
        "with python -m launch.train_inverter --config=... --workdir=...")
  config = mlc.ConfigDict(report.read_json(workdir, report.CONFIG))
  info = report.read_json(workdir, RUN_INFO)
  setup = make_setup(config, tuple(info["image_shape"]),
                     int(info["num_classes"]))
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                 every=10**9)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints")
    init = jax.eval_shape(lambda: init_state(setup, 0))
    like = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                        _state_dict(init))
    state = ckpt.restore(step, like)
  finally:
    ckpt.close()
  return Trained(config, setup, state["params"], int(step), workdir)
