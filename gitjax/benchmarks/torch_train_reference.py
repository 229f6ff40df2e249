"""PyTorch references for two training steps (``train_speed``): WGAN-GP here,
the GIT inverter's step in ``torch_git_reference``.

torch is imported lazily, as in ``torch_reference`` (whose ``available``,
``resolve``, ``setup``, ``matmul_flops_per_s`` and ``MismatchError`` the
benchmark uses). Every torch model here is rebuilt from gitjax's module and
gets gitjax's parameters copied in by ``load_params``: a torch submodule is
named after the gitjax module it mirrors (``BatchNorm_1``,
``conv2.conv2.ResUnit_0.Conv_1``), each torch parameter takes exactly one
gitjax leaf (kernels HWIO -> OIHW; a flax ConvTranspose kernel, which
lax.conv_transpose applies unflipped, -> torch's [in, out, kh, kw] flipped;
Dense [in, out] -> [out, in]; rows or columns of a Dense that meets an NHWC
flatten reordered to NCHW, ``flax_rows``/``flax_cols``), and a leaf left
over or a count that differs is a ``MismatchError``.

``WGANStep``: ``train_prior.train_step`` of the DCGAN prior in torch:
``n_critic`` critic updates, each on its own real batch with fresh z and
interpolation eps: loss ``-(E D(real) - E D(fake)) + gp_weight * E (|grad_x
D(mix)| - 1)^2 + drift * E D(real)^2`` with ``|g| = sqrt(sum g^2 + 1e-12)``
per example, the input gradient taken with ``create_graph`` (double
backprop), the fakes made without a graph (gitjax's ``stop_gradient``);
then one generator update on ``-E D(G(z))``. Adam (``b1``, ``b2``, eps
1e-8) on each side. BatchNorm runs in train mode on the batch statistics
(biased variance, eps 1e-5); like gitjax, only the generator update's
forward moves the running statistics (momentum 0.9 of flax, biased
variance), which the losses never read. The draws (z, eps) are torch's
own when timing; ``wgan_draws`` gives gitjax's for the checks. One
convention differs: at exactly 0, leaky ReLU's derivative is 1 in jax and
0.2 in torch (``F.leaky_relu``, kept for its speed); a pre-activation
exactly 0 needs zero biases and an input patch exactly 0 (a tiny
generator's ReLUs can zero a whole pixel), and then the critic's gradients
differ there.
"""

import functools

import jax
import numpy as np

from gitjax.benchmarks.torch_reference import MismatchError
from gitjax.benchmarks.torch_runtime import _torch  # One lazy import.


def chw_order(h: int, w: int, c: int) -> np.ndarray:
  """Position in an (h, w, c)-flattened map of each element of the (c, h,
  w)-flattened one: NCHW flatten order -> gitjax's NHWC rows."""
  return np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)


def _flax_leaf(module, attr: str, node) -> tuple[str, np.ndarray]:
  """(gitjax leaf name, value in torch's layout) for a torch parameter."""
  nn = _torch().nn
  rows = getattr(module, "flax_rows", None)
  cols = getattr(module, "flax_cols", None)
  if attr == "weight" and isinstance(module, nn.Linear):
    k = np.asarray(node["kernel"], np.float32)
    k = k if rows is None else k[rows]
    return "kernel", (k if cols is None else k[:, cols]).T
  if attr == "weight" and isinstance(module, nn.ConvTranspose2d):
    k = np.asarray(node["kernel"], np.float32)[::-1, ::-1]
    return "kernel", k.transpose(2, 3, 0, 1)
  if attr == "weight" and isinstance(module, nn.Conv2d):
    return "kernel", np.asarray(node["kernel"], np.float32).transpose(
        3, 2, 0, 1)
  name = "scale" if attr == "weight" else attr  # BatchNorm's weight.
  v = np.asarray(node[name], np.float32)
  return name, v if cols is None else v[cols]


def _node(tree, path: str):
  for k in filter(None, path.split(".")):
    tree = tree[k]
  return tree


def load_params(model, params, what: str) -> int:
  """Copies the gitjax ``params`` tree into ``model``; returns the count.

  Raises:
    MismatchError: a torch parameter without its gitjax leaf (or of another
      shape), a gitjax leaf no torch parameter took, or unequal counts.
  """
  torch = _torch()
  used = set()
  with torch.no_grad():
    for name, p in model.named_parameters():
      path, _, attr = name.rpartition(".")
      try:
        leaf, value = _flax_leaf(model.get_submodule(path), attr,
                                 _node(params, path))
      except KeyError:
        raise MismatchError(f"{what}: torch parameter {name} has no gitjax "
                            "leaf") from None
      if value.shape != tuple(p.shape):
        raise MismatchError(f"{what}: {name}: gitjax {value.shape} vs torch "
                            f"{tuple(p.shape)}")
      p.copy_(torch.from_numpy(np.array(value, np.float32)))  # A copy.
      used.add(f"{path}.{leaf}".strip("."))
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  leaves = {".".join(str(k.key) for k in path): a for path, a in flat}
  if set(leaves) - used:
    raise MismatchError(f"{what}: gitjax parameters without a torch twin: "
                        f"{sorted(set(leaves) - used)[:4]}")
  theirs = sum(int(np.size(a)) for a in leaves.values())
  ours = sum(p.numel() for p in model.parameters())
  if ours != theirs:
    raise MismatchError(f"{what}: parameter count: gitjax {theirs:,}, torch "
                        f"{ours:,}")
  return ours


def set_grads(params, grads) -> None:
  for p, g in zip(params, grads):
    p.grad = g


def compare(label: str, ours: dict, ref: dict, rtol: float,
            atol: float) -> dict:
  """Checks scalars: ``|ours[k] - ref[k]| <= atol + rtol * |ours[k]|``.

  Returns the absolute differences (JSON-able). Raises MismatchError, one
  line naming ``label``, the key and both values, on the first failure.
  """
  out = {}
  for k, v in ours.items():
    v, r = float(v), float(ref[k])
    out[k] = abs(v - r)
    if not out[k] <= atol + rtol * abs(v):  # Also catches NaN.
      raise MismatchError(f"torch reference mismatch on {label}: {k} gitjax "
                          f"{v:.7g}, torch {r:.7g} (|diff| {out[k]:.3g} > "
                          f"{atol:g} + {rtol:g} * |gitjax|)")
  return out


# ------------------------------------------------------------- WGAN-GP ----


def _num_halvings(image_size: int) -> int:
  return int(round(np.log2(image_size / 4)))


def _batch_norm(bn, x, update: bool):
  """flax BatchNorm in train mode; ``update`` moves the running statistics
  as flax does (momentum 0.9, biased variance)."""
  torch = _torch()
  if update:
    with torch.no_grad():
      dims = [0] + list(range(2, x.ndim))
      bn.running_mean.mul_(0.9).add_(x.mean(dims), alpha=0.1)
      bn.running_var.mul_(0.9).add_(x.var(dims, unbiased=False), alpha=0.1)
  return torch.nn.functional.batch_norm(x, None, None, bn.weight, bn.bias,
                                        True, 0.0, bn.eps)


@functools.cache
def _wgan_classes():
  """(DCGAN, Critic): ``generators.DCGAN`` and ``generators.Critic``."""
  torch = _torch()
  nn, F = torch.nn, torch.nn.functional

  class DCGAN(nn.Module):
    """Linear + BN + ReLU, ConvTranspose(k2, s2) + BN + ReLU, to_rgb, tanh."""

    def __init__(self, latent_dim, width, image_size, channels):
      super().__init__()
      self.width = width
      self.fc = nn.Linear(latent_dim, 16 * width)
      bns = [nn.BatchNorm1d(16 * width)]
      # The fc's outputs and their BN come in NCHW order: no transpose.
      self.fc.flax_cols = bns[0].flax_cols = chw_order(4, 4, width)
      self.ups, c = [], width
      for i in range(_num_halvings(image_size) - 1):
        cout = max(c // 2, 1)
        self.add_module(f"ConvTranspose_{i}", nn.ConvTranspose2d(c, cout, 2, 2))
        self.ups.append(f"ConvTranspose_{i}")
        bns.append(nn.BatchNorm2d(cout))
        c = cout
      for i, bn in enumerate(bns):
        self.add_module(f"BatchNorm_{i}", bn)
      self.to_rgb = nn.ConvTranspose2d(c, channels, 2, 2)

    def forward(self, z, update_stats=False):
      bn = lambda i, x: _batch_norm(getattr(self, f"BatchNorm_{i}"), x,
                                    update_stats)
      x = F.relu(bn(0, self.fc(z))).view(z.shape[0], self.width, 4, 4)
      for i, up in enumerate(self.ups):
        x = F.relu(bn(i + 1, getattr(self, up)(x)))
      return torch.tanh(self.to_rgb(x))

  class Critic(nn.Module):
    """3x3 convs, leaky ReLU 0.2, 2x2 average pooling, Dense to 1."""

    def __init__(self, width, image_size, channels):
      super().__init__()
      n = _num_halvings(image_size)
      c, cin = max(width // 2**(n - 1), 1), channels
      self.n = n
      for i in range(n):
        self.add_module(f"conv{i}", nn.Conv2d(cin, c, 3, padding=1))
        cin, c = c, min(c * 2, width)
      s = image_size // 2**n
      self.out = nn.Linear(cin * s * s, 1)
      self.out.flax_rows = chw_order(s, s, cin)

    def forward(self, x):
      for i in range(self.n):
        x = F.avg_pool2d(F.leaky_relu(getattr(self, f"conv{i}")(x), 0.2), 2)
      return self.out(x.flatten(1))[:, 0]

  return DCGAN, Critic


class WGANStep:
  """One ``train_prior.train_step`` in torch, in place (module docstring).

  ``step(reals, draws=None)``: reals [n_critic, B, C, H, W] in [-1, 1];
  ``draws`` gitjax's (``wgan_draws``, NCHW) or None for torch's own.
  Returns the metrics of ``train_step`` (the last critic update's).
  """

  def __init__(self, gen, critic, *, lr_generator, lr_critic, b1, b2,
               gp_weight, drift, batch, latent_dim):
    torch = _torch()
    self.gen, self.critic = gen, critic
    self.g_params = list(gen.parameters())
    self.c_params = list(critic.parameters())
    adam = lambda ps, lr: torch.optim.Adam(ps, lr=lr, betas=(b1, b2),
                                           eps=1e-8)
    self.g_opt = adam(self.g_params, lr_generator)
    self.c_opt = adam(self.c_params, lr_critic)
    self.gp_weight, self.drift = float(gp_weight), float(drift)
    self.batch, self.latent_dim = int(batch), int(latent_dim)
    self.dev = self.g_params[0].device

  def critic_loss(self, real, fake, eps):
    torch = _torch()
    d_real, d_fake = self.critic(real), self.critic(fake)
    mix = (eps * real + (1.0 - eps) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(self.critic(mix).sum(), [mix],
                               create_graph=True)
    norms = torch.sqrt(g.square().sum(dim=(1, 2, 3)) + 1e-12)
    gp = (norms - 1.0).square().mean()
    w = d_real.mean() - d_fake.mean()
    loss = -w + self.gp_weight * gp + self.drift * d_real.square().mean()
    return loss, w, gp

  def step(self, reals, draws=None):
    torch = _torch()
    b, dev = self.batch, self.dev
    for i in range(reals.shape[0]):
      if draws is None:
        z = torch.randn(b, self.latent_dim, device=dev)
        eps = torch.rand(b, 1, 1, 1, device=dev)
      else:
        z, eps = draws[0][i], draws[1][i]
      with torch.no_grad():
        fake = self.gen(z)
      loss, w, gp = self.critic_loss(reals[i], fake, eps)
      set_grads(self.c_params, torch.autograd.grad(loss, self.c_params))
      self.c_opt.step()
    z = (torch.randn(b, self.latent_dim, device=dev) if draws is None
         else draws[2])
    g_loss = -self.critic(self.gen(z, update_stats=True)).mean()
    set_grads(self.g_params, torch.autograd.grad(g_loss, self.g_params))
    self.g_opt.step()
    return dict(critic_loss=loss.detach(), wasserstein=w.detach(),
                gp=gp.detach(), gen_loss=g_loss.detach())


def build_dcgan(gen, variables, dev: str = "cpu"):
  """The torch DCGAN of a gitjax ``dcgan`` Generator with ``variables``
  (params and batch_stats) copied in."""
  if gen.name != "dcgan":
    raise ValueError(f"no torch reference for generator {gen.name!r}")
  c = gen.config
  model = _wgan_classes()[0](c["latent_dim"], c["width"], c["image_size"],
                             c["channels"])
  load_params(model, variables["params"], "dcgan")
  torch = _torch()
  with torch.no_grad():
    for name, b in model.named_buffers():
      path, _, attr = name.rpartition(".")
      key = {"running_mean": "mean", "running_var": "var"}.get(attr)
      if key is not None:
        v = np.asarray(_node(variables["batch_stats"], path)[key], np.float32)
        cols = getattr(model.get_submodule(path), "flax_cols", None)
        b.copy_(torch.from_numpy(np.array(v if cols is None else v[cols])))
  return model.to(dev)


def build_critic(width: int, image_size: int, channels: int, params,
                 dev: str = "cpu"):
  """The torch twin of ``generators.make_critic(width, ...)``."""
  model = _wgan_classes()[1](width, image_size, channels)
  load_params(model, params, "critic")
  return model.to(dev)


def make_wgan_step(models, state, prior, dev: str = "cpu") -> WGANStep:
  """The torch twin of ``train_prior.train_step`` from gitjax's ``state``.

  Args:
    models: ``prior_setup.make_models(prior)``.
    state: its training state (copied: gitjax's step donates it).
    prior: the prior config (critic width, optimizer, batch, gp, drift).
    dev: the torch device.
  """
  gen = models.gen
  h, _, c = gen.image_shape
  opt = dict(prior.optimizer)
  return WGANStep(
      build_dcgan(gen, state["gen"], dev),
      build_critic(prior.critic.width, h, c, state["critic"]["params"], dev),
      lr_generator=opt["lr_generator"], lr_critic=opt["lr_critic"],
      b1=opt["b1"], b2=opt["b2"], gp_weight=prior.gp_weight,
      drift=prior.drift, batch=prior.batch_size, latent_dim=gen.latent_dim)


def wgan_draws(key, n_critic: int, batch: int, latent_dim: int,
               dev: str = "cpu"):
  """The (zs [n_critic, B, latent], eps [n_critic, B, 1, 1, 1], z_gen [B,
  latent]) that ``train_prior.train_step`` draws from ``key``, as torch
  tensors: its own key splits, replayed."""
  torch = _torch()
  k_critic, k_gen = jax.random.split(key)
  zs, eps = [], []
  for k in jax.random.split(k_critic, n_critic):
    kz, ke = jax.random.split(k)
    zs.append(jax.random.normal(kz, (batch, latent_dim)))
    eps.append(jax.random.uniform(ke, (batch, 1, 1, 1)))
  put = lambda a: torch.from_numpy(np.array(a, np.float32)).to(dev)
  return (put(np.stack(zs)), put(np.stack(eps)),
          put(jax.random.normal(k_gen, (batch, latent_dim))))


def nchw(x, dev: str = "cpu"):
  """[..., H, W, C] array -> float32 torch [..., C, H, W] on ``dev``."""
  a = np.moveaxis(np.asarray(x, np.float32), -1, -3)
  return _torch().from_numpy(np.array(a)).to(dev)  # A writable copy.
