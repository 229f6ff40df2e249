"""Run directories: checks before any write, finished runs never modified."""

import json
import os

import ml_collections as mlc
import pytest

from gitjax import rundir
from gitjax.errors import InputError
from tests import helpers


def _config(**kw):
  c = mlc.ConfigDict(dict(seed=0, log_every=5, model=dict(width=4),
                          sizes=(1, 2)))
  c.update(kw)
  return c


def test_fresh_run_writes_config_and_finishes(tmp_path):
  run = rundir.open_run(tmp_path / "w", _config(), "attack", log=False)
  assert run.finished is None and not run.resumed
  stored = json.loads((tmp_path / "w" / "config.json").read_text())
  assert stored["sizes"] == [1, 2]  # Tuples are stored as lists.
  run.finish({"psnr": 20.0})
  again = rundir.open_run(tmp_path / "w", _config(), "attack", log=False)
  assert again.finished == {"psnr": 20.0}


def test_finished_run_is_byte_identical_after_rerun(tmp_path):
  run = rundir.open_run(tmp_path, _config(), "benchmark", log=False)
  run.write_json("extra.json", {"a": 1})
  run.finish({"x": 1})
  before = helpers.snapshot(tmp_path)
  assert rundir.open_run(tmp_path, _config(), "benchmark",
                         log=False).finished == {"x": 1}
  assert helpers.snapshot(tmp_path) == before


@pytest.mark.parametrize("change,field", [
    (dict(seed=1), "seed: 0 -> 1"),
    (dict(model=dict(width=8)), "model.width: 4 -> 8"),
    (dict(sizes=(1, 3)), "sizes"),
])
def test_different_config_is_refused_before_any_write(tmp_path, change,
                                                      field):
  run = rundir.open_run(tmp_path, _config(), "train_prior", log=False)
  run.append_jsonl("metrics.jsonl", {"step": 1})
  before = helpers.snapshot(tmp_path)
  with pytest.raises(InputError, match="different config") as e:
    rundir.open_run(tmp_path, _config(**change), "train_prior")
  assert field in str(e.value) and "\n" not in str(e.value)
  assert helpers.snapshot(tmp_path) == before


def test_mutable_fields_may_change_on_resume(tmp_path):
  run = rundir.open_run(tmp_path, _config(), "train_inverter", log=False)
  run.append_jsonl("metrics.jsonl", {"step": 1})
  run = rundir.open_run(tmp_path, _config(log_every=50), "train_inverter",
                        mutable=("log_every",), log=False)
  assert run.resumed
  assert json.loads((tmp_path / "config.json").read_text())["log_every"] == 50


def test_config_of_a_run_that_made_nothing_is_replaced(tmp_path):
  rundir.open_run(tmp_path, _config(), "attack", log=False)
  os.makedirs(tmp_path / "checkpoints")  # Empty folders do not count.
  rundir.open_run(tmp_path, _config(seed=3), "attack", log=False)
  assert json.loads((tmp_path / "config.json").read_text())["seed"] == 3


def test_foreign_or_file_workdir_is_refused(tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  with pytest.raises(InputError, match="holds no gitjax run"):
    rundir.open_run(tmp_path, _config(), "attack")
  assert os.listdir(tmp_path) == ["notes.txt"]
  with pytest.raises(InputError, match="is a file"):
    rundir.open_run(tmp_path / "notes.txt", _config(), "attack")


def test_corrupt_stored_config_or_final_file_is_refused(tmp_path):
  run = rundir.open_run(tmp_path / "a", _config(), "attack", log=False)
  (tmp_path / "a" / "config.json").write_text("{not json")
  with pytest.raises(InputError, match="cannot read the stored config"):
    rundir.open_run(tmp_path / "a", _config(), "attack")
  run = rundir.open_run(tmp_path / "b", _config(), "attack", log=False)
  run.finish({"x": 1})
  (tmp_path / "b" / "metrics.json").write_text("{torn")
  with pytest.raises(InputError, match="final file cannot be read"):
    rundir.open_run(tmp_path / "b", _config(), "attack")


def test_trim_jsonl_drops_later_steps_and_a_torn_line(tmp_path):
  run = rundir.open_run(tmp_path, _config(), "train_prior", log=False)
  for step in (5, 10, 15):
    run.append_jsonl("m.jsonl", {"step": step, "loss": 1.0 / step})
  with open(tmp_path / "m.jsonl", "a") as f:
    f.write('{"step": 20, "lo')  # Killed mid-write.
  assert [r["step"] for r in run.read_jsonl("m.jsonl")] == [5, 10, 15]
  run.trim_jsonl("m.jsonl", 10)
  assert [r["step"] for r in run.read_jsonl("m.jsonl")] == [5, 10]
  assert (tmp_path / "m.jsonl").read_text().endswith("\n")


def test_unknown_kind_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="unknown run kind"):
    rundir.open_run(tmp_path, _config(), "sweep")
