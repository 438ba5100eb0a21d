"""The embedded default BabyAI-Text policies load and reach their recorded success rates."""

import json
import os

import pytest

from londi_jax.envs.babyai.prompts import PromptConfig
from londi_jax.policies import Buckets, load_policy
from londi_jax.policies.rollout import evaluate_policy, wilson_interval

ARTIFACTS = os.path.join(os.path.dirname(__file__), os.pardir, "artifacts", "babyai_text")
EPISODES = 50

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(ARTIFACTS, "summary.json")),
                                reason="no embedded policies committed yet")


@pytest.fixture(scope="module")
def summary():
  with open(os.path.join(ARTIFACTS, "summary.json")) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def measured(summary):
  out = {}
  for name in ("small", "large"):
    policy = load_policy(os.path.join(ARTIFACTS, name), buckets=Buckets(batch=(EPISODES,)))
    out[name] = evaluate_policy(
        policy, PromptConfig(**policy.meta["prompt"]), summary["levels"], EPISODES,
        seed=500_000, split="test", num_envs=EPISODES, mode=summary["eval_mode"])
  return out


@pytest.mark.parametrize("name", ["small", "large"])
def test_recorded_success_rate_is_reproduced(summary, measured, name):
  recorded = summary["policies"][name]["success_rate"]
  got = measured[name]
  lo, hi = wilson_interval(got["successes"], got["episodes"], z=2.576)
  assert got["episodes"] == EPISODES
  assert lo <= recorded <= hi, (name, recorded, got["success_rate"])


def test_large_beats_small_at_ten_times_the_flops(summary, measured):
  assert measured["large"]["success_rate"] > measured["small"]["success_rate"]
  assert measured["large"]["flops_per_step"] >= 10 * measured["small"]["flops_per_step"]
  recorded = summary["policies"]
  assert recorded["large"]["ci95"][0] > recorded["small"]["ci95"][1]
