"""A PyTorch reference for one GIT inverter training step (``train_speed``).

``GITStep.step`` is ``train_inverter.make_train_step``'s step for a LeNet
victim with fixed parameters, B = 1 image per message, no defense and no
shared labels, in torch:

1. N images in [0, 1] drawn from the training set on the device (torch: an
   epoch permutation, sliced; gitjax: two permutations per step, indexed);
2. the messages: each image's gradient of the victim's cross-entropy on its
   label (``torch.func.vmap(torch.func.grad(...))``), on standardized
   images ``(x - mean) / std``;
3. the GIT inverter's forward on them (``gitjax.inverter.GIT``: conditioning
   on the per-tensor log-norms, a ``DenseInverse`` block for the head, then
   one ``ConvInverse`` block per conv layer in reverse order: error maps
   from the previous estimate, back-projected through the transposed
   convolution whose kernel is the leaked gradient, then ``depth`` pre-norm
   residual units; a 3x3 conv to the image and a sigmoid);
4. the MSE to the images (B = 1: no assignment to match);
5. its gradient, clipped to global norm ``grad_clip`` (optax's
   ``clip_by_global_norm``: scaled by ``clip / norm`` when ``norm >=
   clip``), and AdamW (0.9, 0.999, eps 1e-8, decoupled ``weight_decay``) at
   optax's ``warmup_cosine_decay_schedule`` learning rate.

Activations are NCHW. Each gitjax (h, w, c) reshape of a vector state and
each kernel-gradient flatten reads the same elements in torch's order: the
LeNet flattens its last map NHWC (so the head's gradient rows are gitjax's),
and the Dense that reads a flattened kernel gradient gets its rows permuted
(``flax_rows``). gitjax's LayerNorm (eps 1e-6, E[x^2] - E[x]^2 variance)
and tanh-approximated GELU are written out; ``jax.image.resize``'s linear
upsampling is torch's bilinear with half-pixel centers. The back-projection
is one grouped ``conv_transpose2d`` (groups = N, the heads as its batch):
on 1 CPU thread at the cpu budget's shapes, forward and backward, it took
21-35 ms per layer against 31-35 ms for gitjax's form (a batched matmul
and the adjoint of patch extraction, ``F.fold``).
"""

import functools
import math

import jax
import numpy as np

from gitjax import inverter as inverter_lib
from gitjax import inverter_setup
from gitjax import layer_trace
from gitjax.benchmarks import torch_train_reference as ttr
from gitjax.benchmarks.torch_runtime import _torch  # One lazy import.

ACTIVATIONS = ("sigmoid", "relu", "tanh")


def supported(setup) -> str | None:
  """Why ``GITStep`` cannot run this ``inverter_setup.Setup``, or None."""
  lk = setup.leak
  if setup.victim.name != "lenet":
    return f"victim {setup.victim.name!r} (the torch step has LeNet only)"
  if dict(setup.victim.config).get("activation") not in ACTIVATIONS:
    return f"LeNet activation {setup.victim.config.get('activation')!r}"
  if not isinstance(setup.inverter, inverter_lib.GIT):
    return f"inverter {type(setup.inverter).__name__} (GIT only)"
  if (lk.batch_size, lk.defense, lk.labels_shared, lk.victim_params) != (
      1, (), False, "fixed"):
    return ("leak settings other than B = 1, no defense, no shared labels, "
            "fixed victim parameters")
  return None


def schedule(train: dict):
  """``inverter_setup.make_train_optimizer``'s learning rate at update t."""
  steps, lr = int(train["num_steps"]), float(train["lr"])
  warmup = min(int(train.get("warmup_steps", 0)), max(steps - 1, 0))
  decay = max(steps, warmup + 1) - warmup
  end = lr * train.get("final_lr_fraction", 0.01)

  def at(t: int) -> float:
    if t < warmup:
      return lr * t / warmup
    frac = min(t - warmup, decay) / decay
    return end + (lr - end) * 0.5 * (1.0 + math.cos(math.pi * frac))

  return at, warmup


def _unit_norm(t, dims):
  norm = t.square().sum(dim=dims, keepdim=True).sqrt()
  return t / (norm + 1e-20), (norm + 1e-20).log()


def _rms_normalize(t):
  dims = tuple(range(1, t.ndim))
  return t / (t.square().mean(dim=dims, keepdim=True).sqrt() + 1e-12)


def _gelu(x):
  return _torch().nn.functional.gelu(x, approximate="tanh")


@functools.cache
def _classes():
  """The torch modules: LeNet, LayerNorm, ResUnit, DenseInverse,
  ConvInverse, GIT."""
  torch = _torch()
  nn, F = torch.nn, torch.nn.functional

  class LeNet(nn.Module):
    """``gitjax.models.lenet`` on NCHW input, flattened NHWC for the head."""

    def __init__(self, layers, activation):
      super().__init__()
      self.act = getattr(torch, activation)
      self.convs = []
      for spec in layers[:-1]:
        k, _, cin, cout = spec.kernel_shape
        _, stride, pad = spec.conv[:3]
        self.add_module(spec.path[0], nn.Conv2d(cin, cout, k, stride, pad))
        self.convs.append(spec.path[0])
      self.head = nn.Linear(*layers[-1].kernel_shape)

    def forward(self, x):
      for name in self.convs:
        x = self.act(getattr(self, name)(x))
      return self.head(x.permute(0, 2, 3, 1).flatten(1))

  class LayerNorm(nn.Module):
    """flax LayerNorm over the channels of an NCHW map."""

    def __init__(self, c):
      super().__init__()
      self.scale = nn.Parameter(torch.ones(c))
      self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x):
      mean = x.mean(1, keepdim=True)
      var = F.relu(x.square().mean(1, keepdim=True) - mean.square())
      y = (x - mean) * torch.rsqrt(var + 1e-6)
      return y * self.scale[:, None, None] + self.bias[:, None, None]

  conv3 = lambda cin, cout: nn.Conv2d(cin, cout, 3, padding=1)

  class ResUnit(nn.Module):

    def __init__(self, width):
      super().__init__()
      self.LayerNorm_0 = LayerNorm(width)
      self.Conv_0, self.Conv_1 = conv3(width, width), conv3(width, width)

    def forward(self, x):
      y = _gelu(self.Conv_0(_gelu(self.LayerNorm_0(x))))
      return x + self.Conv_1(y)

  class DenseInverse(nn.Module):
    """``inverter.DenseInverse`` without a previous state (the head)."""

    def __init__(self, spec, heads, channels, cond_dim):
      super().__init__()
      f_in, f_out = spec.kernel_shape
      self.directions = nn.Parameter(torch.zeros(f_out, heads))
      self.Dense_0 = nn.Linear(cond_dim + 2, channels)
      self.Dense_1 = nn.Linear(1 + heads + channels, 4 * channels)
      self.Dense_2 = nn.Linear(4 * channels, channels)

    def forward(self, g, d, cond):  # g [N, F_out, F_in], d [N, F_out]
      n, _, f_in = g.shape
      exact = torch.einsum("noi,no->ni", g, d) / (
          d.square().sum(-1, keepdim=True) + 1e-20)
      exact = 10.0 * torch.tanh(exact / 10.0)
      g_n, g_log = _unit_norm(g, (1, 2))
      d_n, d_log = _unit_norm(d, (1,))
      deltas = d_n[:, :, None] * self.directions[None]  # [N, F_out, heads]
      back = _rms_normalize(torch.einsum("noi,noh->nih", g_n, deltas))
      glob = _gelu(self.Dense_0(torch.cat(
          [cond, g_log.reshape(n, 1), d_log], -1)))
      x = torch.cat([exact[..., None], back,
                     glob[:, None].expand(n, f_in, glob.shape[-1])], -1)
      return self.Dense_2(_gelu(self.Dense_1(x)))  # [N, F_in, c]

  class ConvInverse(nn.Module):
    """``inverter.ConvInverse``; the previous state is NCHW with
    ``prev_c`` channels at the layer's output size."""

    def __init__(self, spec, git, prev_c):
      super().__init__()
      k, _, c_in, c_out = spec.kernel_shape
      self.spec, self.heads = spec, git.heads
      w, i = git.width, 0
      self.dense_kernel = k * k * c_in * c_out <= git.max_dense_kernel
      if self.dense_kernel:
        self.Dense_0 = nn.Linear(k * k * c_in * c_out, w)
        # Torch's gradient [C_out, C_in, k, k] flattened, in gitjax's rows.
        self.Dense_0.flax_rows = np.arange(k * k * c_in * c_out).reshape(
            k, k, c_in, c_out).transpose(3, 2, 0, 1).reshape(-1)
        i = 1
      # The Dense of the global features, then the two per-channel biases.
      self.dense = [f"Dense_{i + j}" for j in range(3)]
      n_glob = git.cond_dim + 2 + k * k * c_in + (w if i else 0)
      for name, n_in in zip(self.dense, (n_glob, w + c_out, w + c_out)):
        self.add_module(name, nn.Linear(n_in, w))
      self.Conv_0 = conv3(prev_c, w)
      self.Conv_1 = conv3(w, c_out * git.heads)
      self.Conv_3 = conv3(prev_c + git.heads * c_in, w)
      self.units = [f"ResUnit_{j}" for j in range(git.depth)]
      for name in self.units:
        self.add_module(name, ResUnit(w))

    def back_project(self, g, deltas):
      """Per-example transposed convolution: g [N, C_out, C_in, k, k],
      deltas [N, C_out * heads, H_out, W_out] (channel o * heads + h) ->
      [N, heads * C_in, H_in, W_in] (channel h * C_in + i)."""
      n, c_out, c_in, k, _ = g.shape
      h_in, w_in, _ = self.spec.input_shape
      h, w, _ = self.spec.output_shape
      _, s, p = self.spec.conv[:3]
      d = deltas.reshape(n, c_out, self.heads, h, w).permute(2, 0, 1, 3, 4)
      y = F.conv_transpose2d(
          d.reshape(self.heads, n * c_out, h, w),
          g.reshape(n * c_out, c_in, k, k), stride=s, padding=p, groups=n,
          output_padding=(h_in - ((h - 1) * s - 2 * p + k),
                          w_in - ((w - 1) * s - 2 * p + k)))
      return y.reshape(self.heads, n, c_in, h_in, w_in).transpose(
          0, 1).reshape(n, self.heads * c_in, h_in, w_in)

    def forward(self, prev, g, d, cond):
      n, c_out = g.shape[:2]
      g_n, g_log = _unit_norm(g, (1, 2, 3, 4))
      d_n, d_log = _unit_norm(d, (1,))
      summary = torch.einsum("noiab,no->nabi", g_n, d_n).reshape(n, -1)
      glob = [cond, g_log.reshape(n, 1), d_log, summary]
      if self.dense_kernel:
        glob.append(_gelu(self.Dense_0(g_n.reshape(n, -1))))
      dense = [getattr(self, name) for name in self.dense]
      glob = _gelu(dense[0](torch.cat(glob, -1)))
      glob = torch.cat([glob, d_n * math.sqrt(c_out)], -1)
      x = _gelu(self.Conv_0(prev) + dense[1](glob)[:, :, None, None])
      back = _rms_normalize(self.back_project(g_n, self.Conv_1(x)))
      h_in, w_in, _ = self.spec.input_shape
      up = prev
      if prev.shape[-2:] != (h_in, w_in):
        up = F.interpolate(prev, size=(h_in, w_in), mode="bilinear",
                           align_corners=False)
      x = self.Conv_3(torch.cat([up, back], 1))
      x = x + dense[2](glob)[:, :, None, None]
      for name in self.units:
        x = getattr(self, name)(x)
      return x  # [N, width, H_in, W_in]

  class GIT(nn.Module):
    """``inverter.GIT`` for a LeNet at B = 1; messages are a dict of torch
    parameter names ("conv0.weight") to [N, ...] gradients."""

    def __init__(self, git, leaf_names):
      super().__init__()
      self.leaf_names = leaf_names
      self.Dense_0 = nn.Linear(len(leaf_names) + 1, git.cond_dim)
      self.Dense_1 = nn.Linear(git.cond_dim, git.cond_dim)
      self.chain, prev_c = [], None
      for group in reversed(git.groups):
        (spec,) = group.layers
        if spec.kind == "dense":
          block = DenseInverse(spec, git.heads, git.channels, git.cond_dim)
        else:
          c_flat = spec.output_shape[-1] * git.channels
          block = ConvInverse(spec, git, prev_c or c_flat)
          prev_c = git.width
        outer = nn.Module()
        outer.add_module(group.name, block)
        self.add_module(group.name, outer)
        self.chain.append((group.name, spec))
      self.to_image = conv3(git.width, git.image_shape[-1])

    def forward(self, msgs):
      leaves = [msgs[k] for k in self.leaf_names]
      n = leaves[0].shape[0]
      logs = torch.stack([(l.reshape(n, -1).square().sum(-1).sqrt() + 1e-20)
                          .log() for l in leaves], -1)
      mean_log = logs.mean(-1, keepdim=True)
      cond = _gelu(self.Dense_0(torch.cat([logs - mean_log, mean_log / 10.0],
                                          -1)))
      cond = _gelu(self.Dense_1(cond))
      state = None
      for name, spec in self.chain:
        block = getattr(getattr(self, name), name)
        g, d = msgs[f"{name}.weight"], msgs[f"{name}.bias"]
        if state is None:
          state = block(g, d, cond)
        else:
          if state.ndim == 3:  # [N, F, c] -> NHWC (h, w, ch * c) -> NCHW.
            h, w, _ = spec.output_shape
            state = state.reshape(n, h, w, -1).permute(0, 3, 1, 2)
          state = block(state, g, d, cond)
      return torch.sigmoid(self.to_image(state))  # [N, C, H, W] (B = 1).

  return LeNet, GIT


def _check_structure(setup) -> tuple:
  """The victim's layers, or ValueError where the torch GIT differs."""
  why = supported(setup)
  if why:
    raise ValueError(f"no torch GIT step for {why}")
  layers = layer_trace.victim_layers(setup.victim)
  git = setup.inverter
  kinds = [s.kind for s in layers]
  if kinds[-1] != "dense" or "dense" in kinds[:-1] or any(
      len(g.layers) != 1 or g.layers[0].bias_path is None
      for g in git.groups):
    raise ValueError("the torch GIT needs single-layer groups with biases, "
                     "convs then one Dense head")
  for s in layers[:-1]:
    h_in, w_in, _ = s.input_shape
    h, w, _ = s.output_shape
    if h > h_in or w > w_in or not isinstance(s.conv[1], int):
      raise ValueError("the torch GIT needs downsampling convs")
  return layers


def build(setup, inverter_params, dev: str = "cpu"):
  """(LeNet, GIT, leaf names): the torch twins of ``setup.victim`` (with
  ``setup.variables``) and of ``setup.inverter`` (with ``inverter_params``,
  a TrainState's ``params``), parameter counts checked."""
  layers = _check_structure(setup)
  lenet_cls, git_cls = _classes()
  lenet = lenet_cls(layers, setup.victim.config["activation"])
  ttr.load_params(lenet, setup.variables["params"], "lenet")
  flat = jax.tree_util.tree_flatten_with_path(setup.variables["params"])[0]
  names = [".".join(str(k.key) for k in path[:-1]) + "." + (
      "weight" if path[-1].key == "kernel" else "bias") for path, _ in flat]
  git = git_cls(setup.inverter, names)
  ttr.load_params(git, inverter_params["params"], "git inverter")
  return lenet.to(dev), git.to(dev), names


class GITStep:
  """One GIT training step in torch, in place (see the module docstring).

  ``step(idx=None)`` trains on the images at ``idx`` (gitjax's [N]
  indices, for the checks) or on the next slice of its own epoch
  permutation; returns (MSE loss, gradient norm before clipping), as
  tensors.
  """

  def __init__(self, lenet, git, images, labels, *, batch, mean, std,
               train: dict, dev: str = "cpu"):
    torch = _torch()
    self.lenet, self.git, self.batch = lenet, git, int(batch)
    self.params = list(git.parameters())
    self.opt = torch.optim.AdamW(self.params, lr=0.0, betas=(0.9, 0.999),
                                 eps=1e-8,
                                 weight_decay=train.get("weight_decay", 0.0))
    self.lr, _ = schedule(train)
    self.t = 0  # Updates made: the schedule's count.
    self.clip = float(train.get("grad_clip", 1.0))
    self.images = ttr.nchw(images, dev)  # [M, C, H, W] in [0, 1].
    self.labels = torch.from_numpy(np.array(labels, np.int64)).to(dev)
    put = lambda v: torch.tensor(v, dtype=torch.float32, device=dev).reshape(
        1, -1, 1, 1)
    self.mean, self.std = put(mean), put(std)
    self.victim = {k: v.detach() for k, v in lenet.named_parameters()}
    self.perm, self.pos = None, len(self.labels)

    def loss_one(params, x, y):
      logits = torch.func.functional_call(self.lenet, params, (x[None],))
      return torch.nn.functional.cross_entropy(logits, y[None])

    self.messages = torch.func.vmap(torch.func.grad(loss_one),
                                    in_dims=(None, 0, 0))

  def _next_indices(self):
    if self.pos + self.batch > len(self.labels):
      self.perm = _torch().randperm(len(self.labels),
                                    device=self.labels.device)
      self.pos = 0
    self.pos += self.batch
    return self.perm[self.pos - self.batch:self.pos]

  def step(self, idx=None):
    torch = _torch()
    if idx is None:
      idx = self._next_indices()
    elif not torch.is_tensor(idx):
      idx = torch.from_numpy(np.array(idx, np.int64)).to(self.labels.device)
    x01, y = self.images[idx], self.labels[idx]
    msgs = self.messages(self.victim, (x01 - self.mean) / self.std, y)
    loss = torch.nn.functional.mse_loss(self.git(msgs), x01)
    grads = list(torch.autograd.grad(loss, self.params))
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = torch.where(norm < self.clip, 1.0, self.clip / norm)
    ttr.set_grads(self.params, [g.mul_(scale) for g in grads])
    self.opt.param_groups[0]["lr"] = self.lr(self.t)
    self.opt.step()
    self.t += 1
    return loss.detach(), norm.detach()


def make_git_step(setup, state, images, labels, batch: int,
                  dev: str = "cpu") -> GITStep:
  """The torch twin of ``train_inverter.make_train_step(setup, batch)``
  from the inverter TrainState ``state`` on ``images`` [M, H, W, C] in [0,
  1] and ``labels`` [M]."""
  lenet, git, _ = build(setup, state.params, dev)
  lk = setup.leak
  return GITStep(lenet, git, images, labels, batch=batch, mean=lk.mean,
                 std=lk.std, train=inverter_setup.plain(setup.config.train),
                 dev=dev)
