"""A row's state is `(seed, actions, switches)`: `Row.replay` of a snapshot rebuilds the episode,
both prompt histories and where the large LM acted."""

import functools

import pytest

from londi_jax import envs
from londi_jax.envs.babyai.prompts import PromptConfig
from londi_jax.envs.workers import EnvWorker
from londi_jax.training.rows import Row, replay_rows

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


def _worker_row():
  return Row(PROMPTS, make_env=lambda env_id: EnvWorker(functools.partial(envs.make, env_id),
                                                        timeout_s=60))


def test_replay_rows_restores_rows_of_workers_together_as_one_by_one_replays_do():
  snaps = [_played_row([0, 1]).snapshot(), _played_row([1, 1, 0, 0]).snapshot()]
  rows = [_worker_row(), _worker_row()]
  try:
    replay_rows(rows, snaps)
    for row, snap in zip(rows, snaps):
      alone = Row(PROMPTS)
      alone.replay(snap)
      assert (row.obs, row.actions, row.switches, row.prompt("large")) == (
          alone.obs, alone.actions, alone.switches, alone.prompt("large"))
    bad = [snaps[0], snaps[1] | {"switches": "0"}]  # refused after the first replay was sent
    with pytest.raises(ValueError, match="4 actions but 1 switches"):
      replay_rows(rows, bad)
    rows[0].replay(snaps[1])  # the first worker's answer was collected: it takes new calls
    assert rows[0].actions == rows[1].actions
  finally:
    for row in rows:
      row.close()
