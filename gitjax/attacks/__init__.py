"""Attacks: each maps a leak to a reconstruction.

An attack is ``fn(leak, victim, config, key) -> Reconstruction`` where
``config`` is the ``attack`` field of an experiment config (a ConfigDict or
dict) and ``victim`` is the model rebuilt from ``leak.model``. Results are in
the victim's input space; ``leak.to_unit_range`` maps them to [0, 1].

The table maps names to "module:function" and imports lazily, so that an
attack's heavy dependencies (TensorLy, evosax) load only when it runs.
"""

import importlib
from typing import Any, NamedTuple

import jax


class Reconstruction(NamedTuple):
  images: jax.Array  # [B, *input_shape], victim input space.
  labels: jax.Array | None  # [B] recovered labels, or None.
  info: dict  # JSON-able diagnostics: final objective, history, timings.


ATTACKS = {
    "dlg": "gitjax.attacks.gradient_matching:dlg",
    "ig": "gitjax.attacks.gradient_matching:inverting_gradients",
    "gradient_matching": "gitjax.attacks.gradient_matching:inverting_gradients",
    "analytic": "gitjax.attacks.analytic:attack",
    "tensor": "gitjax.attacks.tensor:attack",
    "git": "gitjax.attacks.git:attack",
    "git_ig": "gitjax.attacks.git:attack_with_matching",
    "git_posterior": "gitjax.attacks.git:attack_with_posterior",
    "lti": "gitjax.attacks.git:attack_lti",
    "ggl": "gitjax.attacks.ggl:attack",
    "gismn": "gitjax.attacks.gismn:attack",
    "gradinversion": "gitjax.attacks.gradinversion:attack",
}


def get(name: str) -> Any:
  """Returns the attack function registered under ``name``."""
  if name not in ATTACKS:
    raise ValueError(f"unknown attack {name!r}; known: {sorted(ATTACKS)}")
  module, fn = ATTACKS[name].split(":")
  return getattr(importlib.import_module(module), fn)


def settings(config, defaults: dict, what: str) -> dict:
  """``defaults`` updated with ``config`` (a ConfigDict, dict or None).

  "name" (the registry key an experiment's ``attack`` field carries) is
  always accepted, and kept only when ``defaults`` has it. Other unknown keys
  raise ValueError naming them and the known ones.
  """
  cfg = dict(config.to_dict() if hasattr(config, "to_dict") else config or {})
  if "name" not in defaults:
    cfg.pop("name", None)
  unknown = sorted(set(cfg) - set(defaults))
  if unknown:
    raise ValueError(f"unknown {what} settings {unknown}; known: "
                     f"{sorted(defaults)}")
  return {**defaults, **cfg}
