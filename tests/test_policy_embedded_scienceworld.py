"""The embedded ScienceWorld policies load with the preset's prompts and, on gold-path states of
test variations that neither saw in training, the large one picks the gold action more often than
the small one, at more than ten times its FLOPs.

Playing episodes (as `tests/test_policy_embedded.py` does for BabyAI-Text) would take the large
policy about half an hour here, so the check scores states instead: the gold paths of the first
`VARIATIONS` test variations of each task, every candidate of each state: 94 states, where the
small policy picked the gold action on 0.479 of them and the large one on 0.713, at 32x the FLOPs
(5 minutes on 2 CPU cores beside a running sweep). The check asks for about a third of that
gap, so a swapped or untrained pair fails it, and the small policy must be far above a uniform
pick (under 0.01 with the hundreds of candidates a state has). The gold paths and greedy scoring
are deterministic, so the check gives the same answer on every run.
"""

import json
import os

import pytest

from configs.pretrain import SCIENCEWORLD_TASKS, scienceworld as pretrain_preset
from launch.pretrain_scienceworld import states_of
from londi_jax.envs.demo_files import DemoWriter, read_demos
from londi_jax.envs.scienceworld import gold
from londi_jax.envs.scienceworld.prompts import PromptConfig
from londi_jax.policies import bc, bc_sampled, load_policy

pytest.importorskip("scienceworld")

ARTIFACTS = os.path.join(os.path.dirname(__file__), os.pardir, "artifacts", "scienceworld")
VARIATIONS = 2  # test variations per task
SEED = 0  # the test split's first variations (the recorded evaluation played 30 per task)


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
  folder = tmp_path_factory.mktemp("gold")
  for env_id in SCIENCEWORLD_TASKS:
    with DemoWriter(str(folder / env_id.split("/")[1])) as writer:
      gold.collect(env_id, writer, episodes=VARIATIONS, seed=SEED, split="test", distinct=True,
                   simplification="easy")
  return bc.episodes_of(r for task in sorted(os.listdir(folder))
                        for r in read_demos(str(folder / task)))


@pytest.fixture(scope="module")
def scored(episodes):
  """Per policy: greedy accuracy over every candidate and FLOPs per state."""
  out = {}
  for name in ("small", "large"):
    policy = load_policy(os.path.join(ARTIFACTS, name))
    states = bc_sampled.make_states(
        policy.tokenizer, *states_of(episodes, PromptConfig(**policy.meta["prompt"])), 512,
        policy.meta["max_candidate_tokens"])
    accuracy, flops = bc_sampled.greedy_accuracy_and_flops(policy, states, batch_size=8)
    out[name] = dict(states=states.size, accuracy=accuracy, flops_per_state=flops)
  return out


def test_policies_carry_the_presets_prompts_and_candidate_cut():
  preset = pretrain_preset("scienceworld")
  with open(os.path.join(ARTIFACTS, "summary.json")) as f:
    assert json.load(f)["levels"] == list(SCIENCEWORLD_TASKS)
  for name in ("small", "large"):
    meta = load_policy(os.path.join(ARTIFACTS, name)).meta
    p = preset.policies[name]
    assert meta["prompt"] == p.prompt.to_dict()
    assert meta["max_candidate_tokens"] == p.max_candidate_tokens
    assert meta["steps"] == p.steps


def test_large_picks_gold_actions_of_test_variations_more_often(scored):
  small, large = scored["small"], scored["large"]
  assert small["states"] == large["states"] > 80
  assert small["accuracy"] > 0.2, small
  assert large["accuracy"] >= small["accuracy"] + 0.08, (small, large)


def test_large_costs_over_ten_times_the_small_ones_flops(scored):
  assert scored["large"]["flops_per_state"] >= 10 * scored["small"]["flops_per_state"]

