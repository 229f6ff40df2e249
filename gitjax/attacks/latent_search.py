"""Latent searches of GGL (and any black-box objective): CMA-ES and Adam.

``population_loss(loss, how)`` turns ``loss(z, key)`` into a population's
``([P, d], key) -> [P]``, vmapped or lax.mapped; ``cmaes`` (evosax) calls it
once per generation; ``adam`` runs ``engine.optimize`` with GGL's ramped
learning rate. Each returns a ``SearchResult``.
"""

import logging
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from gitjax import xla_cpu
from gitjax.attacks import engine
from gitjax.attacks import optimizers


def _check(field: str, value, known: tuple):
  if value not in known:
    raise ValueError(f"unknown {field} {value!r}; known: "
                     f"{', '.join(map(str, known))}")


def population_loss(loss: Callable, how: str = "vmap") -> Callable:
  """``loss(z, key)`` -> ``([P, d], key) -> [P]``, vmapped or lax.mapped."""
  _check("population_map", how, ("vmap", "map"))
  if how == "vmap":
    return jax.vmap(loss, in_axes=(0, None))
  loss = xla_cpu.loop_body(loss)  # On a CPU, Eigen's convolutions.
  return lambda zs, key: jax.lax.map(lambda z: loss(z, key), zs)


class SearchResult(NamedTuple):
  z: jax.Array  # [dim] best latent found.
  loss: float
  history: list  # best loss per generation / batch / log step.
  evaluations: int


def cmaes(batched_loss: Callable, x0: jax.Array, key, *, generations: int,
          population: int = 50, sigma: float = 1.0, log_every: int = 0,
          recommend: str = "mean") -> SearchResult:
  """CMA-ES (evosax) on ``batched_loss([P, d], key) -> [P]``.

  ``batched_loss`` is called exactly once per generation, on the whole
  population of ``population`` candidates. The result is the best candidate
  (``recommend="best"``; ``loss`` its fitness) or the distribution's final
  mean (``"mean"``; ``loss`` is NaN: the mean was not evaluated).
  """
  _check("recommend", recommend, ("best", "mean"))
  from evosax.algorithms import CMA_ES  # Lazy: only this optimizer needs it.
  es = CMA_ES(population_size=population, solution=jnp.zeros_like(x0))
  params = es.default_params.replace(std_init=jnp.asarray(sigma))
  key, k = jax.random.split(key)
  state = es.init(k, x0, params)
  history = []
  for gen in range(generations):
    key, k_ask, k_eval, k_tell = jax.random.split(key, 4)
    pop, state = es.ask(k_ask, state, params)
    fitness = batched_loss(pop, k_eval)
    state, _ = es.tell(k_tell, pop, fitness, state, params)
    history.append(float(state.best_fitness))
    if log_every and (gen + 1) % log_every == 0:
      logging.info("ggl cmaes generation %d/%d: best loss %.5g", gen + 1,
                   generations, history[-1])
  if recommend == "mean":
    return SearchResult(state.mean, float("nan"), history,
                        generations * population)
  return SearchResult(state.best_solution, float(state.best_fitness),
                      history, generations * population)


class _Keyed(NamedTuple):
  """``loss(v, key, data)`` as the engine's ``(v, {"key", "leak"})``."""
  loss: Callable

  def __call__(self, v, data):
    return self.loss(v, data["key"], data["leak"])


def adam(loss: Callable, x0: jax.Array, key, *, data=None, steps: int,
         lr: float = 0.1, rampup: float = 0.05, rampdown: float = 0.25,
         log_every: int = 0,
         fresh_keys: bool = False, trial_axis: str = "auto",
         schedule: str = "ggl", signed: bool = False) -> SearchResult:
  """Adam on ``loss(x, key)`` with GGL's learning-rate ramp (or another
  ``schedule``, on the gradient's sign when ``signed``); keeps the best.
  With ``data``, ``loss(x, key, data)``: static and hashable (an
  ``Objective``), one compiled step for all data of one shape.

  ``x0`` is one start [d] or R starts [R, d] (restarts, run side by side;
  the answer is the trial with the lowest loss). Runs in
  ``engine.optimize``; with ``fresh_keys`` the loss gets a new key every
  step (fresh noise for ``noise_mode="add"``). ``trial_axis`` is the
  engine's: how the restarts share a step.
  """
  tx = optimizers.transformation("adam", lr, steps, signed=signed,
                                 schedule_name=schedule,
                                 ramp=(rampup, rampdown))
  loss_fn = _Keyed(loss if data is not None else lambda v, k, d: loss(v, k))
  refresh = None
  if fresh_keys:
    refresh = lambda step, v, d: dict(d, key=jax.random.fold_in(key, step))
  chunk = 1 if fresh_keys else (log_every or steps)
  starts = x0 if x0.ndim == 2 else x0[None]
  best, info = engine.optimize(
      loss_fn, starts, tx, dict(key=key, leak=data), on_chunk=refresh,
      desc="ggl adam",
      options=engine.Options(iterations=steps, chunk=chunk,
                             progress=False, trial_axis=trial_axis))
  history = [float(min(h)) for h in info["history"]["loss"]]
  return SearchResult(best, info["loss"], history, steps * len(starts))
