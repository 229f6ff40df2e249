"""Label inference from the head's gradient."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gitjax import leak as leak_lib
from gitjax import models
from gitjax import victim as victim_lib
from gitjax.attacks import labels


_grad = jax.jit(victim_lib.batch_grad, static_argnums=0)


@functools.cache
def _victim(name, num_classes, hidden=None):
  kw = {} if hidden is None else dict(hidden=hidden, activation="relu")
  v = models.make_victim(name, input_shape=(8, 8, 3), num_classes=num_classes,
                         **kw)
  return v, jax.jit(lambda k: victim_lib.init_variables(v, k))


def _case(name, b, seed, num_classes=10, hidden=None):
  v, init = _victim(name, num_classes, hidden)
  k = jax.random.key(seed)
  variables = init(k)
  xs = jax.random.uniform(jax.random.fold_in(k, 1), (b, 8, 8, 3))
  ys = jax.random.randint(jax.random.fold_in(k, 2), (b,), 0, num_classes)
  return v, variables, xs, ys


def test_idlg_is_exact_for_one_image():
  for seed in range(3):
    v, variables, xs, ys = _case("lenet", 1, seed)
    g = _grad(v, variables["params"], {}, xs, ys)
    assert int(labels.idlg(g)[0]) == int(ys[0])
    assert int(labels.infer(g, 1)[0]) == int(ys[0])
    # Without the bias, the kernel's column sums give the same answer.
    no_bias = {"head": {"kernel": g["head"]["kernel"]}}
    assert int(labels.idlg(no_bias)[0]) == int(ys[0])


@pytest.mark.parametrize("name,hidden", [("lenet", None), ("mlp", (32,))])
def test_llg_counts_exact_for_batches_at_random_init(name, hidden):
  for seed, b in [(0, 4), (1, 8), (2, 16)]:
    v, variables, xs, ys = _case(name, b, seed, hidden=hidden)
    g = _grad(v, variables["params"], {}, xs, ys)
    got = labels.infer(g, b, v, variables, method="llg")
    np.testing.assert_array_equal(got, np.sort(np.asarray(ys)))
    assert labels.infer(g, b, v, variables).shape == (b,)  # auto = llg.


def test_llg_beats_zero_input_estimate_on_lenet():
  # DLG's LeNet has large random-init logits: the softmax on a zero input
  # is a poor estimate of the batch's mean softmax, the feature mean is not.
  wins = {"llg": 0, "bias_corrected": 0}
  for seed in range(3):
    v, variables, xs, ys = _case("lenet", 32, seed)
    g = _grad(v, variables["params"], {}, xs, ys)
    for m in wins:
      got = labels.infer(g, 32, v, variables, method=m)
      wins[m] += bool(np.all(np.asarray(got) == np.sort(np.asarray(ys))))
  assert wins["llg"] == 3 and wins["bias_corrected"] < 3


def test_from_leak_on_fedavg_and_multi_client(key):
  v, variables, xs, ys = _case("lenet", 8, 3)
  leak, _ = leak_lib.simulate(
      v, variables, xs, ys, key, protocol="fedavg",
      protocol_config=dict(lr=1e-3, epochs=2, local_batch_size=4))
  np.testing.assert_array_equal(labels.from_leak(leak, v),
                                np.sort(np.asarray(ys)))
  leak, _ = leak_lib.simulate(v, variables, xs, ys, key, num_clients=2)
  np.testing.assert_array_equal(labels.from_leak(leak, v),
                                np.sort(np.asarray(ys)))


def test_label_counts_sum_to_batch_size():
  msg = {"head": {"bias": jnp.asarray([0.3, -0.6, 0.2, 0.1]),
                  "kernel": jnp.zeros((3, 4))}}
  counts = labels.label_counts(msg, 4)
  assert counts.sum() == 4 and counts[1] == 3


def test_label_errors():
  msg = {"head": {"kernel": jnp.zeros((3, 4))}}
  with pytest.raises(ValueError, match="iDLG label inference needs batch_size"):
    labels.infer(msg, 2, method="idlg")
  with pytest.raises(ValueError, match="unknown label method 'magic'"):
    labels.infer(msg, 2, method="magic")
  with pytest.raises(ValueError, match="needs the victim"):
    labels.infer(msg, 2, method="llg")
  with pytest.raises(ValueError, match="'head' layer"):
    labels.idlg({"dense0": {}})
  with pytest.raises(ValueError, match="needs a head with a bias"):
    labels.label_counts(msg, 2)
  bias_msg = {"head": {"bias": jnp.zeros(4)}}
  with pytest.raises(ValueError, match=r"mean_probs has shape \(3,\)"):
    labels.label_counts(bias_msg, 2, np.ones(3) / 3)


def test_zeroed_bias_gradient_gives_labels_not_nan():
  # 90% pruning can zero the whole head bias gradient: the counts must still
  # be B valid labels, and iDLG falls back to the kernel.
  v, variables, xs, ys = _case("lenet", 4, 5)
  g = _grad(v, variables["params"], {}, xs, ys)
  g = jax.tree.map(lambda t: t, g)
  g["head"]["bias"] = jnp.zeros_like(g["head"]["bias"])
  probs = labels.feature_mean_softmax(g, variables["params"]["head"])
  assert np.all(np.isfinite(np.asarray(probs)))
  got = np.asarray(labels.infer(g, 4, v, variables, method="llg"))
  assert got.shape == (4,) and np.all((got >= 0) & (got < 10))
  counts = labels.label_counts({"head": {"bias": jnp.full((4,), jnp.nan)}}, 3)
  assert counts.sum() == 3 and np.all(counts >= 0)
  v1, variables1, x1, y1 = _case("lenet", 1, 0)
  g1 = _grad(v1, variables1["params"], {}, x1, y1)
  g1["head"]["bias"] = jnp.zeros_like(g1["head"]["bias"])
  assert int(labels.idlg(g1)[0]) == int(y1[0])
