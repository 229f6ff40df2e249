"""What a trained generative prior is rebuilt from.

A prior training config (``configs/prior_*.py``) determines the generator,
the WGAN-GP critic and their optimizers (``make_models``);
``create_train_state`` gives the layout of the checkpointed training state,
which restoring the generator needs (``gitjax.loading``). With
``config.ema`` > 0 the state also holds an exponential moving average of the
generator's variables (``gen_ema``), and that average is the prior
(``prior_variables``): samples, coverage, loading and export all use it.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from gitjax import generators as gen_lib


class Models(NamedTuple):
  gen: gen_lib.Generator
  critic: gen_lib.CriticFns
  gen_tx: optax.GradientTransformation
  critic_tx: optax.GradientTransformation
  ema: float = 0.0  # Decay of the generator's moving average; 0: none.


def plain(x) -> dict:
  """A ConfigDict (or mapping) as a plain dict."""
  return x.to_dict() if hasattr(x, "to_dict") else dict(x)


def make_models(config) -> Models:
  """The generator, critic and their optimizers described by ``config``."""
  gkw = plain(config.generator)
  name = gkw.pop("name")
  gen = gen_lib.make_generator(name, **gkw)
  size, _, channels = gen.image_shape
  critic = gen_lib.make_critic(config.critic.width, size, channels)
  opt = plain(config.optimizer)
  gen_tx = optax.adam(opt["lr_generator"], b1=opt["b1"], b2=opt["b2"])
  critic_tx = optax.adam(opt["lr_critic"], b1=opt["b1"], b2=opt["b2"])
  ema = float(config.get("ema", 0.0) or 0.0)
  if not 0.0 <= ema < 1.0:
    raise ValueError(f"config.ema must be in [0, 1), got {ema}")
  return Models(gen, critic, gen_tx, critic_tx, ema)


def create_train_state(models: Models, key) -> dict:
  """Fresh generator and critic variables and optimizer states; step 0."""
  kg, kc = jax.random.split(key)
  gen_vars = models.gen.init(kg)
  critic_vars = models.critic.init(kc)
  state = {
      "gen": gen_vars,
      "critic": critic_vars,
      "gen_opt": models.gen_tx.init(gen_vars["params"]),
      "critic_opt": models.critic_tx.init(critic_vars["params"]),
      "step": jnp.zeros((), jnp.int32),
  }
  if models.ema:
    state["gen_ema"] = jax.tree.map(jnp.copy, gen_vars)
  return state


def ema_update(models: Models, ema, gen_vars, step):
  """The moving average after one more generator step (``step`` counts
  from 0). Its decay ramps up as min(ema, (1 + step) / (10 + step)), so
  early averages do not remember the random initialization."""
  s = step.astype(jnp.float32)
  d = jnp.minimum(models.ema, (1.0 + s) / (10.0 + s))
  return jax.tree.map(lambda e, v: d * e + (1.0 - d) * v, ema, gen_vars)


def prior_variables(state: dict):
  """The generator variables that serve as the prior: the moving average
  when the run keeps one, else the trained variables."""
  return state.get("gen_ema", state["gen"])
