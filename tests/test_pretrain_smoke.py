"""The smoke preset of `launch.pretrain`: it clones the expert and its outputs read back."""

import collections
import json
import os

import numpy as np

from configs.pretrain import get_config
from launch import pretrain
from londi_jax.envs.demo_files import read_demos
from londi_jax.envs.babyai.prompts import PromptConfig
from londi_jax.policies import load_policy
from londi_jax.policies.bc import episodes_of, prompts_and_actions


def test_smoke_preset_learns_the_expert_actions_and_resumes(tmp_path):
  workdir = str(tmp_path / "run")
  summary = pretrain.run(get_config("smoke"), workdir)
  assert set(summary["policies"]) == {"small", "large"}
  for name in ("small", "large"):
    result = summary["policies"][name]
    assert result["episodes"] == 4
    lo, hi = result["ci95"]
    assert lo <= result["success_rate"] <= hi
    assert result["flops_per_step"] > 0

  episodes = episodes_of(read_demos(os.path.join(workdir, "demos", "demos.jsonl")))
  policy = load_policy(os.path.join(workdir, "small", "policy"))
  prompts, actions, candidates = prompts_and_actions(
      episodes, PromptConfig(**policy.meta["prompt"]))
  prompts, actions = prompts[:64], actions[:64]
  chosen = policy(prompts, [candidates] * len(prompts)).greedy_action
  accuracy = np.mean([c == a for c, a in zip(chosen, actions)])
  majority = collections.Counter(actions).most_common(1)[0][1] / len(actions)
  assert accuracy > majority + 0.15
  assert accuracy > 0.8

  kinds = collections.Counter(json.loads(line)["kind"]
                              for line in open(os.path.join(workdir, "metrics.jsonl")))
  assert kinds["train"] > 0 and kinds["val"] > 0 and kinds["eval"] == 2
  again = pretrain.run(get_config("smoke"), workdir)
  assert again["policies"] == summary["policies"]
