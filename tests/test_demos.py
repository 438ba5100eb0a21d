"""The demonstration file format: atomic writes, summary, streaming reads."""

import json

import pytest

from londi_jax import demos


def _record(episode, step, action="go forward"):
  return {"env_id": "fam/level", "episode": episode, "step": step, "prompt": f"p{step}",
          "action": action, "valid_actions": ["go forward", "drop"], "mission": "go"}


def test_round_trip_and_summary(tmp_path):
  records = [_record(0, 0), _record(0, 1, "drop"), _record(1, 0)]
  with demos.DemoWriter(tmp_path) as writer:
    for r in records:
      writer.write(r)
    writer.summary["note"] = "hello"
    assert not (tmp_path / "demos.jsonl").exists()  # published only on close
  assert list(demos.read_demos(tmp_path)) == records
  assert list(demos.read_demos(tmp_path / "demos.jsonl")) == records
  lines = (tmp_path / "demos.jsonl").read_text().splitlines()
  assert [json.loads(line) for line in lines] == records
  summary = demos.read_summary(tmp_path)
  assert summary["records"] == 3
  assert summary["episodes"] == 2
  assert summary["records_per_env"] == {"fam/level": 3}
  assert summary["note"] == "hello"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["demos.jsonl", "summary.json"]


def test_exception_publishes_nothing(tmp_path):
  with pytest.raises(RuntimeError):
    with demos.DemoWriter(tmp_path) as writer:
      writer.write(_record(0, 0))
      raise RuntimeError("crash")
  assert list(tmp_path.iterdir()) == []


def test_missing_key_is_rejected(tmp_path):
  with demos.DemoWriter(tmp_path) as writer:
    bad = _record(0, 0)
    del bad["valid_actions"]
    with pytest.raises(ValueError, match="valid_actions"):
      writer.write(bad)
  assert list(demos.read_demos(tmp_path)) == []
