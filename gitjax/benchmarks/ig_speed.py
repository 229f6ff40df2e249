"""Inverting Gradients iteration speed and hardware utilization.

For each (model, batch size): milliseconds per IG iteration (the engine's
compiled chunk: cosine gradient distance, its gradient by double backprop,
signed Adam, box projection), the FLOPs of one iteration from XLA's cost
analysis of the compiled step, and the FLOP/s this achieves as a fraction of
a large float32 matmul's FLOP/s measured in the same run. Also the cost of R
restarts in one program, vmapped and ``lax.map``-ped over the trial axis,
against R sequential single-trial runs. The per-model rows use the engine's
default trial axis (``engine.trial_axis``: "map" on CPU, "vmap"
elsewhere) and the victims' default convolutions (``conv="auto"``: im2col
matrix products on CPU); FLOPs are counted on the same step with XLA's
convolutions (``step_flops``).
"""

import logging
import time

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import data as data_lib
from gitjax import experiments
from gitjax import models
from gitjax import victim as victim_lib
from gitjax.attacks import gradient_matching as gm
from gitjax.attacks import engine
from gitjax.attacks import matching


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
           trial_axis="auto", conv="auto"):
  kw = {} if width is None else {"width": width}
  if name != "mlp":
    kw["conv"] = conv
  victim = models.make_victim(name, input_shape=(image_size, image_size, 3),
                              num_classes=10, **kw)
  key = jax.random.key(0)
  variables = victim_lib.init_variables(victim, key)
  xs = jax.random.uniform(jax.random.fold_in(key, 1),
                          (batch, image_size, image_size, 3))
  ys = jnp.arange(batch) % 10
  private = data_lib.from_arrays(np.asarray(xs), np.asarray(ys),
                                 num_classes=10)
  leak = experiments.case_from_batch(victim, variables, private, key).leak
  settings, _ = gm.split_config(
      dict(iterations=iterations, restarts=restarts, chunk=iterations,
           tv=1e-4, progress=False, trial_axis=trial_axis), gm.IG_DEFAULTS)
  problem = matching.make_problem(leak, victim, settings)
  data = matching.make_data(leak, ys)
  x0 = jax.random.normal(key, (restarts,) + xs.shape)
  carry = engine.init_carry({"x": x0}, matching.transformation(settings))
  return problem, settings, data, carry


def time_iterations(name, width, batch, image_size, restarts, iterations,
                    repeats, trial_axis="auto"):
  """(seconds per iteration, FLOPs per iteration, compile seconds)."""
  problem, settings, data, carry = _setup(name, width, batch, image_size,
                                          restarts, iterations, trial_axis)
  kw = dict(loss_fn=problem, project=matching.BoxProjection(),
            tx=matching.transformation(settings),
            options=matching.options(settings), per_trial=False)
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
                                          conv="xla")
  step = jax.jit(engine.make_step(problem, matching.BoxProjection(),
                                  matching.transformation(settings),
                                  matching.options(settings)))
  cost = step.lower(carry, data).compile().cost_analysis()
  if isinstance(cost, (list, tuple)):  # Older JAX returned one per device.
    cost = cost[0]
  return float(cost.get("flops", np.nan)) if cost else np.nan


def run(config, workdir):
  del workdir
  ref = matmul_flops_per_s(config.matmul_size, config.repeats)
  results = {"matmul_size": config.matmul_size,
             "matmul_gflop_per_s": ref / 1e9,
             "image_size": config.image_size,
             "iterations_timed": config.iterations,
             "conv": models.common.resolve_conv("auto"), "models": {}}
  logging.info("float32 matmul %d: %.1f GFLOP/s", config.matmul_size,
               ref / 1e9)
  for name, width in config.models:
    for b in config.batch_sizes:
      s, flops, comp = time_iterations(name, width, b, config.image_size, 1,
                                       config.iterations, config.repeats)
      row = dict(ms_per_iteration=1e3 * s, gflop_per_iteration=flops / 1e9,
                 gflop_per_s=flops / s / 1e9,
                 fraction_of_matmul=flops / s / ref, compile_s=comp)
      results["models"][f"{name}_w{width}_b{b}"] = row
      logging.info("%s width %s B=%d: %s", name, width, b, row)
  name, width = config.restart_model
  r = config.restarts
  args = (name, width, 1, config.image_size)
  s_1 = time_iterations(*args, 1, config.iterations, config.repeats)[0]
  per_axis = {axis: time_iterations(*args, r, config.iterations,
                                    config.repeats, trial_axis=axis)[0]
              for axis in ("vmap", "map")}
  results["restarts"] = dict(
      model=f"{name}_w{width}_b1", restarts=r,
      vmapped_ms_per_iteration=1e3 * per_axis["vmap"],
      mapped_ms_per_iteration=1e3 * per_axis["map"],
      sequential_ms_per_iteration=1e3 * r * s_1,
      vmap_speedup_over_sequential=r * s_1 / per_axis["vmap"],
      map_speedup_over_sequential=r * s_1 / per_axis["map"],
      default_trial_axis=engine.trial_axis(engine.Options()))
  logging.info("restarts: %s", results["restarts"])
  return results
