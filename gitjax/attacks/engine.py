"""The one trial loop every optimization attack runs through.

``optimize(loss_fn, init, tx, data, options=..., project=None,
on_chunk=None)`` minimizes ``loss_fn(vars, data) -> scalar`` over any pytree
``vars`` for R independent trials at once (restarts are the leading axis of
every leaf of ``init``) with any optax ``GradientTransformation`` ``tx``:

* each trial keeps its best iterate by objective (``options.keep="best"``)
  or its last one (``"last"``, for objectives that change during the run); a
  trial whose loss or gradient turns NaN/Inf stops there and is reported;
* ``project(vars, data) -> vars`` runs after every step (a box constraint);
* the loop runs in chunks of ``options.chunk`` iterations (and ends a chunk
  at each step in ``options.stops``), returning to Python in between to log
  progress and to call ``on_chunk(step, vars, data) -> data | None`` before
  each chunk: a hook that may change the traced ``data`` (a learning-signal
  switch, a group consensus, fresh noise) without a loop of its own;
* L-BFGS with a line search reuses the value and gradient at its point;
* a run pauses after a step (``until``) and resumes from its state.

``loss_fn``, ``project`` and ``tx`` are static jit arguments: pass the same
(hashable) objects to reuse the compiled program (``optimizers.transformation``
caches its transformations); data that changes between calls goes through
``data`` (traced). Loop bodies go through ``xla_cpu.loop_body`` (3-10x on
a CPU); the CPU default (``Options.loop``) loops on the host (0.9-1.1x).
"""

import functools
import logging
import time
import types
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from gitjax import parallel
from gitjax import report
from gitjax import static
from gitjax import xla_cpu

TRIAL_AXES = ("auto", "vmap", "map")
LOOPS = ("auto", "device", "host")
KEEPS = ("best", "last")
MAX_UNROLLED_TRIALS = 32


class Options(NamedTuple):
  """How the loop runs (hashable: a static jit argument).

  Attributes:
    iterations: optimizer steps per trial.
    chunk: iterations per compiled chunk between callbacks and logs.
    stops: steps at which a chunk must also end (for ``on_chunk``).
    keep: "best" (lowest objective seen) or "last" iterate per trial.
    progress: show a progress bar (logging happens regardless).
    shard_trials: spread the R trials over all devices (R a multiple of the
      device count).
    trial_axis: "vmap" (side by side), "map" (one after another inside
      the step: unrolled up to ``MAX_UNROLLED_TRIALS``, ``lax.map`` beyond;
      for XLA's convolutions on a CPU) or "auto" ("vmap").
    loop: "device" (one ``fori_loop`` per chunk), "host" (a Python loop
      over the compiled step; dispatch is asynchronous, so the host syncs
      once per chunk) or "auto" ("host" on CPU, else "device").
    constants: compile ``data`` (the leak) into the program, one compile
      per leak, so XLA transforms the weights once (e.g. flipped kernels)
      instead of every step. Not with ``on_chunk`` (new data each chunk).
  """
  iterations: int = 1000
  chunk: int = 100
  stops: tuple = ()
  keep: str = "best"
  progress: bool = True
  shard_trials: bool = False
  trial_axis: str = "auto"
  loop: str = "auto"
  constants: bool = False


def check_options(o: Options) -> Options:
  """Raises ValueError on an unknown choice or a count below 1."""
  for name, value, known in (("loop", o.loop, LOOPS),
                             ("trial_axis", o.trial_axis, TRIAL_AXES),
                             ("keep", o.keep, KEEPS)):
    if value not in known:
      raise ValueError(f"unknown {name} {value!r}; known: {known}")
  for name in ("iterations", "chunk"):
    if int(getattr(o, name)) < 1:
      raise ValueError(f"{name} must be >= 1; got {getattr(o, name)}")
  return o._replace(iterations=int(o.iterations), chunk=int(o.chunk),
                    stops=tuple(sorted({int(s) for s in o.stops})))


class Carry(NamedTuple):
  """Loop state; every leaf has a leading [R] axis except ``step``."""
  vars: Any
  opt_state: Any
  best_vars: Any
  best_loss: jax.Array  # [R]
  alive: jax.Array  # [R] bool
  died_at: jax.Array  # [R] int32, -1 while alive
  step: jax.Array  # [] int32


def _where(c, a, b):
  return jax.tree.map(lambda x, y: jnp.where(
      jnp.reshape(c, c.shape + (1,) * (x.ndim - c.ndim)), x, y), a, b)


def _all_finite(tree):
  return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x))
                              for x in jax.tree.leaves(tree)]))


def _stores_value(opt_state) -> bool:
  """Whether ``tx`` keeps the line search's value and gradient (L-BFGS)."""
  return (otu.tree_get(opt_state, "value") is not None
          and otu.tree_get(opt_state, "grad") is not None)


def _trial_step(loss_fn, project, tx, keep, step, data, v, opt_state, best_v,
                best_l, alive, died):
  """One optimizer step of one trial."""
  value_fn = lambda u: loss_fn(u, data)
  if project is None and _stores_value(opt_state):
    # The line search already evaluated the loss and gradient at v.
    loss, g = jax.lax.cond(
        step == 0, lambda: jax.value_and_grad(value_fn)(v),
        lambda: (otu.tree_get(opt_state, "value"),
                 otu.tree_get(opt_state, "grad")))
  else:
    loss, g = jax.value_and_grad(value_fn)(v)
  ok = jnp.isfinite(loss) & _all_finite(g)
  now_alive = alive & ok
  better = now_alive & ((loss < best_l) if keep == "best" else True)
  best_v = _where(better, v, best_v)
  best_l = jnp.where(better, loss, best_l)
  if isinstance(tx, optax.GradientTransformationExtraArgs):
    updates, new_os = tx.update(g, opt_state, v, value=loss, grad=g,
                                value_fn=value_fn)
  else:
    updates, new_os = tx.update(g, opt_state, v)
  new_v = optax.apply_updates(v, updates)
  if project is not None:
    new_v = project(new_v, data)
  v = _where(now_alive, new_v, v)
  opt_state = _where(now_alive, new_os, opt_state)
  died = jnp.where(alive & ~ok, step, died)
  return v, opt_state, best_v, best_l, now_alive, died, loss


@functools.partial(jax.jit, static_argnames=("tx",))
def _init_carry(init_vars, tx):
  r = jax.tree.leaves(init_vars)[0].shape[0]
  carry = Carry(
      vars=init_vars, opt_state=jax.vmap(tx.init)(init_vars),
      best_vars=init_vars, best_loss=jnp.full((r,), jnp.inf),
      alive=jnp.ones((r,), bool), died_at=jnp.full((r,), -1, jnp.int32),
      step=jnp.zeros((), jnp.int32))
  # Strong types, so that the chunk compiled for the first call is reused.
  return jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype), carry)


def init_carry(init_vars, tx) -> Carry:
  """The loop state for R trials starting at ``init_vars`` (leading [R])."""
  return _init_carry(init_vars, tx)


def trial_axis(options: Options) -> str:
  """The resolved ``options.trial_axis``: "vmap" or "map"."""
  auto = options.shard_trials or options.trial_axis == "auto"
  return "vmap" if auto else options.trial_axis


def loop_kind(options: Options) -> str:
  """The resolved ``options.loop``: "device" or "host"."""
  if options.loop != "auto":
    return options.loop
  return "host" if jax.default_backend() == "cpu" else "device"


class Constant(static.Keyed):
  """A pytree compiled in as constants, keyed by ``static.held``: the
  same arrays find the same compiled program."""

  def __init__(self, tree):
    self.tree, self._key = tree, static.held(tree)


def over_trials(fn: Callable, in_axes: tuple, options: Options) -> Callable:
  """``fn`` of one trial lifted to R trials (axis 0 where in_axes is 0)."""
  if trial_axis(options) == "vmap":
    return jax.vmap(fn, in_axes=in_axes)

  def mapped(*args):
    trial_args = [a for a, ax in zip(args, in_axes) if ax == 0]

    def one(per_trial_args):
      it = iter(per_trial_args)
      return fn(*[next(it) if ax == 0 else a for a, ax in zip(args, in_axes)])

    r = jax.tree.leaves(trial_args)[0].shape[0]
    if r > MAX_UNROLLED_TRIALS:
      return jax.lax.map(xla_cpu.loop_body(one), trial_args)
    outs = [one(jax.tree.map(lambda x, i=i: x[i], trial_args))
            for i in range(r)]
    return jax.tree.map(lambda *o: jnp.stack(o), *outs)

  return mapped


def make_step(loss_fn, project, tx, options: Options, per_trial=False):
  """One iteration of all R trials: ``(carry, data) -> (carry, losses [R])``.

  The body of the compiled loop, exposed for benchmarks (cost analysis).
  """
  step = over_trials(
      functools.partial(_trial_step, loss_fn, project, tx, options.keep),
      (None, 0 if per_trial else None, 0, 0, 0, 0, 0, 0), options)

  def one(c, data):
    out = step(c.step, data, c.vars, c.opt_state, c.best_vars, c.best_loss,
               c.alive, c.died_at)
    return Carry(*out[:6], c.step + 1), out[6]

  return one


_STATIC = ("loss_fn", "project", "tx", "options", "per_trial", "const")


@xla_cpu.jit(static_argnames=_STATIC)
def _device_chunk(carry, data, n, *, loss_fn, project, tx, options,
                  per_trial, const=None):
  data = data if const is None else const.tree
  step = xla_cpu.loop_body(make_step(loss_fn, project, tx, options,
                                     per_trial))
  r = carry.best_loss.shape[0]

  def body(i, c_buf):
    c, buf = c_buf
    c, loss = step(c, data)
    return c, jax.lax.dynamic_update_slice(buf, loss[:, None], (0, i))

  buf = jnp.full((r, options.chunk), jnp.nan, carry.best_loss.dtype)
  return jax.lax.fori_loop(0, n, body, (carry, buf))


@xla_cpu.jit(static_argnames=_STATIC)
def _one_step(carry, data, *, loss_fn, project, tx, options, per_trial,
              const=None):
  data = data if const is None else const.tree
  return make_step(loss_fn, project, tx, options, per_trial)(carry, data)


def _twin(jitted, static_argnames):
  """``jitted``'s function as a new function, jitted (its own cache)."""
  f = jitted.__wrapped__
  g = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_const",
                         f.__defaults__, f.__closure__)
  g.__kwdefaults__ = f.__kwdefaults__
  return xla_cpu.jit(static_argnames=static_argnames)(g)


# Programs holding a leak (``constants``) have caches emptied after a run.
_device_chunk_c = _twin(_device_chunk, _STATIC)
_one_step_c = _twin(_one_step, _STATIC)


def run_chunk(carry, data, n, *, loss_fn, project, tx, options, per_trial):
  """Runs ``n`` (<= options.chunk) steps; returns (carry, losses [R, chunk]).

  Columns past ``n`` are NaN. Loops on the device or the host according to
  ``loop_kind(options)``.
  """
  kw = dict(loss_fn=loss_fn, project=project, tx=tx, options=options,
            per_trial=per_trial)
  chunk_fn, step_fn = _device_chunk, _one_step
  if options.constants:
    data, kw["const"] = None, Constant(data)
    chunk_fn, step_fn = _device_chunk_c, _one_step_c
  if loop_kind(options) == "device":
    return chunk_fn(carry, data, n, **kw)
  losses = []
  for _ in range(int(n)):
    carry, loss = step_fn(carry, data, **kw)
    losses.append(loss)
  buf = jnp.stack(losses, axis=1)
  pad = options.chunk - buf.shape[1]
  if pad > 0:
    buf = jnp.pad(buf, ((0, 0), (0, pad)), constant_values=jnp.nan)
  return carry, buf


@xla_cpu.jit(static_argnames=("loss_fn", "per_trial", "options", "const"))
def _finish(carry, data, *, loss_fn, per_trial, options, const=None):
  """Scores the last iterates (after the final step) and picks the best."""
  data = data if const is None else const.tree
  loss = over_trials(loss_fn, (0, 0 if per_trial else None), options)(
      carry.vars, data)
  ok = carry.alive & jnp.isfinite(loss)
  better = ok & ((loss < carry.best_loss) if options.keep == "best"
                 else True)
  best_v = _where(better, carry.vars, carry.best_vars)
  best_l = jnp.where(better, loss, carry.best_loss)
  best_l = jnp.where(jnp.isfinite(best_l), best_l, jnp.inf)
  return best_v, best_l, loss


_finish_c = _twin(_finish, ("loss_fn", "per_trial", "options", "const"))


def shard(carry: Carry, data, per_trial: bool):
  """Places the trial axis of ``carry`` (and of per-trial data) on a mesh
  over all devices (``parallel.data_mesh``)."""
  mesh = parallel.data_mesh()
  r, n = carry.best_loss.shape[0], mesh.devices.size
  if r % n:
    raise ValueError(f"shard_trials needs a trial count divisible by the "
                     f"{n} devices; got {r} trials")
  split, whole = parallel.batch_sharding(mesh), parallel.replicated(mesh)
  step = jax.device_put(carry.step, whole)
  carry = jax.device_put(carry._replace(step=None), split)
  return carry._replace(step=step), jax.device_put(
      data, split if per_trial else whole)


def _chunk_end(done: int, options: Options) -> int:
  """The end of the chunk a run straight from step 0 is in at ``done``
  (so a resumed run keeps the same chunk ends)."""
  base = max([0] + [s for s in options.stops if s <= done])
  end = base + options.chunk * ((done - base) // options.chunk + 1)
  return min([end, options.iterations]
             + [s for s in options.stops if done < s])


def optimize(loss_fn: Callable, init_vars, tx, data=None, *,
             options: Options = Options(), project: Callable | None = None,
             on_chunk: Callable | None = None, desc: str = "optimize",
             per_trial: bool = False, select: bool = True,
             until: int | None = None, resume: Carry | None = None):
  """Minimizes ``loss_fn(vars, data)`` from R initial points at once.

  Args:
    loss_fn: ``(vars, data) -> scalar`` for one trial; hashable (static).
    init_vars: pytree whose leaves have a leading [R] axis.
    tx: an optax ``GradientTransformation`` (hashable: pass the same object
      to reuse the compiled step).
    data: traced pytree passed to ``loss_fn``, ``project`` and ``on_chunk``.
    options: ``Options``.
    project: optional ``(vars, data) -> vars`` after each step.
    on_chunk: optional ``(step, vars, data) -> data | None``, called on the
      host before each chunk with the step it starts at and the current
      iterates (leading [R]); a returned pytree (same structure and shapes)
      replaces ``data`` from then on.
    desc: label for progress logs.
    per_trial: ``data`` has a leading [R] axis, one slice per trial.
    select: return the best trial only; False returns every trial's kept
      iterate (leading [R]).
    until: pause after this many steps (of ``options.iterations``); ``info``
      then holds the loop state as ``carry``.
    resume: a paused run's ``info["carry"]`` to continue (``init_vars`` is
      ignored): the same run as one straight through, given the same
      ``data``, with its chunk ends (and an ``on_chunk`` call on resuming).

  Returns:
    (vars, info). ``info`` has ``loss`` (the chosen trial's objective),
    ``best_trial``, ``trial_losses`` [R], ``final_losses`` [R],
    ``nonfinite_trials`` and ``died_at``, ``history`` (iteration and
    per-trial loss at each chunk end, of this call), timings; ``carry``
    when paused by ``until``.
  """
  options = check_options(options)
  if on_chunk is not None:
    options = options._replace(constants=False)  # New data: no recompiles.
  t0, total = time.time(), options.iterations
  end = total if until is None else int(until)
  carry = _init_carry(init_vars, tx) if resume is None else resume
  first = done = int(carry.step)
  if not first < end <= total:
    raise ValueError(f"until must be in [1, {total}] and past the resume "
                     f"step {first}; got {end}")
  if options.shard_trials:
    carry, data = shard(carry, data, per_trial)
  hist_it, hist_loss, compile_s = [], [], None
  bar = report.progress(end - done, desc, log_every=1,  # Logs every chunk.
                        disable=not options.progress)
  kw = dict(loss_fn=loss_fn, project=project, tx=tx, options=options,
            per_trial=per_trial)
  t_loop = time.time()
  try:
    while done < end:
      if on_chunk is not None:
        new = on_chunk(done, carry.vars, data)
        data = data if new is None else new
      n = min(_chunk_end(done, options), end) - done
      carry, buf = run_chunk(carry, data, n, **kw)
      buf = np.asarray(buf)[:, :n]  # [R, n]; blocks until the chunk is done.
      if compile_s is None:
        compile_s = time.time() - t_loop
      done += n
      hist_it.append(done)
      hist_loss.append([float(x) for x in buf[:, -1]])
      finite = buf[:, -1][np.isfinite(buf[:, -1])]
      bar.record(loss=float(finite.min()) if finite.size else np.nan)
      bar.advance(n)
  finally:
    bar.close()
  const = Constant(data) if options.constants else None
  finish = _finish if const is None else _finish_c
  best_v, best_l, final = finish(carry, None if const else data,
                                 loss_fn=loss_fn, per_trial=per_trial,
                                 options=options, const=const)
  best_l = np.asarray(best_l)
  if const is not None:  # Its programs hold the leak: free them.
    for fn in (_device_chunk_c, _one_step_c, _finish_c):
      fn.clear_cache()
  r = int(np.argmin(best_l))
  died = np.asarray(carry.died_at)
  seconds = time.time() - t0
  info = dict(
      loss=float(best_l[r]), best_trial=r,
      trial_losses=[float(x) for x in best_l],
      final_losses=[float(x) for x in np.asarray(final)],
      nonfinite_trials=[int(i) for i in np.flatnonzero(died >= 0)],
      died_at=[int(x) for x in died], iterations=end,
      restarts=int(best_l.shape[0]),
      history=dict(iteration=hist_it, loss=hist_loss),
      seconds=seconds, first_chunk_seconds=compile_s,
      seconds_per_iteration=seconds / (end - first))
  if end < total:
    info["carry"] = carry
  if not np.isfinite(best_l[r]):
    logging.warning("%s: no trial reached a finite objective", desc)
  if not select:
    return best_v, info
  return jax.tree.map(lambda x: x[r], best_v), info
