"""`launch.pretrain` on ScienceWorld at its smoke preset, with real JVMs: gold-path demonstrations
whose prompts rebuild exactly in the recorded template, two cloned policies saved and played on
test variations, numbers that agree with the episodes, a resumed rerun, and no JVM left behind."""

import json
import os

import numpy as np
import pytest

from configs.pretrain import get_config
from launch import pretrain
from londi_jax import envs
from londi_jax.envs.demo_files import read_demos
from londi_jax.envs.scienceworld.prompts import PromptConfig, episode_prompts
from londi_jax.envs.workers import descendant_pids
from londi_jax.policies import bc, load_policy

pytest.importorskip("scienceworld")


@pytest.fixture(scope="module", autouse=True)
def no_java_left():
  yield
  assert descendant_pids(os.getpid(), "java") == []


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("sw_pretrain"))
  config = get_config("scienceworld_smoke")
  return config, workdir, pretrain.run(config, workdir)


def test_demonstrations_rebuild_their_prompts_and_label_candidates(run):
  config, workdir, _ = run
  for env_id in config.levels:
    folder = os.path.join(workdir, "demos", env_id.split("/")[1])
    episodes = bc.episodes_of(read_demos(folder))
    assert len(episodes) == config.demos.episodes_per_level
    for ep in episodes:
      assert [r["prompt"] for r in ep] == episode_prompts(ep, PromptConfig())
      assert all(r["action"] in r["valid_actions"] for r in ep if r["covered"])
    # Each train variation once, in the split's order.
    with envs.make(env_id, split="train") as env:
      train = env.variations()
    assert [ep[0]["variation"] for ep in episodes] == list(train[:len(episodes)])


def test_policies_are_saved_and_evaluated_on_test_variations(run):
  config, workdir, summary = run
  for name in ("small", "large"):
    policy = load_policy(os.path.join(workdir, name, "policy"))
    assert policy.meta["prompt"] == config.policies[name].prompt.to_dict()
    result = summary["policies"][name]
    assert result["episodes"] == config.eval.episodes
    per_level = result["per_level"]
    scores = [v["mean_score"] * v["episodes"] for v in per_level.values()]
    assert result["mean_score"] == pytest.approx(sum(scores) / result["episodes"])
    assert 0 <= result["mean_score"] <= 100
    assert result["flops_per_step"] > 0
  assert summary["flops_ratio_large_to_small"] == pytest.approx(
      summary["policies"]["large"]["flops_per_step"]
      / summary["policies"]["small"]["flops_per_step"])


def test_test_episodes_play_test_variations(run):
  config, _, summary = run
  del summary
  env_id = config.levels[0]
  with envs.make(env_id) as env:  # the split follows the reset seed
    test = env.variations("test")
    played = [env.reset(seed=2_000_000 + k).extra["variation"] for k in range(2)]
  assert played == list(test[:2])


def test_rerun_resumes_without_training_again(run):
  config, workdir, summary = run
  before = os.path.getmtime(os.path.join(workdir, "large", "policy", "policy.json"))
  again = pretrain.run(config, workdir)
  assert again["policies"] == json.loads(json.dumps(summary["policies"]))
  assert os.path.getmtime(os.path.join(workdir, "large", "policy", "policy.json")) == before
