"""Traces a victim's Dense and Conv layers, in call order, for GIT.

``victim_layers`` traces the victim once (abstractly, with
``flax.linen.intercept_methods``) and records every Dense and Conv layer: its
parameter path, input and output shapes, and conv geometry. A conv without a
bias (ResNet) takes the bias of the BatchNorm that follows it.
``victim_groups`` groups the layers by their top-level module (one group per
layer for MLP, LeNet and ConvNet; one per residual block for ResNets).
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from gitjax import victim as victim_lib
from gitjax.models import common as models_common


class LayerSpec(NamedTuple):
  """One Dense or Conv layer of the victim, in call order."""
  path: tuple  # Module path in the params, e.g. ("stage0_block0", "conv1").
  kind: str  # "dense" or "conv".
  kernel_shape: tuple  # [F_in, F_out] or [k, k, C_in, C_out].
  bias_path: tuple | None  # Params path of the [C_out] bias-like gradient.
  input_shape: tuple  # One example's input, e.g. (32, 32, 3) or (768,).
  output_shape: tuple
  conv: tuple | None  # (kernel_size, strides, padding, input_dilation,
  #                     kernel_dilation, feature_group_count) for convs.


class GroupSpec(NamedTuple):
  """Layers under one top-level module (a layer, or a residual block)."""
  name: str
  layers: tuple  # LayerSpecs in call order.
  input_shape: tuple
  output_shape: tuple


def _hashable(x):
  if isinstance(x, (list, tuple)):
    return tuple(_hashable(v) for v in x)
  return x


def victim_layers(victim: victim_lib.Victim) -> tuple[LayerSpec, ...]:
  """Traces the victim's Dense/Conv layers (no computation: eval_shape).

  Raises:
    ValueError: if the victim is not a Linen model with Dense/Conv layers.
  """
  calls = []

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    m = context.module
    if context.method_name == "__call__" and isinstance(
        m, (nn.Dense, nn.Conv, models_common.Conv, nn.BatchNorm)):
      calls.append((m, tuple(m.scope.path), args[0].shape[1:],
                    out.shape[1:]))
    return out

  variables = jax.eval_shape(
      lambda: victim_lib.init_variables(victim, jax.random.key(0)))

  def run(v, x):
    with nn.intercept_methods(interceptor):
      return victim.apply(v, x)

  jax.eval_shape(run, variables,
                 jax.ShapeDtypeStruct((1,) + tuple(victim.input_shape),
                                      jnp.float32))
  params = variables["params"]
  layers = []
  for i, (m, path, shape_in, shape_out) in enumerate(calls):
    if isinstance(m, nn.BatchNorm):
      continue
    node = params
    for p in path:
      node = node[p]
    if "kernel" not in node:
      continue
    bias_path = path + ("bias",) if "bias" in node else None
    if bias_path is None and i + 1 < len(calls):
      nxt, npath = calls[i + 1][0], calls[i + 1][1]
      bn = params
      for p in npath:
        bn = bn[p]
      if isinstance(nxt, nn.BatchNorm) and "bias" in bn:
        bias_path = npath + ("bias",)
    conv = None
    if isinstance(m, models_common.Conv):  # gitjax's victims' convolutions.
      conv = _hashable((m.kernel_size, m.strides, m.padding, 1, 1, 1))
    elif isinstance(m, nn.Conv):
      conv = _hashable((m.kernel_size, m.strides, m.padding, m.input_dilation,
                        m.kernel_dilation, m.feature_group_count))
    if conv is not None and conv[-1] != 1:
      raise ValueError(f"GIT does not support grouped convolutions "
                       f"({'/'.join(path)})")
    layers.append(LayerSpec(
        path=path, kind="conv" if conv else "dense",
        kernel_shape=tuple(node["kernel"].shape), bias_path=bias_path,
        input_shape=tuple(shape_in), output_shape=tuple(shape_out),
        conv=conv))
  if not layers:
    raise ValueError(
        f"GIT needs a Linen victim with Dense/Conv layers; {victim.name!r} "
        "has none it can trace")
  if len({l.path for l in layers}) != len(layers):
    raise ValueError(f"victim {victim.name!r} calls a layer twice (weight "
                     "sharing); GIT's reverse chain needs each layer once")
  return tuple(layers)


def victim_groups(victim: victim_lib.Victim) -> tuple[GroupSpec, ...]:
  """Groups ``victim_layers`` by top-level module, in call order."""
  groups: dict[str, list[LayerSpec]] = {}
  for layer in victim_layers(victim):
    groups.setdefault(layer.path[0], []).append(layer)
  return tuple(
      GroupSpec(name=name, layers=tuple(ls), input_shape=ls[0].input_shape,
                output_shape=ls[-1].output_shape)
      for name, ls in groups.items())

