"""What a trained generative prior is rebuilt from.

A prior training config (``configs/prior_*.py``) determines the generator,
the WGAN-GP critic and their optimizers (``make_models``);
``create_train_state`` gives the layout of the checkpointed training state,
which restoring the generator needs (``gitjax.loading``).
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
  return Models(gen, critic, gen_tx, critic_tx)


def create_train_state(models: Models, key) -> dict:
  """Fresh generator and critic variables and optimizer states; step 0."""
  kg, kc = jax.random.split(key)
  gen_vars = models.gen.init(kg)
  critic_vars = models.critic.init(kc)
  return {
      "gen": gen_vars,
      "critic": critic_vars,
      "gen_opt": models.gen_tx.init(gen_vars["params"]),
      "critic_opt": models.critic_tx.init(critic_vars["params"]),
      "step": jnp.zeros((), jnp.int32),
  }
