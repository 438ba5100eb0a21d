"""Switching on ScienceWorld with the real JVM: the SwiftSage-style trigger rule's decisions and
the progress features on a scripted episode, and the score-increment reward against the episode's
recorded scores."""

import os

import numpy as np
import pytest

from londi_jax import envs
from londi_jax.envs.workers import descendant_pids
from londi_jax.training import evaluation as ev
from londi_jax.training import progress
from londi_jax.training.loop import switcher_reward
from londi_jax.training.rows import Row

pytest.importorskip("scienceworld")

TASK = "scienceworld/find-living-thing"


@pytest.fixture(scope="module", autouse=True)
def no_java_left():
  """Torn down last: every JVM this module started is gone by then."""
  yield
  assert descendant_pids(os.getpid(), "java") == []


@pytest.fixture(scope="module")
def gold():
  """The gold path of the task's first train variation (seed 0)."""
  env = envs.make(TASK, gold_path=True)
  try:
    env.reset(seed=0)
    yield [a for a in env.gold_actions if a != "0"]
  finally:
    env.close()


@pytest.fixture(scope="module")
def row():
  r = Row({"small": None})
  yield r
  r.close()


def _script(gold):
  """`(action, proposal)` per step: the action the row takes and the small LM's proposal (the
  action itself when it is a candidate, else `look around`; `focus` proposes a focus action)."""
  go_greenhouse, open_outside, go_outside, look, focus, pick, open_kitchen, go_kitchen, move = \
      gold[1:]
  assert look == "look around" and focus.startswith("focus on")
  steps = [gold[0], "teleport to the moon", go_greenhouse, open_outside, go_outside, look, focus,
           pick, open_kitchen, go_kitchen] + [look] * 5 + [move]
  proposals = list(steps)
  proposals[1] = look
  proposals[12] = "focus"  # a second focus proposal, once the episode has focused
  return steps, proposals


def test_trigger_rule_takes_over_after_rejections_stalls_and_the_first_focus(gold, row):
  steps, proposals = _script(gold)
  rules = {"p4d2": ev.trigger_rule(patience=4, duration=2).rule,
           "p2d2": ev.trigger_rule(patience=2, duration=2).rule,
           "p2d2_rearm": ev.trigger_rule(patience=2, duration=2, rearm=True).rule}
  row.start(TASK, seed=0)
  decisions, rewards, answers = {name: [] for name in rules}, [], []
  for action, proposal in zip(steps, proposals):
    candidates = row.obs.valid_actions
    if proposal == "focus":
      proposal = next(c for c in candidates if c.startswith("focus on"))
    proposal = proposal if proposal in candidates else "look around"
    view = ev.View(small=None, phi=None, remaining=np.zeros(1, np.int64),
                   episode_seeds=np.array([row.seed]), t=np.array([row.t]),
                   small_actions=np.array([candidates.index(proposal)]), large_actions=None,
                   rows=[row])
    for name, rule in rules.items():
      decisions[name].append(int(rule(view)[0]))
    r, done, info = row.step(action)
    rewards.append(r)
    answers.append(row.obs.extra["observation"])
  assert done and info["success"]
  # What the script's steps gave, which the expected decisions below rely on.
  assert answers[1].startswith("No known action matches that input")
  assert [int(r > 0) for r in rewards] == [1, 0, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1]
  # By hand, patience 4 and duration 2:
  #   t=2: the last action was rejected -> the large LM for t = 2, 3;
  #   t=6: the small LM proposes the first `focus on` -> t = 6, 7;
  #   t=12: another focus proposal, but the episode has focused -> no;
  #   t=14: no score on steps 10..13 -> t = 14, 15.
  assert decisions["p4d2"] == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1]
  # Patience 2: the rejection at t=2 (t = 2, 3); no score on steps 3, 4 -> t = 5, 6; no score
  # on 10, 11 -> t = 12, 13, and still none on 12, 13 -> t = 14, 15.
  assert decisions["p2d2"] == [0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1]
  # Re-armed, a stall counts only the small LM's steps since the last takeover: not at t=5
  # (step 3 was the large LM's), at t=6 both the focus and the stall on 4, 5 (t = 6, 7), at
  # t=12 (steps 10, 11) -> t = 12, 13, and not again before t=16.
  assert decisions["p2d2_rearm"] == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0]


def test_progress_features_follow_the_scripted_episode(gold, row):
  steps, proposals = _script(gold)
  row.start(TASK, seed=0)
  phi, scores = [], [0]
  for action, proposal in zip(steps, proposals):
    candidates = row.obs.valid_actions
    if proposal == "focus":
      proposal = next(c for c in candidates if c.startswith("focus on"))
    probs = np.array([[float(c == proposal) for c in candidates]])  # the small LM sure of it
    phi.append(progress.progress_features([row], probs)[0])
    _, done, info = row.step(action)
    scores.append(info["score"])
  assert done
  phi = np.array(phi)
  limit = row.env.step_limit
  # Rewards rose on steps 0, 2, 6, 7, 9 (the trigger test's record): the steps since, by hand.
  np.testing.assert_allclose(phi[:, 1] * limit, [0, 0, 1, 0, 1, 2, 3, 0, 0, 1, 0, 1, 2, 3, 4, 5])
  np.testing.assert_allclose(phi[:, 0], np.array(scores[:-1]) / 100, rtol=1e-6)
  assert phi[:, 2].tolist() == [float(t == 2) for t in range(16)]  # step 1 was rejected
  assert phi[:, 3].tolist() == [float(t >= 7) for t in range(16)]  # step 6 focused
  # The proposal is a focus at t = 6 (the first) and t = 12 (after the episode focused).
  assert phi[:, 4].tolist() == [float(t == 6) for t in range(16)]


def test_score_reward_sums_to_the_final_score_over_100(gold, row):
  row.start(TASK, seed=0)
  total, scores = 0.0, []
  for action in gold:
    r, done, info = row.step(action)
    total += switcher_reward("score", r, done, info)
    scores.append(info["score"])
  assert done and info["success"] and scores[-1] == 100
  assert total == pytest.approx(scores[-1] / 100)
  increments = np.diff([0] + scores) / 100
  assert [switcher_reward("score", r, False, {"max_score": 100})
          for r in np.diff([0] + scores)] == pytest.approx(increments)
  with pytest.raises(ValueError, match="max_score"):
    switcher_reward("score", 1.0, True, {"success": True})  # BabyAI's info has no max score
