"""Per-example gradients: vmap (chunked or not) against a loop of jax.grad."""

import logging
import resource
import time

import jax
import jax.numpy as jnp

from gitjax import models
from gitjax import victim as victim_lib


def _time(fn, repeats):
  jax.block_until_ready(fn())  # Compile and warm up.
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - t)
  return best


def _peak_memory_mb():
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20, "device peak_bytes_in_use"
  rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss_kb / 1024, "process max RSS"


def _one_model(name, config):
  kw = {} if name == "lenet" else {"width": config.width}
  s = config.image_size
  victim = models.make_victim(name, input_shape=(s, s, 3), num_classes=10,
                              **kw)
  params, state = victim_lib.split(
      victim_lib.init_variables(victim, jax.random.key(0)))
  b = config.batch_size
  xs = jax.random.uniform(jax.random.key(1), (b, s, s, 3))
  ys = jnp.arange(b) % 10
  peg = jax.jit(victim_lib.per_example_grads, static_argnums=(0, 5))
  grad_one = jax.jit(jax.grad(victim_lib.batch_loss, argnums=1),
                     static_argnums=(0,))
  n_loop = config.loop_examples

  def loop():
    return [grad_one(victim, params, state, xs[i:i + 1], ys[i:i + 1])
            for i in range(n_loop)]

  out = {}
  t = _time(lambda: peg(victim, params, state, xs, ys, None), config.repeats)
  out["vmap_examples_per_s"] = b / t
  if config.chunk_size:
    t = _time(lambda: peg(victim, params, state, xs, ys, config.chunk_size),
              config.repeats)
    out[f"vmap_chunk{config.chunk_size}_examples_per_s"] = b / t
  t = _time(loop, config.repeats)
  out["loop_examples_per_s"] = n_loop / t
  out["vmap_speedup_over_loop"] = (out["vmap_examples_per_s"]
                                   / out["loop_examples_per_s"])
  out["peak_memory_mb"], out["peak_memory_kind"] = _peak_memory_mb()
  logging.info("%s: %s", name, out)
  return out


def run(config, workdir):
  del workdir
  results = {"batch_size": config.batch_size,
             "image_size": config.image_size, "width": config.width}
  for name in config.models:
    results[name] = _one_model(name, config)
  return results
