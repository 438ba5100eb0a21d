"""launch.evaluate: every method on the same episodes, eval.json consistent with its own episode
records, FLOPs that follow from each model's per-step cost and the counted steps and calls, and
the hard budget never exceeded."""

import json
import os

import numpy as np
import pytest

from configs import londi
from londi_jax.envs.babyai.env import ACTIONS
from londi_jax.policies import flops as flops_lib
from londi_jax.training import loop
from londi_jax.training.evaluate_run import evaluate_run
from londi_jax.training.fakes import make_tiny_policies
from londi_jax.training.lm import load_runners
from londi_jax.training.metrics import read_metrics

BUDGET = 2
EPISODES = 6
SEED = 3
TARGET_RATE = 0.01  # below the eager member's rate (2 calls in episodes of up to 64 steps)
PROMPT_TOKENS = 8  # every prompt is cut to its last 8 tokens: a model's steps all cost the same
SWITCHER_HIDDEN = (16,)
FIELDS = ("success_rate", "mean_return", "large_call_fraction", "compute_relative_to_large",
          "max_large_calls_per_episode", "seconds_per_step", "episodes", "flops")


def quiet(line):
  del line


@pytest.fixture(scope="module")
def result(tmp_path_factory):
  """A smoke run under a hard budget of 2 calls per episode; member 0 has a negative price, so
  calling is rewarded and only the budget keeps it from calling on every step."""
  policies = make_tiny_policies(str(tmp_path_factory.mktemp("policies")))
  config = londi.get_config("babyai_text:smoke")
  config.policies.dir = policies
  config.train_steps = 16
  config.log_every = 8
  config.checkpoint_every = 16
  config.eval_every = 0
  config.member_costs = (-0.5, 0.5)
  config.switcher.budget = BUDGET
  config.switcher.hold = 1  # a decision every step, so 16 steps fill replay and train
  config.switcher.n_step = 1
  config.switcher.lagrangian.enabled = True  # composes with the hard budget
  config.switcher.lagrangian.target = TARGET_RATE
  config.eval.num_envs = 4
  config.policies.prompt_buckets = (PROMPT_TOKENS,)
  config.switcher.hidden_sizes = SWITCHER_HIDDEN
  workdir = str(tmp_path_factory.mktemp("run"))
  runners = load_runners(config)
  loop.train(config, workdir, log=quiet, runners=runners)
  out = evaluate_run(workdir, episodes=EPISODES, seed=SEED, runners=runners, log=quiet)
  with open(os.path.join(workdir, "eval.json")) as f:
    saved = json.load(f)
  return out, saved, read_metrics(os.path.join(workdir, "metrics.jsonl")), runners


def test_eval_json_is_written_with_every_method(result):
  out, saved, _, _ = result
  names = set(saved["methods"])
  assert {"small_only", "large_only", "oracle"} <= names
  for c in ("-0.5", "0.5"):
    assert {f"londi_b{BUDGET}_c{c}", f"random_c{c}", f"confidence_c{c}"} <= names
  for m in saved["methods"].values():
    for field in FIELDS:
      assert field in m
  assert saved["seeds"] == out["seeds"]


def test_all_methods_play_identical_seeds(result):
  _, saved, _, _ = result
  # `test` split seeds start at 2,000,000 (londi_jax.envs.seeds.SPLIT_SEED_OFFSETS), one per
  # episode.
  expected = [2_000_000 + SEED + k for k in range(EPISODES)]
  assert saved["seeds"] == expected
  for name, m in saved["methods"].items():
    assert sorted(e["seed"] for e in m["episodes"]) == expected, name
    levels = {e["seed"]: e["level"] for e in m["episodes"]}
    assert [levels[s] for s in expected] == [
        saved["levels"][k % len(saved["levels"])] for k in range(EPISODES)]


def test_fields_agree_with_the_episode_records(result):
  _, saved, _, _ = result
  for name, m in saved["methods"].items():
    eps = m["episodes"]
    assert m["success_rate"] == pytest.approx(np.mean([e["success"] for e in eps])), name
    assert m["mean_return"] == pytest.approx(np.mean([e["return"] for e in eps])), name
    calls, steps = sum(e["calls"] for e in eps), sum(e["length"] for e in eps)
    assert m["large_call_fraction"] == pytest.approx(calls / steps), name
    assert m["max_large_calls_per_episode"] == max(e["calls"] for e in eps), name
    assert m["flops"] == sum(m["flops_by_model"].values())


def test_references_are_exact(result):
  _, saved, _, _ = result
  small, large = saved["methods"]["small_only"], saved["methods"]["large_only"]
  assert small["large_call_fraction"] == 0.0 and small["flops_by_model"]["large"] == 0
  assert large["large_call_fraction"] == 1.0
  assert large["compute_relative_to_large"] == 1.0
  assert large["flops_by_model"]["small"] == 0
  # The small policy is the cheaper model, so small-only costs less than large-only.
  assert 0 < small["compute_relative_to_large"] < 1


def per_step_flops(runner) -> int:
  """Forward FLOPs of one step of a policy: a prompt of `PROMPT_TOKENS` tokens (every prompt is
  longer, so all are cut to that) and BabyAI's six candidate actions."""
  cand_lens = [len(ids) for ids in runner.policy.tokenizer.encode_candidates(list(ACTIONS))]
  return flops_lib.flops_per_step(runner.policy.config, PROMPT_TOKENS, cand_lens)


def switcher_flops_per_step(small_hidden: int) -> int:
  """`2 * fan_in * fan_out` per dense layer of the switcher's MLP: its input is phi(s) (the small
  LM's hidden state, three confidence statistics, the time fraction) and the budget fraction."""
  widths = [small_hidden + 3 + 1 + 1, *SWITCHER_HIDDEN, 2]
  return sum(2 * a * b for a, b in zip(widths, widths[1:]))


def test_flops_are_each_models_step_cost_times_its_counted_steps(result):
  _, saved, _, runners = result
  small, large = runners
  cost = {"small": per_step_flops(small), "large": per_step_flops(large),
          "switcher": switcher_flops_per_step(small.hidden_size)}
  assert cost["large"] > cost["small"] > cost["switcher"] > 0
  large_only_steps = sum(e["length"] for e in saved["methods"]["large_only"]["episodes"])
  for name, m in saved["methods"].items():
    steps = sum(e["length"] for e in m["episodes"])
    calls = sum(e["calls"] for e in m["episodes"])
    kind = name.split("_")[0]
    # Random switching and large-only need the small LM only on the steps that do not call it;
    # every other method runs it on every step. The large LM runs on the calls alone (the
    # oracle's look at its choice elsewhere is free), the switcher on every step of LONDI.
    small_steps = steps - calls if kind in ("random", "large") else steps
    expected = {"small": cost["small"] * small_steps, "large": cost["large"] * calls,
                "switcher": cost["switcher"] * steps if kind == "londi" else 0}
    assert m["flops_by_model"] == expected, name
    assert m["flops"] == sum(expected.values()), name
    assert m["compute_relative_to_large"] == pytest.approx(
        sum(expected.values()) / (cost["large"] * large_only_steps)), name


def test_hard_budget_is_never_exceeded(result):
  _, saved, _, _ = result
  budgeted = [n for n in saved["methods"] if n.split("_")[0] in ("londi", "random", "confidence")]
  assert len(budgeted) == 6
  for name in budgeted:
    m = saved["methods"][name]
    assert max(e["calls"] for e in m["episodes"]) <= BUDGET, name
  # The member paid to call uses its whole budget in every episode long enough to allow it.
  eager = saved["methods"][f"londi_b{BUDGET}_c-0.5"]
  assert all(e["calls"] == min(BUDGET, e["length"]) for e in eager["episodes"])


def test_lagrange_multiplier_rises_while_the_measured_rate_exceeds_its_target(result):
  _, _, records, _ = result
  last = [r for r in records if r["kind"] == "train"][-1]
  eager = last["members"][0]  # paid to call: it spends its budget at the start of each episode
  assert eager["measured_rate"] > TARGET_RATE
  assert eager["lagrange"] > 0.0
  for member in last["members"]:
    assert member["lagrange"] >= 0.0  # projected onto lambda >= 0
