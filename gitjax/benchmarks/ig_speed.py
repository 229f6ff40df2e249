"""Inverting Gradients iteration speed and hardware utilization.

For each (model, batch size): milliseconds per IG iteration (the engine's
compiled chunk: cosine gradient distance, its gradient by double backprop,
signed Adam, box projection), the FLOPs of one iteration from XLA's cost
analysis of the compiled step, and the FLOP/s this achieves as a fraction of
a large float32 matmul's FLOP/s measured in the same run. Also the cost of R
restarts in one program, vmapped and ``lax.map``-ped over the trial axis,
against R sequential single-trial runs. The per-model rows use the engine's
default trial axis (``matching.options``) and the replay's default
convolutions (``matching.Settings.conv="auto"``: XLA's with
forward-over-reverse, im2col matrix products with double backprop on CPU;
results' ``conv``); FLOPs are counted on the same step with XLA's
convolutions (``step_flops``).

Each (model, batch size) cell is timed over ``config.rounds`` rounds of one
compiled chunk of ``config.iterations`` steps; ``ms_per_iteration`` is the
median. With PyTorch (``config.torch``: "auto" when importable, "on", "off";
``torch_reference``) the rounds alternate gitjax and the same IG step in
torch (``torch_threads`` threads; 0: all cores), after checking that both
compute the same logits, objective and step; the cell then also has
``torch_ms_per_iteration`` (median), ``gitjax_over_torch`` (the median of
the per-round ratios), ``torch_fraction_of_matmul`` (the same XLA FLOP count
over the same JAX matmul rate) and ``torch_check`` (the discrepancies).

The step's input gradient is forward-over-reverse (``config.second_order``,
``matching.Settings.second_order``). With ``config.compare_second_order``
each round also runs the double-backprop step ("reverse", PyTorch's way),
and the cell gains ``reverse_ms_per_iteration`` and ``reverse_over_forward``
(the median of the per-round ratios). ``ghost``: whether the cell's step
takes its cosine through ``ghost`` (``matching.Settings.ghost``: on a CPU
at B = 1; the double-backprop step forms the gradient). FLOPs are always
counted on the double-backprop step with XLA's convolutions and the
gradient formed: the same work in every column.
"""

import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import client_model
from gitjax import data as data_lib
from gitjax import experiments
from gitjax import models
from gitjax import victim as victim_lib
from gitjax.attacks import gradient_matching as gm
from gitjax.attacks import engine
from gitjax.attacks import matching
from gitjax.benchmarks import torch_reference
from gitjax.benchmarks import torch_runtime


def matmul_flops_per_s(n: int, repeats: int) -> float:
  """Best FLOP/s of an [n, n] x [n, n] float32 matmul."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(jnp.matmul)
  f(a, b).block_until_ready()
  best = np.inf
  for _ in range(repeats):
    t = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2.0 * n**3 / best


def _setup(name, width, batch, image_size, restarts, iterations,
           trial_axis="auto", conv="auto", second_order="forward",
           ghost="auto"):
  kw = {} if width is None else {"width": width}
  if name != "mlp":
    kw["conv"] = conv
  victim = models.make_victim(name, input_shape=(image_size, image_size, 3),
                              num_classes=10, **kw)
  variables = victim_lib.init_variables(victim, jax.random.key(0))
  return setup_problem(victim, variables, batch, restarts, iterations,
                       trial_axis, second_order, conv, ghost)


def setup_problem(victim, variables, batch, restarts, iterations,
                  trial_axis="auto", second_order="forward", conv="auto",
                  ghost="auto"):
  """(problem, settings, data, carry) of the timed IG step on ``victim``:
  a FedSGD leak of ``batch`` uniform images with known labels, tv 1e-4,
  IG's other defaults, ``restarts`` N(0, 1) starts."""
  key = jax.random.key(0)
  xs = jax.random.uniform(jax.random.fold_in(key, 1),
                          (batch,) + tuple(victim.input_shape))
  ys = jnp.arange(batch) % 10
  private = data_lib.from_arrays(np.asarray(xs), np.asarray(ys),
                                 num_classes=10)
  leak = experiments.case_from_batch(victim, variables, private, key).leak
  settings, _ = gm.split_config(
      dict(iterations=iterations, restarts=restarts, chunk=iterations,
           tv=1e-4, progress=False, trial_axis=trial_axis,
           second_order=second_order, conv=conv, ghost=ghost),
      gm.IG_DEFAULTS)
  problem = matching.make_problem(leak, victim, settings)
  x0 = jax.random.normal(key, (restarts,) + xs.shape)
  data = problem.with_factors(matching.make_data(leak, ys), x0[0])
  carry = engine.init_carry({"x": x0}, matching.transformation(settings))
  return problem, settings, data, carry


def chunk_kwargs(problem, settings) -> dict:
  """The static arguments of ``engine.run_chunk`` for the IG step: the
  step of a whole run (at least ``matching.CONSTANTS_MIN_STEPS`` trial
  steps, so the leak compiled in where ``constants="auto"`` does that),
  not of the short timed chunk."""
  whole = settings._replace(iterations=max(
      settings.iterations, matching.CONSTANTS_MIN_STEPS))
  opts = matching.options(whole, problem)._replace(
      iterations=settings.iterations)
  return dict(loss_fn=problem, project=matching.BoxProjection(),
              tx=matching.transformation(settings), options=opts,
              per_trial=False)


def time_iterations(name, width, batch, image_size, restarts, iterations,
                    repeats, trial_axis="auto"):
  """(seconds per iteration, FLOPs per iteration, compile seconds)."""
  problem, settings, data, carry = _setup(name, width, batch, image_size,
                                          restarts, iterations, trial_axis)
  kw = chunk_kwargs(problem, settings)
  t = time.perf_counter()
  out = engine.run_chunk(carry, data, iterations, **kw)
  jax.block_until_ready(out)
  compile_s = time.perf_counter() - t
  best = np.inf
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(engine.run_chunk(carry, data, iterations, **kw))
    best = min(best, time.perf_counter() - t)
  flops = step_flops(name, width, batch, image_size, restarts, iterations,
                     trial_axis)
  return best / iterations, flops, compile_s


def step_flops(name, width, batch, image_size, restarts, iterations,
               trial_axis="auto"):
  """XLA's FLOP count of one step, with XLA's convolutions.

  The useful work: the im2col program (the CPU default) also counts the
  products with its zero padding, so its own count would flatter it.
  """
  problem, settings, data, carry = _setup(name, width, batch, image_size,
                                          restarts, iterations, trial_axis,
                                          conv="xla", second_order="reverse",
                                          ghost="off")
  step = jax.jit(engine.make_step(problem, matching.BoxProjection(),
                                  matching.transformation(settings),
                                  matching.options(settings, problem)))
  return cost_flops(step.lower(carry, data).compile())


def cost_flops(compiled) -> float:
  """XLA's FLOP count of a compiled program (NaN when it has none)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # Older JAX returned one per device.
    cost = cost[0]
  return float(cost.get("flops", np.nan)) if cost else np.nan


def gitjax_probe(problem, data, carry, kw) -> dict:
  """gitjax's side of ``torch_reference.compare``, on trial 0.

  The parameter count, the logits at the start x0, the objective there, x
  after one step and the objective at it; the steps reuse the compiled
  chunk (two chunks of one step), so only the forward pass compiles.
  """
  x0 = carry.vars["x"][0]
  variables = victim_lib.merge(data["params"], data["state"])
  logits = jax.jit(problem.victim.apply)(variables, x0)
  c1, loss0 = engine.run_chunk(carry, data, 1, **kw)
  _, loss1 = engine.run_chunk(c1, data, 1, **kw)
  return dict(params=sum(int(a.size) for a in jax.tree.leaves(data["params"])),
              logits=np.asarray(logits), objective=float(loss0[0, 0]),
              x1=np.asarray(c1.vars["x"][0]),
              objective_after_step=float(loss1[0, 0]))


def time_cell(name, width, batch, config, with_torch):
  """Seconds per iteration of one cell, per round, gitjax and torch.

  Each of ``config.rounds`` rounds runs one gitjax chunk of
  ``config.iterations`` steps (always from the same start), then as many
  torch steps (continuing). Returns (gitjax [rounds], torch [rounds] or [],
  compile seconds, torch_reference.compare's discrepancies or None,
  double-backprop gitjax [rounds] or []).
  """
  n = config.iterations
  problem, settings, data, carry = _setup(
      name, width, batch, config.image_size, 1, n,
      second_order=config.second_order)
  kw = chunk_kwargs(problem, settings)
  t = time.perf_counter()
  jax.block_until_ready(engine.run_chunk(carry, data, n, **kw))
  compile_s = time.perf_counter() - t
  rev_kw = None
  if config.compare_second_order:  # The same problem, double backprop
    # of the formed gradient (no ghost).
    reverse = problem._replace(client=client_model.with_derivatives(
        problem.client, "reverse"), ghost="off")
    rev_kw = chunk_kwargs(reverse, settings)
    jax.block_until_ready(engine.run_chunk(carry, data, n, **rev_kw))
  step = check = None
  if with_torch:
    step = torch_reference.make_ig_step(problem, settings, data,
                                        carry.vars["x"][0],
                                        torch_runtime.device())
    with torch_runtime.full_precision():
      check = torch_reference.compare(
          f"{name}_w{width}_b{batch}",
          gitjax_probe(problem, data, carry, kw),
          torch_reference.probe(step))
  ours, theirs, reverse = [], [], []
  for _ in range(config.rounds):
    t = time.perf_counter()
    jax.block_until_ready(engine.run_chunk(carry, data, n, **kw))
    ours.append((time.perf_counter() - t) / n)
    if rev_kw is not None:
      t = time.perf_counter()
      jax.block_until_ready(engine.run_chunk(carry, data, n, **rev_kw))
      reverse.append((time.perf_counter() - t) / n)
    if step is not None:
      theirs.append(torch_reference.run_steps(step, n) / n)
  ghost = bool(problem.uses_ghost(carry.vars["x"][0]))
  return ours, theirs, compile_s, check, reverse, ghost


def _row(ours, theirs, flops, ref, compile_s, check, reverse=(),
         ghost=False) -> dict:
  s = float(np.median(ours))
  row = dict(ms_per_iteration=1e3 * s, gflop_per_iteration=flops / 1e9,
             gflop_per_s=flops / s / 1e9, fraction_of_matmul=flops / s / ref,
             compile_s=compile_s, ghost=ghost)
  if theirs:
    t = float(np.median(theirs))
    row.update(torch_ms_per_iteration=1e3 * t,
               gitjax_over_torch=float(np.median(np.divide(ours, theirs))),
               torch_fraction_of_matmul=flops / t / ref, torch_check=check)
  if len(reverse):
    row.update(reverse_ms_per_iteration=1e3 * float(np.median(reverse)),
               reverse_over_forward=float(np.median(np.divide(reverse,
                                                              ours))))
  return row


def _replay_convs() -> dict:
  """The replay's convolutions under each second_order (results' conv)."""
  v = models.make_victim("convnet", width=2, input_shape=(12, 12, 3),
                         num_classes=10)
  return {k: client_model.replay_conv("auto", v, k, 1, ())
          for k in ("forward", "reverse")}


def _torch_setup(config, threads: int) -> dict:
  """torch's threads, version, device and matmul rate (results keys)."""
  out = torch_runtime.setup(threads)
  rate = torch_runtime.matmul_flops_per_s(
      config.matmul_size, config.repeats, out["torch_device"])
  out["torch_matmul_gflop_per_s"] = rate / 1e9
  logging.info("torch %s", out)
  return out


def run(config, workdir):
  del workdir
  with_torch = torch_runtime.resolve(config.torch)  # Before any timing.
  threads = config.torch_threads or os.cpu_count()
  ref = matmul_flops_per_s(config.matmul_size, config.repeats)
  results = {"xla_flags": os.environ.get("XLA_FLAGS", ""),
             "matmul_size": config.matmul_size,
             "matmul_gflop_per_s": ref / 1e9,
             "image_size": config.image_size,
             "iterations_timed": config.iterations, "rounds": config.rounds,
             "conv": _replay_convs(),
             "second_order": config.second_order, "models": {}}
  logging.info("float32 matmul %d: %.1f GFLOP/s", config.matmul_size,
               ref / 1e9)
  if with_torch:
    results.update(_torch_setup(config, threads))
  for name, width in config.models:
    for b in config.batch_sizes:
      ours, theirs, comp, check, rev, gh = time_cell(name, width, b,
                                                     config, with_torch)
      flops = step_flops(name, width, b, config.image_size, 1,
                         config.iterations)
      row = _row(ours, theirs, flops, ref, comp, check, rev, gh)
      results["models"][f"{name}_w{width}_b{b}"] = row
      logging.info("%s width %s B=%d: %s", name, width, b, row)
  results["restarts"] = _restarts(config)
  logging.info("restarts: %s", results["restarts"])
  return results


def _restarts(config) -> dict:
  """R restarts in one program (vmapped, mapped) against R separate runs."""
  name, width = config.restart_model
  r = config.restarts
  args = (name, width, 1, config.image_size)
  s_1 = time_iterations(*args, 1, config.iterations, config.repeats)[0]
  per_axis = {axis: time_iterations(*args, r, config.iterations,
                                    config.repeats, trial_axis=axis)[0]
              for axis in ("vmap", "map")}
  return dict(
      model=f"{name}_w{width}_b1", restarts=r,
      vmapped_ms_per_iteration=1e3 * per_axis["vmap"],
      mapped_ms_per_iteration=1e3 * per_axis["map"],
      sequential_ms_per_iteration=1e3 * r * s_1,
      vmap_speedup_over_sequential=r * s_1 / per_axis["vmap"],
      map_speedup_over_sequential=r * s_1 / per_axis["map"],
      default_trial_axis=engine.trial_axis(matching.options(
          *_setup(*args, r, config.iterations)[1::-1])))
