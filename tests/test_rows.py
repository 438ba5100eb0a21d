"""A row's state is `(seed, actions, switches)`: `Row.replay` of a snapshot rebuilds the episode,
both prompt histories and where the large LM acted."""

import pytest

from londi_jax.envs.babyai.prompts import PromptConfig
from londi_jax.training.rows import Row

LEVEL = "babyai_text/BabyAI-GoToLocal-v0"
PROMPTS = {"small": PromptConfig(num_observations=1, num_actions=0),
           "large": PromptConfig(num_observations=3)}


def _played_row(switches):
  row = Row(PROMPTS)
  row.start(LEVEL, 7)
  for k, g in enumerate(switches):  # turns never end an episode
    row.step(("turn left", "turn right", "turn left")[k % 3], g)
  return row


def test_replay_restores_actions_prompts_and_switches():
  played = _played_row([0, 1, 1, 0, 1])
  assert played.calls == 3
  again = Row(PROMPTS)
  again.replay(played.snapshot())
  assert again.actions == played.actions and again.switches == [0, 1, 1, 0, 1]
  assert again.calls == 3 and again.t == 5
  assert [again.prompt(n) for n in ("small", "large")] == [played.prompt(n)
                                                           for n in ("small", "large")]


def test_an_older_snapshot_with_only_the_number_of_calls_restores_that_number():
  snap = _played_row([0, 1, 0, 1]).snapshot()
  old = {k: v for k, v in snap.items() if k != "switches"} | {"calls": 2}
  row = Row(PROMPTS)
  row.replay(old)
  assert row.calls == 2 and len(row.switches) == 4


def test_a_snapshot_whose_switches_do_not_match_its_actions_is_refused():
  snap = _played_row([0, 1, 0]).snapshot() | {"switches": "01"}
  with pytest.raises(ValueError, match="3 actions but 2 switches"):
    Row(PROMPTS).replay(snap)
