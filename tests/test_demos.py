"""The demonstration file format, BabyAI expert demonstrations and the launch.demos CLI."""

import json

import pytest

from launch import demos as launch_demos
from londi_jax import envs
from londi_jax.envs import demo_files as demos
from londi_jax.envs.babyai import expert as babyai_expert
from londi_jax.envs.base import UnknownEnvironmentError
from londi_jax.envs.babyai.prompts import PromptConfig, episode_prompts


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


def test_babyai_collect_is_deterministic_and_replays(tmp_path):
  env_id = "babyai_text/BabyAI-PickupLoc-v0"
  summaries = []
  for name in ("a", "b"):
    with demos.DemoWriter(tmp_path / name) as writer:
      summaries.append(babyai_expert.collect(env_id, writer, episodes=3, seed=4, split="dev"))
  first, second = (list(demos.read_demos(tmp_path / name)) for name in ("a", "b"))
  assert first == second and summaries[0] == summaries[1]
  summary = summaries[0]
  assert summary["episodes"] == 3 and summary["success_rate"] == 1.0
  assert summary["records"] == len(first)
  assert summary["per_level"]["BabyAI-PickupLoc-v0"]["successes"] == 3
  assert demos.read_summary(tmp_path / "a")["collect"][env_id] == summary

  for episode in range(3):
    steps = [r for r in first if r["episode"] == episode]
    assert [r["step"] for r in steps] == list(range(len(steps)))
    assert steps[0]["seed"] == 1_000_000 + 4 + episode  # the dev split's seed range
    # replaying the recorded actions from the recorded seed gives the recorded observations
    env = envs.make(env_id)
    obs = env.reset(seed=steps[0]["seed"])
    for record in steps:
      assert record["sentences"] == list(obs.sentences)
      assert record["mission"] == obs.mission
      obs, _, done, info = env.step(record["action"])
    assert done and info["success"]
    # the stored prompt is the default template's, rebuildable from the records
    observations = [r["sentences"] for r in steps]
    actions = [r["action"] for r in steps]
    assert [r["prompt"] for r in steps] == episode_prompts(
        steps[0]["mission"], observations, actions, steps[0]["valid_actions"], PromptConfig())


def test_launch_demos_writes_and_summarises(tmp_path):
  ids = ["babyai_text/BabyAI-GoToLocal-v0", "babyai_text/mixed-test"]
  summaries = launch_demos.run(ids, episodes=4, out=str(tmp_path), seed=0)
  assert [s["env_id"] for s in summaries] == ids
  records = list(demos.read_demos(tmp_path))
  assert {r["env_id"] for r in records} == set(ids)
  assert all(r["action"] in r["valid_actions"] for r in records)
  table = launch_demos.format_table(summaries)
  assert "babyai_text/mixed-test" in table and "rate" in table.splitlines()[0]


def test_launch_demos_rejects_unknown_families():
  with pytest.raises(UnknownEnvironmentError, match="babyai_text/"):
    launch_demos.collector("atari/Pong")
