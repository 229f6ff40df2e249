"""The client, and the attacker's model of it, in one place.

The client (``send``): its protocol's message (``protocols``), computed with
DP-SGD's per-example clipping and noise when that is its defense, then its
other defenses (``defenses``) in order. ``leak.simulate`` calls it.

The attacker (``ClientModel``): the same protocol replayed on trial inputs
(differentiable; FedAvg's local steps unrolled), over all clients, followed
by a model of each known defense whose parameters come from the defense
config or are read off the observed message (``estimate``). Per defense:

================  ==========================  ===============================
defense           attacker's model            estimated from the message
================  ==========================  ===============================
prune             keep the observed zero      nonzero pattern; fraction of
                  pattern (``masks="pattern"``)  zeros per tensor
                  or prune each tensor at its
                  observed rate (``"rate"``)
soteria           as prune, or zero the       head-kernel rows that are zero
                  observed zero rows
clip              clip to S (``norms="known"``)  the global norm
                  or to the observed norm
clip_per_layer    per tensor, the same        per-tensor norms
dp_sgd            per-example clipping at C   (C from the config)
                  inside the message; noise
                  as gaussian
gaussian,         nothing, or fresh noise of  (scale from the config)
laplacian         the scale (``noise="add"``)
sign, quantize    nothing, or applied         (bits from the config)
                  (``exact=True``, for
                  gradient-free search)
================  ==========================  ===============================

With an empty defense list, ``estimate(..., detect=True)`` looks for pruning
(most tensors at least 30% exact zeros) and Soteria (a quarter or more of the
head kernel's rows zero) in the message. Gradient matching uses the default
``Style()``; GGL uses ``Style(masks="rate", norms="observed", exact=True)``.
The trial message's input derivatives are taken forward-over-reverse
(``second_order="forward"``, ``victim.batch_grad_fr``; "reverse" is plain
double backprop, the same numbers).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gitjax import defenses
from gitjax import models
from gitjax import protocols
from gitjax import victim as victim_lib

NOISES = ("gaussian", "laplacian", "dp_sgd")


# ----------------------------------------------------------- the client ----


def clip_factors(grads, clip_norm: float) -> jax.Array:
  """[B] factors that clip per-example gradients (leaves [B, ...])."""
  sq = sum(jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), axis=1)
           for g in jax.tree.leaves(grads))  # [B]
  return jnp.minimum(1.0, clip_norm / (jnp.sqrt(sq) + 1e-12))


def dp_sgd_noise_sigma(clip_norm: float, noise_multiplier: float,
                       batch: int) -> float:
  """The noise's standard deviation on DP-SGD's mean gradient."""
  return noise_multiplier * clip_norm / batch


def clipped_sum(victim, params, state, xs, ys, clip_norm: float,
                chunk_size: int | None = None):
  """Sum over the batch of per-example gradients clipped to ``clip_norm``."""
  grads = victim_lib.per_example_grads(victim, params, state, xs, ys,
                                       chunk_size)  # Leaves [B, ...].
  factor = clip_factors(grads, clip_norm)
  return jax.tree.map(lambda g: jnp.tensordot(factor, g, axes=1), grads)


def dp_sgd_message(victim, params, state, xs, ys, key, *, clip_norm: float,
                   noise_multiplier: float, chunk_size: int | None = None):
  """DP-SGD (Abadi et al. 2016): per-example clipping plus Gaussian noise.

  Each example's gradient is clipped to L2 norm ``clip_norm``; the clipped
  gradients are summed, N(0, (noise_multiplier * clip_norm)^2) is added, and
  the sum is divided by B. ``key=None`` leaves the noise out (the attacker's
  model).
  """
  summed = clipped_sum(victim, params, state, xs, ys, clip_norm, chunk_size)
  if key is not None:
    summed = defenses.gaussian_noise(summed, key,
                                     sigma=noise_multiplier * clip_norm)
  return jax.tree.map(lambda g: g / xs.shape[0], summed)


def _dp_spec(spec: list[dict]) -> dict | None:
  dp = [dict(s) for s in spec if s["name"] == "dp_sgd"]
  if not dp:
    return None
  dp[0].pop("name")
  return dp[0]


def send(victim, variables, xs, ys, key, *, protocol: str,
         protocol_config: dict, defense=None, chunk_size=None):
  """What one client sends: its message after its defenses."""
  spec = defenses.as_list(defense)
  dp = _dp_spec(spec)
  params, state = victim_lib.split(variables)
  if dp is not None:
    if protocol != "fedsgd":
      raise ValueError("dp_sgd is implemented for the fedsgd protocol")
    key, sub = jax.random.split(key)
    msg = dp_sgd_message(victim, params, state, xs, ys, sub,
                         chunk_size=chunk_size, **dp)
  else:
    msg = protocols.client_message(victim, params, state, xs, ys, protocol,
                                   protocol_config)
  return defenses.apply(spec, msg, key, victim=victim, variables=variables,
                        xs=xs)


def send_from_examples(grads, batch: int, key, *, defense=None):
  """The FedSGD messages of N clients of ``batch`` examples each, from their
  per-example gradients (leaves [N * batch, ...]): what ``send`` computes,
  batched, for training inverters on many messages. Defenses that need the
  client's inputs (Soteria) are not supported here.
  """
  spec = defenses.as_list(defense)
  if any(s["name"] in defenses.NEEDS_INPUTS for s in spec):
    raise ValueError("send_from_examples cannot apply defenses that need "
                     f"the client's inputs ({sorted(defenses.NEEDS_INPUTS)})")
  dp = _dp_spec(spec)
  if dp is not None:
    factor = clip_factors(grads, dp["clip_norm"])
    grads = jax.tree.map(
        lambda t: t * factor.reshape((-1,) + (1,) * (t.ndim - 1)), grads)
  n = jax.tree.leaves(grads)[0].shape[0] // batch
  g = jax.tree.map(lambda t: t.reshape((n, batch) + t.shape[1:]).mean(1),
                   grads)
  if not spec:
    return g
  keys = jax.random.split(key, n)

  def one(m, k):
    if dp is not None:
      k, sub = jax.random.split(k)
      m = defenses.gaussian_noise(m, sub, sigma=dp_sgd_noise_sigma(
          dp["clip_norm"], dp["noise_multiplier"], batch))
    return defenses.apply(spec, m, k)

  return jax.vmap(one)(g, keys)


# ------------------------------------------------- estimating a defense ----


def head_rows_kept(message) -> list[bool]:
  """Which rows of the head's kernel gradient carry anything."""
  if "head" not in message:
    raise ValueError("the Soteria estimate needs a message with a 'head' "
                     "layer")
  kernel = np.asarray(message["head"]["kernel"])  # [F, C]
  return [bool(v) for v in np.any(kernel != 0, axis=1)]


def estimate(message, spec=(), detect: bool = False) -> list[dict]:
  """The known defenses with their parameters read off ``message``.

  Args:
    message: the observed (defended) message.
    spec: the defense as the attacker knows it (``defenses.as_list`` form,
      usually ``leak.defense``).
    detect: with an empty ``spec``, look for pruning and Soteria.

  Returns:
    One dict per defense, in the client's order: the config's settings plus
    ``rates`` (prune: per-tensor zero fraction), ``keep`` (soteria: [F]
    bools), ``observed_norm`` (clip), ``observed_norms`` (clip_per_layer),
    ``scale`` (noise: the known scale or None).
  """
  leaves = [np.asarray(x) for x in jax.tree.leaves(message)]
  zero_frac = [float(np.mean(x == 0)) for x in leaves]
  out = []
  for s in defenses.as_list(list(spec)):
    s = dict(s)
    name = s["name"]
    if name == "prune":
      s["rates"] = zero_frac
    elif name == "soteria":
      s["keep"] = head_rows_kept(message)
    elif name == "clip":
      s["observed_norm"] = float(defenses.global_norm(message))
    elif name == "clip_per_layer":
      s["observed_norms"] = [float(np.linalg.norm(x)) for x in leaves]
    elif name in ("gaussian", "laplacian"):
      s["scale"] = s.get("sigma", s.get("scale"))
    elif name == "dp_sgd":
      s["scale"] = None  # Divided by B after the sum: unknown to the search.
    out.append(s)
  if not out and detect:
    if np.mean([z >= 0.3 for z in zero_frac]) > 0.5:
      out.append(dict(name="prune", rates=zero_frac))
    elif "head" in message:
      keep = head_rows_kept(message)
      if np.mean(keep) <= 0.75:  # ReLU features leave a few rows at 0.
        out.append(dict(name="soteria", keep=keep))
  return out


def nonzero_pattern(message):
  """1 where the observed message is nonzero, else 0 (the prune mask)."""
  return jax.tree.map(lambda m: (m != 0).astype(m.dtype), message)


# ------------------------------------------------- the attacker's model ----


class Style(NamedTuple):
  """How the attacker models defenses (see the module docstring)."""
  masks: str = "pattern"  # "pattern" | "rate"
  norms: str = "known"  # "known" | "observed"
  noise: str = "none"  # "none" | "add"
  exact: bool = False  # Apply sign and quantization too.


def freeze(x):
  """A JSON-like value as nested sorted tuples (hashable)."""
  if isinstance(x, dict):
    return tuple(sorted((k, freeze(v)) for k, v in x.items()))
  if isinstance(x, (list, tuple)):
    return tuple(freeze(v) for v in x)
  if isinstance(x, (np.floating, np.integer, np.bool_)):
    return x.item()
  if isinstance(x, np.ndarray):  # A setting given as an array: by value.
    return ("ndarray", x.shape, tuple(x.ravel().tolist()))
  return x


# The estimates that differ from leak to leak are traced (``arrays``), so
# one compiled program serves every leak (GGL over a benchmark's images).
_TRACED = {"clip": "observed_norm", "clip_per_layer": "observed_norms",
           "soteria": "keep"}


class ClientModel(NamedTuple):
  """The attacker's replay of the client (hashable: a static jit argument).

  Call ``message(params, state, xs, ys, arrays, key)`` on trial inputs of
  all clients ([K*B, ...]); ``arrays`` are the traced estimates (the
  nonzero pattern, observed norms, Soteria's rows), from ``from_leak``.
  """
  victim: Any
  protocol: str = "fedsgd"
  protocol_config: tuple = ()
  num_clients: int = 1
  defenses: tuple = ()  # ((name, frozen settings), ...)
  style: Style = Style()
  second_order: str = "forward"  # victim.grad_fn: how the message's
  # derivatives are taken ("forward": forward-over-reverse, the faster).
  conv: str | None = None  # The replay's convolutions ("xla", "im2col");
  # None: the victim's own, or no choice (``from_leak``'s ``conv``).

  def client_message(self, params, state, xs, ys):
    """One client's trial message before its defenses (DP-SGD clips)."""
    cfg = dict(self.protocol_config)
    dp = [dict(s) for n, s in self.defenses if n == "dp_sgd"]
    if dp:
      return dp_sgd_message(self.victim, params, state, xs, ys, None,
                            clip_norm=dp[0]["clip_norm"],
                            noise_multiplier=0.0)
    return protocols.client_message(self.victim, params, state, xs, ys,
                                    self.protocol, cfg,
                                    victim_lib.grad_fn(self.second_order))

  def message(self, params, state, xs, ys, arrays=None, key=None):
    """The trial message: all clients aggregated, then modeled defenses."""
    k = self.num_clients
    if k == 1:
      m = self.client_message(params, state, xs, ys)
    else:
      xs_k = xs.reshape((k, -1) + xs.shape[1:])
      ys_k = ys.reshape((k, -1) + ys.shape[1:])
      m = protocols.aggregate(jax.vmap(
          lambda a, b: self.client_message(params, state, a, b))(xs_k, ys_k))
    return self.defend(m, arrays, key)

  def defend(self, m, arrays=None, key=None):
    """The modeled defenses applied to a trial message, in order."""
    st = self.style
    traced = (arrays or {}).get("estimates") or [{}] * len(self.defenses)
    for (name, s), t in zip(self.defenses, traced):
      s = dict(s, **t)
      if name in ("prune", "soteria") and st.masks == "pattern":
        m = jax.tree.map(jnp.multiply, m, arrays["mask"])
      elif name == "prune":
        leaves, treedef = jax.tree.flatten(m)
        m = jax.tree.unflatten(treedef, [defenses.prune_tensor(g, r) for g, r
                                         in zip(leaves, s["rates"])])
      elif name == "soteria":
        m = defenses.keep_head_rows(m, _read(s, "keep", name))
      elif name == "clip":
        known = st.norms == "known" and s.get("max_norm") is not None
        m = defenses.clip(m, max_norm=s["max_norm"] if known
                          else _read(s, "observed_norm", name))
      elif name == "clip_per_layer":
        if st.norms == "known" and s.get("max_norm") is not None:
          m = defenses.clip_per_layer(m, max_norm=s["max_norm"])
        else:
          leaves, treedef = jax.tree.flatten(m)
          m = jax.tree.unflatten(treedef, [
              defenses.clip_tensor(g, n)
              for g, n in zip(leaves, _read(s, "observed_norms", name))])
      elif name in NOISES and st.noise == "add" and s.get("scale") and (
          key is not None):
        key, sub = jax.random.split(key)
        noise = (defenses.laplacian_noise if name == "laplacian"
                 else defenses.gaussian_noise)
        kw = {"scale" if name == "laplacian" else "sigma": s["scale"]}
        m = noise(m, sub, **kw)
      elif name == "sign" and st.exact:
        m = defenses.sign(m)
      elif name == "quantize" and st.exact:
        m = defenses.quantize(m, bits=int(s["bits"]))
    return m


def plain_gradient(model: ClientModel) -> bool:
  """Whether the modeled message is the victim's batch gradient itself:
  FedSGD, one client, and only defenses the style leaves unmodeled (noise
  without ``noise="add"``)."""
  return (model.protocol == "fedsgd" and model.num_clients == 1
          and set(dict(model.protocol_config)) <= {"train"}
          and all(name in ("gaussian", "laplacian")
                  and model.style.noise != "add"
                  for name, _ in model.defenses))


def _read(settings: dict, field: str, name: str):
  if field not in settings:
    raise ValueError(f"the {name} model reads {field!r} from the arrays of "
                     "client_model.from_leak; pass them")
  return settings[field]


def _static_settings(est: dict, style: Style) -> tuple:
  name = est["name"]
  s = {k: v for k, v in est.items() if k not in ("name", _TRACED.get(name))}
  if name == "prune" and style.masks == "pattern":
    s.pop("rates", None)  # The observed pattern (``arrays``) instead.
  return freeze(s)


CONVS = ("auto", "xla", "im2col", "shape")


def replay_conv(conv: str, victim, second_order: str, num_clients: int,
                defense_names) -> str | None:
  """How the replay computes convolutions (None: the victim has no choice).

  "auto" is XLA's convolutions with forward-over-reverse derivatives and
  one client without DP-SGD ("shape" on a CPU: im2col in the layers whose
  kernel outweighs their output map, where XLA's tangent input-gradient
  convolution would reverse and transpose the kernel-sized direction every
  step; ResNet-18 B = 1 1.13x faster), else the platform's default
  (``models.common.resolve_conv("auto")``: im2col on CPU): vmapped weight
  gradients (clients, DP-SGD's per-example clipping) become grouped
  convolutions, slow on XLA:CPU, and so is double backprop through XLA's
  convolutions there (BUILD_NOTES.md, issue 13). The choice never changes
  the function, only its speed and rounding.
  """
  if conv not in CONVS:
    raise ValueError(f"unknown conv {conv!r}; known: {CONVS}")
  if not models.takes_conv(victim):
    return None
  if conv == "auto":
    plain = (second_order == "forward" and int(num_clients) == 1
             and "dp_sgd" not in defense_names)
    if plain:  # On a CPU, im2col where a kernel outweighs its output map.
      conv = "shape" if jax.default_backend() == "cpu" else "xla"
  return models.common.resolve_conv(conv)


def with_derivatives(model: ClientModel, second_order: str,
                     conv: str = "auto") -> ClientModel:
  """``model`` differentiated by ``second_order``, its convolutions
  chosen for it (``replay_conv``)."""
  kind = replay_conv(conv, model.victim, second_order, model.num_clients,
                     [name for name, _ in model.defenses])
  victim = model.victim if kind is None else models.with_conv(model.victim,
                                                               kind)
  return model._replace(victim=victim, second_order=second_order, conv=kind)


def from_leak(leak, victim, style: Style = Style(), detect: bool = False,
              second_order: str = "forward",
              conv: str | None = None) -> tuple[ClientModel, dict]:
  """The attacker's ``ClientModel`` of ``leak`` and its traced arrays.

  ``conv``: the replay's convolutions (``replay_conv``); None keeps the
  victim as given (GGL's population is vmapped: "auto" is for one trial
  or trials run one after another, as gradient matching does).
  """
  if leak.protocol not in protocols.PROTOCOLS:
    raise ValueError(f"unknown protocol {leak.protocol!r}; known: "
                     f"{protocols.PROTOCOLS}")
  victim_lib.grad_fn(second_order)  # Raises on an unknown name.
  ests = estimate(leak.message, leak.defense, detect)
  model = ClientModel(
      victim=victim, protocol=leak.protocol,
      protocol_config=freeze(dict(leak.protocol_config)),
      num_clients=int(leak.num_clients),
      defenses=tuple((e["name"], _static_settings(e, style)) for e in ests),
      style=style, second_order=second_order)
  if conv is not None:
    model = with_derivatives(model, second_order, conv)
  arrays = {}
  if style.masks == "pattern" and any(e["name"] in ("prune", "soteria")
                                      for e in ests):
    arrays["mask"] = nonzero_pattern(leak.message)
  traced = [{_TRACED[e["name"]]: jnp.asarray(e[_TRACED[e["name"]]],
                                             jnp.float32)}
            if _TRACED.get(e["name"]) in e else {} for e in ests]
  if any(traced):
    arrays["estimates"] = traced
  return model, arrays


def summary(model: ClientModel, arrays=None) -> list[dict]:
  """A JSON-able description of the modeled defenses (for run info)."""
  out = []
  traced = (arrays or {}).get("estimates") or [{}] * len(model.defenses)
  for (name, s), t in zip(model.defenses, traced):
    d = {"name": name}
    for k, v in dict(s, **t).items():
      v = np.asarray(v).tolist() if isinstance(v, jax.Array) else v
      if k == "keep":
        v = f"{int(sum(v))}/{len(v)} features"
      elif k == "rates":
        v = f"mean {np.mean(v):.3f}"
      elif k == "observed_norms":
        v = f"{len(v)} tensors"
      elif isinstance(v, tuple):
        v = list(v)
      d[k] = v
    out.append(d)
  return out
