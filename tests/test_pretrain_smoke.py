"""`launch.pretrain` at its smoke preset, trained on more demonstrations: the cloned policies
predict the expert's actions in states they were not trained on, the evaluation's numbers agree
with its episodes, and the command resumes.

The smoke preset itself (8 episodes per level, 80 steps) only memorises its demonstrations: on
held-out states its policies do no better than the training data's most frequent action. With 150
episodes per level and 300 steps (about 30 s) they do measurably better, which is what the test
checks: on `dev`-seed expert episodes the policy must beat the best state-blind guess, the training
actions' frequencies, in log-likelihood and in accuracy.
"""

import collections
import json
import os

import numpy as np
import pytest

from configs.pretrain import get_config
from launch import pretrain
from londi_jax.envs.babyai import expert as babyai_expert
from londi_jax.envs.babyai.prompts import PromptConfig
from londi_jax.envs.demo_files import DemoWriter, read_demos
from londi_jax.policies import load_policy
from londi_jax.policies.bc import episodes_of, prompts_and_actions
from londi_jax.training.policy_eval import wilson_interval

DEMO_EPISODES = 150  # per level, on `train` seeds
STEPS = 300  # per policy
HELD_OUT_EPISODES = 25  # per level, on `dev` seeds
BATCH = 64


def config_with_more_data():
  config = get_config("smoke")
  config.demos.episodes_per_level = DEMO_EPISODES
  for p in config.policies.values():
    p.steps = STEPS
  return config


def expert_episodes(out_dir: str, levels, episodes: int, split: str) -> list[list[dict]]:
  """The bot's demonstrations of `episodes` episodes per level of `split`, grouped by episode."""
  with DemoWriter(out_dir) as writer:
    for env_id in levels:
      babyai_expert.collect(env_id, writer, episodes=episodes, seed=0, split=split)
  return episodes_of(read_demos(os.path.join(out_dir, "demos.jsonl")))


def expert_probabilities(policy, prompts, actions, candidates) -> tuple[np.ndarray, np.ndarray]:
  """Per state, the policy's probability of the expert's action and whether it is the policy's
  greedy choice."""
  probs, greedy = [], []
  for i in range(0, len(prompts), BATCH):
    out = policy(prompts[i:i + BATCH], [candidates] * len(prompts[i:i + BATCH]))
    target = [candidates.index(a) for a in actions[i:i + BATCH]]
    probs += [out.probs[j, k] for j, k in enumerate(target)]
    greedy += [out.greedy[j] == k for j, k in enumerate(target)]
  return np.array(probs), np.array(greedy)


def test_wilson_interval_matches_published_values():
  # Newcombe (1998), Statistics in Medicine 17:857, Table I: the score interval without
  # continuity correction, 95%.
  published = {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605),
               (0, 20): (0.0, 0.1611), (1, 29): (0.0061, 0.1718)}
  for (x, n), interval in published.items():
    assert wilson_interval(x, n) == pytest.approx(interval, abs=5e-5), (x, n)


def test_cloned_policies_predict_the_expert_on_held_out_states_and_resume(tmp_path):
  config = config_with_more_data()
  workdir = str(tmp_path / "run")
  summary = pretrain.run(config, workdir)
  assert set(summary["policies"]) == {"small", "large"}
  for name in ("small", "large"):
    result = summary["policies"][name]
    assert result["episodes"] == config.eval.episodes
    levels = result["per_level"]
    assert sum(v["episodes"] for v in levels.values()) == config.eval.episodes
    assert result["successes"] == sum(v["successes"] for v in levels.values())
    assert result["success_rate"] == result["successes"] / config.eval.episodes
    assert result["ci95"] == pytest.approx(list(wilson_interval(result["successes"],
                                                                config.eval.episodes)))
    assert result["flops_per_step"] > 0

  train_actions = collections.Counter(
      r["action"] for r in read_demos(os.path.join(workdir, "demos", "demos.jsonl")))
  held_out = expert_episodes(str(tmp_path / "held_out"), config.levels, HELD_OUT_EPISODES, "dev")
  for name in ("small", "large"):
    policy = load_policy(os.path.join(workdir, name, "policy"))
    prompts, actions, candidates = prompts_and_actions(
        held_out, PromptConfig(**policy.meta["prompt"]))
    probs, greedy = expert_probabilities(policy, prompts, actions, candidates)
    # The best state-blind guess: the training actions' frequencies, and the most frequent one.
    blind = np.array([train_actions[a] / sum(train_actions.values()) for a in actions])
    blind_greedy = np.array([a == train_actions.most_common(1)[0][0] for a in actions])
    assert np.log(probs).mean() >= np.log(blind).mean() + 0.15, name  # nats per state
    assert greedy.mean() >= blind_greedy.mean() + 0.05, name

  kinds = collections.Counter(json.loads(line)["kind"]
                              for line in open(os.path.join(workdir, "metrics.jsonl")))
  assert kinds["train"] > 0 and kinds["val"] > 0 and kinds["eval"] == 2
  again = pretrain.run(config_with_more_data(), workdir)
  assert again["policies"] == summary["policies"]
