"""Layers point down: what gitjax's modules may import, and their sizes.

Every module under ``gitjax/`` is parsed with ``ast``; imports inside
functions (lazy imports) and ``importlib.import_module("...")`` calls with a
literal name count as imports too.
"""

import ast
import pathlib


ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_LINES = 450
# Attacks load trained models through gitjax.loading, never through the
# trainers, the experiment runner, the benchmarks or the launchers.
ATTACKS_MUST_NOT_IMPORT = ("gitjax.train_inverter", "gitjax.train_prior",
                           "gitjax.experiments", "gitjax.benchmarks",
                           "launch")

def _files(folder: str) -> list[pathlib.Path]:
  return sorted((ROOT / folder).rglob("*.py"))


def _name(path: pathlib.Path) -> str:
  return path.relative_to(ROOT).as_posix()


def imported(path: pathlib.Path, root: pathlib.Path = ROOT) -> set[str]:
  """The dotted names of everything the module at ``path`` imports.

  ``from a import b`` yields both "a" and "a.b" (b may be a submodule);
  relative imports are resolved from ``path``'s package under ``root``.
  """
  tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = list(path.relative_to(root).parent.parts)
        parts = parts[:len(parts) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      out.add(base)
      out.update(f"{base}.{alias.name}" for alias in node.names)
    elif isinstance(node, ast.Call) and node.args and isinstance(
        node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
      func = node.func
      called = getattr(func, "attr", getattr(func, "id", None))
      if called in ("import_module", "__import__"):
        out.add(node.args[0].value)
  return out


def _offenders(paths, forbidden) -> dict[str, list[str]]:
  """{file: the forbidden modules it imports} for the files that do."""
  out = {}
  for path in paths:
    bad = sorted(m for m in imported(path)
                 if any(m == f or m.startswith(f + ".") for f in forbidden))
    if bad:
      out[_name(path)] = bad
  return out


def _check(offenders: dict[str, list[str]]):
  assert not offenders, f"forbidden imports: {offenders}"


def test_imports_are_found_inside_functions_and_relative(tmp_path):
  path = ROOT / "gitjax" / "attacks" / "git.py"
  assert "gitjax.loading" in imported(path)
  fake = tmp_path / "gitjax" / "attacks" / "x.py"
  fake.parent.mkdir(parents=True)
  fake.write_text("def f():\n  from .. import train_prior\n"
                  "  import importlib\n"
                  "  importlib.import_module('launch.run_attack')\n")
  assert {"gitjax.train_prior", "launch.run_attack"} <= imported(fake,
                                                                tmp_path)


def test_gitjax_never_imports_the_configs_package():
  _check(_offenders(_files("gitjax"), ("configs",)))


def test_attacks_never_import_trainers_experiments_or_launchers():
  _check(_offenders(_files("gitjax/attacks"), ATTACKS_MUST_NOT_IMPORT))


def test_loading_never_imports_the_trainers():
  assert not _offenders([ROOT / "gitjax" / "loading.py"],
                        ("gitjax.train_inverter", "gitjax.train_prior"))


def test_no_module_is_over_450_lines():
  sizes = {_name(p): len(p.read_text(encoding="utf-8").splitlines())
           for p in _files("gitjax")}
  over = {f: n for f, n in sizes.items() if n > MAX_LINES}
  assert not over, f"split by idea, files over {MAX_LINES} lines: {over}"
