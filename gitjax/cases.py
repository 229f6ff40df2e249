"""Per-case overrides of a config's blocks: the cases of a benchmark sweep.

``with_overrides(config, {"leak": {"defense": [...]}})`` is ``config`` with
those fields replaced, read lazily: fields nobody reads stay unread in
``config`` (``tests/test_benchmarks.py`` tracks the reads). A dict given
for a field that is itself a block (``{"baselines": {"ig": {"restarts":
3}}}``) replaces only the fields it names.
"""

from gitjax.errors import InputError


def _plain(x):
  return x.to_dict() if hasattr(x, "to_dict") else x


class _Block:
  """A config block with some fields replaced (read-only)."""

  def __init__(self, base, over: dict):
    self._base, self._over = base, over

  def get(self, key, default=None):
    if key not in self._over:
      return self._base.get(key, default)
    over, base = self._over[key], self._base.get(key)
    if isinstance(over, dict) and hasattr(base, "keys"):
      return _Block(base, over)  # A nested block: its other fields stay.
    return over

  def __getattr__(self, key):
    if key.startswith("_"):
      raise AttributeError(key)
    return self.get(key)

  __getitem__ = __getattr__

  def __contains__(self, key):
    return key in self._over or key in self._base

  def keys(self):
    return list(dict.fromkeys([*self._base.keys(), *self._over]))

  def items(self):
    return [(k, self.get(k)) for k in self.keys()]

  def to_dict(self) -> dict:
    return {**_plain(self._base),
            **{k: _plain(self.get(k)) for k in self._over}}


class _Overlay:
  """A config whose blocks have some fields replaced (``with_overrides``)."""

  def __init__(self, config, overrides: dict):
    self._config, self._overrides = config, overrides

  def __getattr__(self, key):
    if key.startswith("_"):
      raise AttributeError(key)
    if key in self._overrides:
      return _Block(self._config[key], self._overrides[key])
    return self._config[key]

  __getitem__ = __getattr__

  def get(self, key, default=None):
    return self[key] if key in self else default

  def __contains__(self, key):
    return key in self._config


# The fields ``make_cases`` reads: a case may set one that its config leaves
# out (a sweep's own field, e.g. ``leak.defense`` in a defense sweep, is
# deleted from the block so that no override is silently ignored).
CASE_FIELDS = dict(
    data=("name", "data_dir", "split", "image_size", "channels",
          "batch_size", "num_clients", "mean", "std", "classes",
          "distinct_labels", "index", "options"),
    leak=("protocol", "protocol_config", "defense", "labels_shared",
          "defense_known", "discrepancy", "tell_batch_size", "if_empty"))


def with_overrides(config, overrides, field: str = "overrides"):
  """``config`` with some block fields replaced, e.g. one case of a sweep:
  ``{"leak": {"defense": [...]}, "data": {"batch_size": 4}}``.

  A field must be one the block has (or, for data and leak, one of
  ``CASE_FIELDS``); InputError naming ``field`` otherwise. The other fields
  are read from ``config`` when used.
  """
  out = {}
  for block, fields in (_plain(overrides) or {}).items():
    if block not in config or not hasattr(config[block], "keys"):
      raise InputError(f"{field}.{block}: the config has no block "
                       f"{block!r}")
    known = set(config[block].keys()) | set(CASE_FIELDS.get(block, ()))
    unknown = sorted(set(fields) - known)
    if unknown:
      raise InputError(f"{field}.{block}.{unknown[0]}: config.{block} has "
                       f"no such field; known: {sorted(known)}")
    out[block] = dict(fields)
  return _Overlay(config, out)
