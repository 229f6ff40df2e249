"""The README's set-up commands and library snippet stay true."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme():
  with open(os.path.join(ROOT, "README.md")) as f:
    return f.read()


def _blocks(text, lang):
  return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_two_setup_commands_and_ci_runs_the_second():
  text = _readme()
  setup = text[text.index("## Set up"):text.index("\n## ", text.index(
      "## Set up") + 1)]
  commands = [b.strip() for b in _blocks(setup, "bash")]
  assert len(commands) == 2, commands
  main, tests = commands
  assert main.startswith(
      "pip install -c constraints.txt -e . && python -m launch.attack")
  assert os.path.exists(os.path.join(ROOT, "constraints.txt"))
  config = re.search(r"--config=(\S+?\.py)", main).group(1)
  assert os.path.exists(os.path.join(ROOT, config))
  with open(os.path.join(ROOT, ".ci", "run")) as f:
    ci = f.read().replace("python3 ", "python ")
  assert tests in ci


def test_library_snippet_runs():
  snippet = _blocks(_readme(), "python")[0]
  assert "iterations=2000" in snippet
  snippet = snippet.replace("iterations=2000", "iterations=3, progress=False")
  scope = {}
  exec(compile(snippet, "README.md", "exec"), scope)  # pylint: disable=exec-used
  rec = scope["rec"]
  assert rec.images.shape == (1, 32, 32, 3)
  assert rec.labels.shape == (1,)
