"""A PyTorch reference for one Inverting Gradients iteration (``ig_speed``).

torch is optional (the ``compare`` extra): it is imported only inside the
functions that need it, and ``available()`` says whether it can be.

``build_model(victim, variables)``: a torch module computing the same
function as a gitjax ``convnet`` or ``resnet18`` victim (BatchNorm in eval
mode), with the victim's variables copied in (kernels HWIO -> OIHW, Dense
[in, out] -> [out, in], BatchNorm scale, offset, mean, variance). Each
torch submodule is named after the gitjax layer it mirrors (``conv3``,
``stage1_block0.shortcut_conv``); that is how parameters and gradients are
matched. The ConvNet's head kernel rows go from NHWC order to NCHW.

``make_ig_step(problem, settings, data, x0)``: gitjax's IG iteration
(``engine._trial_step`` on ``matching.GradientMatching``, ``BoxProjection``,
``optimizers.transformation``) in torch: ``objectives.cosine`` (ONE
unweighted cosine over all tensors, ``1 - <a, b> / (|a| |b| + 1e-12)``)
between the leak and the parameter gradient of the mean cross-entropy of the
known labels (``protocols.fedsgd_message``) plus ``tv`` times
``objectives.total_variation``; its x-gradient by double backprop; the best
iterate kept; Adam (0.9, 0.999, 1e-8) on the gradient's sign with the "step"
schedule (x0.1 at 3/8, 5/8, 7/8 of ``settings.iterations``); x clipped into
the leak's box. A trial whose loss turns non-finite is not frozen.

``probe`` and ``compare``: the checks that both sides compute the same.
"""

import collections
import functools
import math
import time

import jax
import numpy as np

from gitjax.benchmarks.torch_runtime import _sync
from gitjax.benchmarks.torch_runtime import _torch

MODELS = ("convnet", "resnet18")
# |gitjax - torch| <= ATOL + RTOL * scale: float32's own error reaches 1e-3
# relative at ConvNet-64, B = 8 (BUILD_NOTES.md, issue 13).
RTOL, ATOL = 5e-3, 1e-5
# After one signed step, elements whose gradient is ~0 may step either way.
STEP_ATOL, STEP_MAX_FLIPPED, STEP_RTOL = 1e-5, 0.01, 1e-2


class MismatchError(RuntimeError):
  """gitjax and the torch reference do not compute the same thing."""

@functools.cache
def _block_class():
  """``gitjax.models.resnet.Block`` as a torch module class."""
  torch = _torch()
  nn = torch.nn

  class Block(nn.Module):
    """Basic block: two 3x3 convs, projection shortcut if shapes change."""

    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.project = stride != 1 or cin != cout
      if self.project:
        self.shortcut_conv = nn.Conv2d(cin, cout, 1, stride, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      if self.project:
        x = self.shortcut_bn(self.shortcut_conv(x))
      return torch.relu(x + y)

  return Block


def _resnet18(width, num_classes, channels):
  """``gitjax.models.resnet`` (CIFAR stem, no max-pool) as a Sequential."""
  nn = _torch().nn
  layers = [("stem_conv", nn.Conv2d(channels, width, 3, 1, 1, bias=False)),
            ("stem_bn", nn.BatchNorm2d(width)), ("stem_relu", nn.ReLU())]
  cin = width
  for s in range(4):
    for b in range(2):
      cout = width * 2**s
      layers.append((f"stage{s}_block{b}",
                     _block_class()(cin, cout, 2 if s and not b else 1)))
      cin = cout
  layers += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
             ("head", nn.Linear(cin, num_classes))]
  return nn.Sequential(collections.OrderedDict(layers))


def _convnet(width, num_classes, channels, image_hw):
  """``gitjax.models.convnet`` as an ``nn.Sequential`` (NCHW flatten)."""
  nn = _torch().nn
  layers, cin, (h, w) = [], channels, image_hw
  for i, mult in enumerate((1, 2, 2, 4, 4, 4, 4, 4)):
    layers += [(f"conv{i}", nn.Conv2d(cin, mult * width, 3, 1, 1)),
               (f"bn{i}", nn.BatchNorm2d(mult * width)),
               (f"relu{i}", nn.ReLU())]
    cin = mult * width
    if i in (5, 7):
      layers.append((f"pool{i}", nn.MaxPool2d(3, 3)))
      h, w = h // 3, w // 3
  layers += [("flatten", nn.Flatten()),
             ("head", nn.Linear(cin * h * w, num_classes))]
  model = nn.Sequential(collections.OrderedDict(layers))
  model.nhwc_features = (h, w)  # The head's input map, for its kernel rows.
  return model


def build_model(victim, variables, dev: str = "cpu"):
  """The torch twin of a gitjax victim, with ``variables`` copied in.

  ``victim``: a gitjax "convnet" or "resnet18" (ReLU, BatchNorm) on
  [H, W, C] inputs; ``variables``: its params and batch_stats. Returns an
  ``nn.Module`` in eval mode on ``dev`` taking [B, C, H, W] float32. Raises
  ValueError for another model, MismatchError if the parameter counts differ.
  """
  cfg = dict(victim.config)
  if victim.name not in MODELS or cfg.get("activation", "relu") != "relu" or (
      not cfg.get("batch_norm", True)):
    raise ValueError(f"no torch reference for {victim.name!r} {cfg}; "
                     f"known: {MODELS} with ReLU and BatchNorm")
  h, w, c = victim.input_shape
  if victim.name == "convnet":
    model = _convnet(cfg["width"], victim.num_classes, c, (h, w))
  else:
    model = _resnet18(cfg["width"], victim.num_classes, c)
  load_variables(model, variables)
  theirs = sum(int(np.size(a)) for a in jax.tree.leaves(variables["params"]))
  ours = sum(p.numel() for p in model.parameters())
  if ours != theirs:
    raise MismatchError(f"{victim.name}: parameter count: gitjax {theirs:,}, "
                        f"torch {ours:,}")
  return model.eval().to(dev)


def _node(tree, path: str):
  for k in path.split("."):
    tree = tree[k]
  return tree


def _array(a) -> np.ndarray:
  return np.array(a, dtype=np.float32)  # A writable copy, for from_numpy.


def torch_layout(model, name: str, tree) -> np.ndarray:
  """The leaf of a params-shaped gitjax ``tree`` for torch parameter
  ``name`` (e.g. "conv0.weight"), in torch's layout."""
  nn = _torch().nn
  path, attr = name.rsplit(".", 1)
  module, node = model.get_submodule(path), _node(tree, path)
  if attr == "bias":
    return _array(node["bias"])
  if isinstance(module, nn.BatchNorm2d):
    return _array(node["scale"])
  kernel = _array(node["kernel"])
  if isinstance(module, nn.Conv2d):
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))  # OIHW.
  hw = getattr(model, "nhwc_features", None)
  if hw is not None:  # Rows (h, w, c) -> (c, h, w).
    f, k = kernel.shape
    kernel = kernel.reshape(hw[0], hw[1], f // (hw[0] * hw[1]), k)
    kernel = kernel.transpose(2, 0, 1, 3).reshape(f, k)
  return np.ascontiguousarray(kernel.T)


def to_torch_grads(model, tree) -> list:
  """A params-shaped gitjax tree as tensors in ``model.parameters()`` order
  (on the model's device)."""
  torch = _torch()
  return [torch.from_numpy(torch_layout(model, n, tree)).to(p.device)
          for n, p in model.named_parameters()]


def load_variables(model, variables) -> None:
  """Copies gitjax ``variables`` into ``model`` (parameters and BN stats)."""
  torch = _torch()
  names = {"running_mean": "mean", "running_var": "var"}
  with torch.no_grad():
    for n, p in model.named_parameters():
      p.copy_(torch.from_numpy(torch_layout(model, n, variables["params"])))
    for n, b in model.named_buffers():
      path, attr = n.rsplit(".", 1)
      if attr in names:
        stats = _node(variables["batch_stats"], path)
        b.copy_(torch.from_numpy(_array(stats[names[attr]])))


def step_lr(lr: float, iterations: int, t: int) -> float:
  """``optimizers.schedule("step", lr, iterations)`` at update ``t``."""
  bounds = {max(1, int(iterations * f)) for f in (3 / 8, 5 / 8, 7 / 8)}
  return lr * 0.1 ** sum(t >= b for b in bounds)


def total_variation(x):
  """``objectives.total_variation`` of [B, C, H, W] torch images."""
  dx = (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3))
  dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3))
  return (dx + dy).sum()


def _nchw(x) -> np.ndarray:
  return np.ascontiguousarray(_array(x).transpose(0, 3, 1, 2))


class IGStep:
  """One IG iteration in torch, in place (see the module docstring).

  ``step()`` returns the objective at the iterate it started from (as
  gitjax's engine does); ``x`` is the current iterate [B, C, H, W],
  ``best_x``/``best_loss`` the best one seen.
  """

  def __init__(self, model, grads, labels, x0, *, lo, hi, tv, lr,
               iterations):
    torch = _torch()
    self.model, self.tv = model, float(tv)
    self.params = list(model.parameters())
    dev = self.params[0].device
    put = lambda a: torch.from_numpy(a).to(dev)
    self.target = grads
    # The leaked message is constant: its norm is computed once.
    self.target_norm = torch.sqrt(sum(t.square().sum() for t in grads))
    self.labels = put(np.array(labels, dtype=np.int64))
    self.x = put(_nchw(x0)).requires_grad_(True)
    # Per-channel (or scalar) bounds, broadcast over [B, C, H, W].
    self.lo, self.hi = (put(_array(v).reshape(1, -1, 1, 1)) for v in (lo, hi))
    self.opt = torch.optim.Adam([self.x], lr=lr, betas=(0.9, 0.999),
                                eps=1e-8)
    self.lr, self.iterations, self.t = float(lr), int(iterations), 0
    self.best_x = self.x.detach().clone()
    self.best_loss = torch.tensor(math.inf, device=dev)

  def objective(self, x):
    """Cosine gradient distance plus ``tv`` times total variation."""
    torch = _torch()
    ce = torch.nn.functional.cross_entropy(self.model(x), self.labels)
    grads = torch.autograd.grad(ce, self.params, create_graph=True)
    dot = sum((g * t).sum() for g, t in zip(grads, self.target))
    norm = torch.sqrt(sum(g.square().sum() for g in grads))
    loss = 1.0 - dot / (norm * self.target_norm + 1e-12)
    return loss + self.tv * total_variation(x)

  def step(self):
    """One iteration; returns the objective at the iterate it started at."""
    torch = _torch()
    loss = self.objective(self.x)
    (g,) = torch.autograd.grad(loss, [self.x])
    with torch.no_grad():
      better = (torch.isfinite(loss) & torch.isfinite(g).all()
                & (loss < self.best_loss))
      self.best_x.copy_(torch.where(better, self.x, self.best_x))
      self.best_loss.copy_(torch.where(better, loss, self.best_loss))
      self.x.grad = torch.sign(g)
      self.opt.param_groups[0]["lr"] = step_lr(self.lr, self.iterations,
                                               self.t)
      self.opt.step()
      self.x.clamp_(self.lo, self.hi)
    self.t += 1
    return loss.detach()


# The gitjax settings IGStep implements (beside tv, lr and iterations).
IG_SETTINGS = dict(
    objective="cosine", distance_scale=1.0, layer_weights=None, l2=0.0,
    bn_prior=0.0, optimizer="adam", signed=True, schedule="step", warmup=0,
    grad_clip=0.0, langevin=0.0, box=True)


def check_problem(problem, settings) -> None:
  """Raises ValueError unless ``IGStep`` implements this gitjax IG step:
  ``IG_SETTINGS``, one FedSGD client without defenses, known labels, no
  render/penalty/objective hooks."""
  bad = {k: getattr(settings, k) for k, v in IG_SETTINGS.items()
         if getattr(settings, k) != v}
  c = problem.client
  if (c.protocol, c.protocol_config, c.num_clients, c.defenses) != (
      "fedsgd", (), 1, ()):
    bad["client"] = c._replace(victim=c.victim.name)
  if problem.joint_labels or problem.render or problem.penalty or (
      problem.objective):
    bad["problem"] = "joint labels or render/penalty/objective hooks"
  if bad:
    raise ValueError(f"the torch IG step does not implement {bad}")


def make_ig_step(problem, settings, data, x0, dev: str = "cpu") -> IGStep:
  """The torch twin of gitjax's IG step on one trial: ``problem`` (a
  ``matching.GradientMatching``), its ``settings``, ``matching.make_data``'s
  arrays (params, state, message, [B] labels, lo, hi), x0 [B, H, W, C] in
  victim space, the torch device."""
  check_problem(problem, settings)
  model = build_model(problem.victim, {"params": data["params"],
                                       **data["state"]}, dev)
  return IGStep(model, to_torch_grads(model, data["message"]),
                data["labels"], x0, lo=data["lo"], hi=data["hi"],
                tv=problem.tv, lr=settings.lr, iterations=settings.iterations)


def probe(step: IGStep) -> dict:
  """What ``compare`` checks, from the torch side (runs two steps).

  Returns params (count), logits [B, C] at the start, objective there, x1
  [B, H, W, C] after one step and objective_after_step (at x1).
  """
  torch = _torch()
  with torch.no_grad():
    logits = step.model(step.x).cpu().numpy()
  loss0 = float(step.step())
  x1 = step.x.detach().cpu().numpy().transpose(0, 2, 3, 1).copy()
  loss1 = float(step.step())
  return dict(params=sum(p.numel() for p in step.params), logits=logits,
              objective=loss0, x1=x1, objective_after_step=loss1)


def compare(label: str, ours: dict, ref: dict) -> dict:
  """Checks gitjax's probe (``ours``) against torch's (``ref``).

  Tolerances: the logits and the objective at the start agree within
  ``ATOL + RTOL * scale`` (scale: gitjax's largest |logit|, or |objective|),
  the objective after one (signed, full-lr) step within
  ``ATOL + STEP_RTOL * |objective|``;
  x after one step agrees within ``STEP_ATOL`` except on at most a
  ``STEP_MAX_FLIPPED`` fraction of the elements (signed steps on ~0
  gradients may go either way).

  Returns:
    The measured discrepancies (JSON-able).

  Raises:
    MismatchError: one line naming ``label`` and the first mismatch.
  """
  what = f"torch reference mismatch on {label}"
  if ours["params"] != ref["params"]:
    raise MismatchError(f"{what}: parameter count gitjax {ours['params']:,} "
                        f"vs torch {ref['params']:,}")
  diff = lambda k: float(np.max(np.abs(ours[k] - ref[k])))
  limit = lambda k: ATOL + RTOL * float(np.max(np.abs(ours[k])))
  checks = dict(
      logits_max_abs_diff=(diff("logits"), limit("logits")),
      objective_abs_diff=(diff("objective"), limit("objective")),
      step_x_flipped_fraction=(float(np.mean(
          np.abs(ours["x1"] - ref["x1"]) > STEP_ATOL)), STEP_MAX_FLIPPED),
      objective_after_step_abs_diff=(
          diff("objective_after_step"),
          ATOL + STEP_RTOL * abs(float(ours["objective_after_step"]))))
  for k, (v, most) in checks.items():
    if not v <= most:  # Also catches NaN.
      key = ("objective_after_step" if "after_step" in k else "objective")
      raise MismatchError(f"{what}: {k} = {v:.3g} > {most:.3g} ({key} "
                          f"gitjax {ours[key]:.6g}, torch {ref[key]:.6g})")
  return {k: v for k, (v, _) in checks.items()}


def run_steps(step: IGStep, n: int) -> float:
  """Seconds for ``n`` torch IG steps."""
  t = time.perf_counter()
  for _ in range(n):
    step.step()
  _sync(step.x.device)
  return time.perf_counter() - t
