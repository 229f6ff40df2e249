"""Helpers shared by tests."""

import os


def snapshot(path) -> dict:
  """Every file under ``path`` (relative name -> bytes): to check that a
  refused or repeated run left every file byte-identical."""
  out = {}
  for root, _, files in os.walk(path):
    for f in files:
      full = os.path.join(root, f)
      with open(full, "rb") as fh:
        out[os.path.relpath(full, path)] = fh.read()
  return out
