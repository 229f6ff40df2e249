"""The client and the attacker's model of it: each defense estimated from
the observed message reproduces it on the true inputs; DP-SGD once."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import client_model
from gitjax import defenses
from gitjax import leak as leak_lib
from gitjax import models
from gitjax import victim as victim_lib
from gitjax.attacks import ggl

GGL = ggl.style()
MATCHING = client_model.Style()


def _leak(defense=(), b=1, num_clients=1, key=0):
  vic = models.make_victim("mlp", input_shape=(8, 8, 3), num_classes=3,
                           hidden=(32,), activation="relu")
  vv = victim_lib.init_variables(vic, jax.random.key(1))
  x = jax.random.uniform(jax.random.key(2 + key), (b * num_clients, 8, 8, 3))
  y = jnp.arange(b * num_clients) % 3
  lk, _ = leak_lib.simulate(vic, vv, x, y, jax.random.key(3),
                            defense=list(defense), num_clients=num_clients)
  return vic, lk, x, y


def _replay(vic, lk, x, y, style, detect=False):
  model, arrays = client_model.from_leak(lk, vic, style, detect)
  return model, model.message(lk.params, lk.state, x, y, arrays)


def _assert_same(a, b, **tol):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(u, v, **tol)


@pytest.mark.parametrize("style", [GGL, MATCHING], ids=["ggl", "matching"])
@pytest.mark.parametrize("defense", [
    [dict(name="clip", max_norm=0.05)],
    [dict(name="clip_per_layer", max_norm=0.01)],
    [dict(name="prune", rate=0.9)],
    [dict(name="soteria", rate=0.5)],
    [dict(name="dp_sgd", clip_norm=0.05, noise_multiplier=0.0)],
], ids=["clip", "clip_per_layer", "prune", "soteria", "dp_sgd"])
def test_model_reproduces_the_message_on_the_true_inputs(style, defense):
  vic, lk, x, y = _leak(defense, b=2)
  _, replay = _replay(vic, lk, x, y, style)
  _assert_same(replay, lk.message, rtol=1e-4, atol=1e-7)


def test_estimates_read_off_the_message():
  vic, lk, x, _ = _leak([dict(name="clip", max_norm=0.05)])
  est = client_model.estimate(lk.message, lk.defense)
  np.testing.assert_allclose(est[0]["observed_norm"], 0.05, rtol=1e-4)
  _, lk, _, _ = _leak([dict(name="prune", rate=0.9)])
  rates = client_model.estimate(lk.message, lk.defense)[0]["rates"]
  assert all(abs(r - 0.9) < 0.02 for r, m in
             zip(rates, jax.tree.leaves(lk.message)) if m.size > 100)
  vic, lk, x, _ = _leak([dict(name="soteria", rate=0.5)])
  keep = np.asarray(client_model.estimate(lk.message, lk.defense)[0]["keep"])
  true_keep = np.asarray(defenses.soteria_mask(vic, lk.variables, x, 0.5))
  # Rows the defense kept but that were zero anyway (dead ReLUs) are the
  # only possible disagreement, and they carry no gradient either way.
  assert np.all(keep <= true_keep) and keep.sum() >= true_keep.sum() - 2


def test_unknown_pruning_is_detected_and_reproduced():
  name = "prune"
  vic, lk, x, y = _leak([dict(name="prune", rate=0.9)])
  lk = leak_lib.Leak(**{**lk.__dict__, "defense": []})
  model, replay = _replay(vic, lk, x, y, GGL, detect=True)
  assert model.defenses[0][0] == name
  _assert_same(replay, lk.message, rtol=1e-5, atol=1e-8)
  plain, _ = client_model.from_leak(lk, vic, GGL, detect=False)
  assert plain.defenses == ()


def test_noise_is_left_alone_or_added_fresh():
  vic, lk, x, y = _leak([dict(name="gaussian", sigma=0.5)])
  for noise, lo, hi in (("none", 0.0, 0.0), ("add", 0.3, 0.7)):
    model, arrays = client_model.from_leak(
        lk, vic, client_model.Style(noise=noise))
    zero = jax.tree.map(jnp.zeros_like, lk.message)
    out = model.defend(zero, arrays, jax.random.key(0))
    std = float(jnp.std(jax.tree.leaves(out)[0]))
    assert lo <= std <= hi if hi else std == 0.0


def test_sign_and_quantize_only_in_exact_style():
  vic, lk, x, y = _leak([dict(name="sign")])
  _, exact = _replay(vic, lk, x, y, GGL)
  _assert_same(exact, lk.message)
  _, plain = _replay(vic, lk, x, y, MATCHING)
  assert not np.allclose(jax.tree.leaves(plain)[0],
                         jax.tree.leaves(lk.message)[0])


def test_several_clients_and_matching_models_agree_across_leaks():
  vic, lk, x, y = _leak([dict(name="prune", rate=0.5)], b=2, num_clients=2)
  model, replay = _replay(vic, lk, x, y, MATCHING)
  assert model.num_clients == 2
  # Each client pruned its own message: the replay keeps the aggregate's
  # zero pattern, so it agrees where the aggregate is nonzero.
  _, lk2, _, _ = _leak([dict(name="prune", rate=0.5)], b=2, num_clients=2,
                       key=5)
  other, _ = client_model.from_leak(lk2, vic, MATCHING)
  assert other == model  # One compiled program serves both (run_many).


def test_dp_sgd_needs_fedsgd():
  vic = models.make_victim("mlp", input_shape=(4,), num_classes=2,
                           hidden=(3,))
  vv = victim_lib.init_variables(vic, jax.random.key(0))
  with pytest.raises(ValueError, match="dp_sgd is implemented for the fedsgd"):
    leak_lib.simulate(vic, vv, jnp.ones((2, 4)), jnp.zeros(2, jnp.int32),
                      jax.random.key(1), protocol="fedavg",
                      protocol_config=dict(lr=0.1),
                      defense=[dict(name="dp_sgd", clip_norm=1.0,
                                    noise_multiplier=1.0)])


def test_inverter_training_messages_use_the_same_dp_sgd():
  from gitjax import inverter_setup
  vic, lk, x, y = _leak(b=4)
  spec = dict(name="dp_sgd", clip_norm=0.05, noise_multiplier=0.0)
  settings = inverter_setup.LeakSettings(
      batch_size=2, defense=inverter_setup.freeze_defense([spec]),
      labels_shared=False, victim_params="fixed", perturb_scale=0.0,
      mean=(0.0,), std=(1.0,), chunk_size=None)
  msgs, _ = inverter_setup.make_messages(vic, lk.variables, x, y,
                                         jax.random.key(0), settings, 3)
  for i in range(2):
    ref = client_model.dp_sgd_message(
        vic, lk.params, lk.state, x[2 * i:2 * i + 2], y[2 * i:2 * i + 2],
        None, clip_norm=0.05, noise_multiplier=0.0)
    _assert_same(jax.tree.map(lambda m, i=i: m[i], msgs), ref, rtol=1e-5,
                 atol=1e-8)


def test_per_leak_estimates_are_traced_and_needed():
  """The observed norm is an array of ``from_leak`` (one program serves
  every leak); a replay without those arrays is refused by name."""
  vic, lk, x, y = _leak([dict(name="clip", max_norm=100.0)])
  _, lk2, _, _ = _leak([dict(name="clip", max_norm=100.0)], key=4)
  model, arrays = client_model.from_leak(lk, vic, GGL)
  model2, arrays2 = client_model.from_leak(lk2, vic, GGL)
  assert model2 == model  # Inactive clipping: each leak's own norm.
  norms = [float(a["estimates"][0]["observed_norm"]) for a in (arrays,
                                                               arrays2)]
  np.testing.assert_allclose(norms[0], defenses.global_norm(lk.message),
                             rtol=1e-5)
  assert abs(norms[0] - norms[1]) > 1e-6
  with pytest.raises(ValueError, match="reads 'observed_norm' from the "
                     "arrays of client_model.from_leak"):
    model.message(lk.params, lk.state, x, y)
