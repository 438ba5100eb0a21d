"""The embedded default BabyAI-Text policies load and, measured here on held-out episodes, play
within 5 points of the success rates recorded in `artifacts/babyai_text/summary.json`.

How well the check separates a good policy from one 10 points worse: each policy plays
`EPISODES[name]` episodes, half per level, on `test` seeds disjoint from the recorded evaluation's
(400 episodes). With the recorded per-level rates (small 0.76 / 0.24, large 0.87 / 0.54) the
variance of one episode's success is about 0.18 for both, so the standard error of the difference
between the measured and the recorded rate is sqrt(0.18 / n + 0.18 / 400): 2.5 points for the
small policy (n = 1000) and 3.7 for the large one (n = 200). The threshold, recorded - 5 points,
lies halfway to a regression of 10 points: a policy as good as recorded fails it, and a policy 10
points worse passes it, with probability 2% (small) and 9% (large). About a minute on 2 CPU cores:
the large policy plays in batches of 8 and few prompt shapes, so it compiles about twice.
"""

import json
import os

import pytest

from londi_jax.policies import Buckets, load_policy
from londi_jax.training.policy_eval import evaluate_policy

ARTIFACTS = os.path.join(os.path.dirname(__file__), os.pardir, "artifacts", "babyai_text")
EPISODES = {"small": 1000, "large": 200}
NUM_ENVS = {"small": 32, "large": 8}
SEED = 500_000  # test-split episodes 500,000 on; the recorded evaluation played 0-399
MARGIN = 0.05  # half of the 10-point regression the check must catch
# Prompts run to about 35 tokens (small) and 95 (large): none is cut, and each policy compiles
# for one or two prompt lengths.
PROMPT_BUCKETS = (64, 96, 128, 256)

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
    buckets = Buckets(batch=(NUM_ENVS[name],), prompt=PROMPT_BUCKETS)
    policy = load_policy(os.path.join(ARTIFACTS, name), buckets=buckets)
    out[name] = evaluate_policy(
        policy, policy.meta["prompt"], summary["levels"], EPISODES[name], seed=SEED,
        split="test", num_envs=NUM_ENVS[name], mode=summary["eval_mode"])
  return out


@pytest.mark.parametrize("name", ["small", "large"])
def test_success_rate_is_within_five_points_of_the_recorded_one(summary, measured, name):
  recorded = summary["policies"][name]["success_rate"]
  got = measured[name]
  assert got["episodes"] == EPISODES[name]
  assert got["success_rate"] >= recorded - MARGIN, (name, recorded, got["success_rate"])


def test_large_beats_small_by_ten_points_at_ten_times_the_flops(measured):
  # The recorded gap is 20 points; its measured standard error here is about 3.5 points.
  assert measured["large"]["success_rate"] >= measured["small"]["success_rate"] + 0.10
  assert measured["large"]["flops_per_step"] >= 10 * measured["small"]["flops_per_step"]
