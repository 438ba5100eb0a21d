"""launch.evaluate: every method on the same episodes, eval.json consistent with its own episode
records, FLOPs that follow from each model's per-step cost and the counted steps and calls, and
the hard budget never exceeded."""

import json
import os

import numpy as np
import pytest

from configs import londi
from londi_jax import envs
from londi_jax.envs.babyai.env import ACTIONS
from londi_jax.policies import flops as flops_lib
from londi_jax.training import loop
from londi_jax.envs.seeds import episode_seed
from londi_jax.training import evaluation as ev
from londi_jax.training.evaluate_run import evaluate_run, first_test_seed
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
  assert {"small_only", "large_only", "disagreement"} <= names
  for c in ("-0.5", "0.5"):
    assert {f"londi_b{BUDGET}_c{c}", f"random_c{c}", f"random_held_c{c}", f"confidence_c{c}",
            f"schedule_c{c}"} <= names
  for m in saved["methods"].values():
    for field in FIELDS:
      assert field in m
  assert saved["seeds"] == out["seeds"]


def test_all_methods_play_identical_seeds(result):
  _, saved, _, _ = result
  # `test` split seeds start at 2,000,000 (londi_jax.envs.seeds.SPLIT_SEED_OFFSETS); evaluation
  # seed S starts S * 100,000 further (EVAL_SEED_STRIDE), one seed per episode.
  expected = [2_000_000 + SEED * 100_000 + k for k in range(EPISODES)]
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
    for e in eps:
      assert len(e["switches"]) == e["length"] and e["switches"].count("1") == e["calls"], name
      assert ("actions" in e) == name.startswith("londi"), name  # only LONDI is traced


def test_a_traced_episode_replays_to_its_recorded_outcome(result):
  """LONDI's recorded actions, played again from the episode's seed, end the episode on the last
  one with the recorded return: the trace is the trajectory that was scored."""
  _, saved, _, _ = result
  name = next(n for n in saved["methods"] if n.startswith("londi"))
  for e in saved["methods"][name]["episodes"]:
    env = envs.make(e["level"])
    env.reset(seed=e["seed"])
    total, done = 0.0, False
    for t, action in enumerate(e["actions"]):
      assert not done, f"episode seed {e['seed']} ended before its step {t}"
      _, reward, done, _ = env.step(action)
      total += reward
    assert done and total == pytest.approx(e["return"])
    env.close()


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
    # Rules that need no LM output (random switching, schedules, large-only) run the small LM
    # only on the steps that do not call the large one; every other method runs it on every
    # step. The large LM counts on the calls alone, the switcher on every step of LONDI.
    small_steps = steps - calls if kind in ("random", "schedule", "large") else steps
    expected = {"small": cost["small"] * small_steps, "large": cost["large"] * calls,
                "switcher": cost["switcher"] * steps if kind == "londi" else 0}
    assert m["flops_by_model"] == expected, name
    assert m["flops"] == sum(expected.values()), name
    assert m["compute_relative_to_large"] == pytest.approx(
        sum(expected.values()) / (cost["large"] * large_only_steps)), name
  # The disagreement reference looks at the large LM's choice on every step: with those passes
  # it costs a small and a large pass per step.
  ref = saved["methods"]["disagreement"]
  steps = sum(e["length"] for e in ref["episodes"])
  assert ref["compute_with_reference_passes"] == pytest.approx(
      (cost["small"] + cost["large"]) * steps / (cost["large"] * large_only_steps))


def test_hard_budget_is_never_exceeded(result):
  _, saved, _, _ = result
  budgeted = [n for n in saved["methods"]
              if n.split("_")[0] in ("londi", "random", "confidence", "schedule")]
  assert len(budgeted) == 10
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


def test_calibrated_baselines_record_their_dev_calibration(result):
  _, saved, _, _ = result
  for c in ("-0.5", "0.5"):
    for prefix in ("confidence", "schedule"):
      m = saved["methods"][f"{prefix}_c{c}"]
      assert m["calibration"]["dev_episodes"] == 8  # the smoke preset's eval.dev_episodes
      assert 0.0 <= m["calibration"]["dev_call_fraction"] <= 1.0
    assert saved["methods"][f"schedule_c{c}"]["schedule"] in ("after", "first")


def test_evaluation_seeds_never_share_an_episode():
  first = {s: evaluate_run_seeds(s, 1000) for s in (0, 1, 2)}
  assert not set(first[0]) & set(first[1]) and not set(first[1]) & set(first[2])
  with pytest.raises(ValueError, match="100000"):
    first_test_seed(0, 100_001)


def evaluate_run_seeds(seed, episodes):
  start = first_test_seed(seed, episodes)
  return [episode_seed(start, k, "test") for k in range(episodes)]


def test_schedule_k_matches_the_rate_on_given_lengths():
  lengths = np.array([10, 20, 30])  # 60 steps
  # "after k": sum(max(0, L - k)) / 60; k = 15 gives (0 + 5 + 15) / 60 = 1/3.
  assert ev.schedule_k("after", lengths, 1 / 3) == 15
  # "first k": sum(min(L, k)) / 60; k = 5 gives 15 / 60 = 1/4.
  assert ev.schedule_k("first", lengths, 0.25) == 5


def test_random_held_decides_every_hold_steps_at_its_rate():
  hold, rate, episodes = 4, 0.3, 2000
  t = np.tile(np.arange(16), episodes)
  seeds = np.repeat(np.arange(episodes), 16)
  view = ev.View(small=None, phi=None, remaining=np.zeros_like(t), episode_seeds=seeds, t=t,
                 small_actions=None, large_actions=None)
  g = ev.random_held(rate, seed=1, hold=hold).rule(view).reshape(episodes, 4, hold)
  assert (g == g[..., :1]).all()  # constant within each block of `hold` steps
  assert abs(g.mean() - rate) < 3 * np.sqrt(rate * (1 - rate) / (episodes * 4))
  assert 0 < g[:, :, 0].mean(0).std() < 0.05  # blocks are not all decided alike


def test_an_evaluation_cut_off_resumes_at_the_method_it_was_playing(result):
  """Stopped after LONDI's first member, a rerun replays nothing already played and writes the
  same eval.json as the evaluation that ran through."""
  out, saved, _, runners = result
  run_dir = os.path.abspath(saved["workdir"])

  class Stop(Exception):
    pass

  lines = []

  def stop_after_first_member(line):
    lines.append(line)
    if line.strip().startswith("londi"):
      raise Stop

  with pytest.raises(Stop):
    evaluate_run(run_dir, episodes=EPISODES, seed=SEED, runners=runners,
                 log=stop_after_first_member)
  kept = os.listdir(os.path.join(run_dir, "eval_partial", os.listdir(
      os.path.join(run_dir, "eval_partial"))[0]))
  assert sorted(kept) == sorted(f"{name}.json" for name in list(out["methods"])[:4])
  lines.clear()
  again = evaluate_run(run_dir, episodes=EPISODES, seed=SEED, runners=runners, log=lines.append)
  resumed = [line.split()[0] for line in lines if "resumed from" in line]
  assert resumed == list(out["methods"])[:4]
  def untimed(methods):  # wall times differ between runs; everything else must not
    return json.dumps({name: {k: v for k, v in m.items() if "seconds" not in k}
                       for name, m in methods.items()}, sort_keys=True, default=float)

  assert untimed(again["methods"]) == untimed(out["methods"])
  assert not os.path.exists(os.path.join(run_dir, "eval_partial"))


def test_an_evaluation_resumed_after_its_last_method_plays_nothing_again(result):
  """Every method's result kept, a rerun plays no episode at all: neither test episodes nor the
  dev calibrations of the rate-matched baselines, which it reads back with their calibration."""
  out, saved, _, runners = result
  run_dir = os.path.abspath(saved["workdir"])
  last = list(out["methods"])[-1]

  class Stop(Exception):
    pass

  def stop_at_last(line):
    if line.strip().startswith(last):
      raise Stop

  with pytest.raises(Stop):
    evaluate_run(run_dir, episodes=EPISODES, seed=SEED, runners=runners, log=stop_at_last)
  played = []
  again = evaluate_run(run_dir, episodes=EPISODES, seed=SEED, runners=runners, log=quiet,
                       progress=lambda name, n: played.append(name) or _NoBar())
  assert played == []
  assert again["methods"][last]["calibration"] == out["methods"][last]["calibration"]


class _NoBar:
  def update(self, n):
    del n

  def close(self):
    pass
