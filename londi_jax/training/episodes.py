"""The one episode runner: a fixed list of episodes, played a batch of rows at a time.

Episode `k` plays `levels[k % len(levels)]` from the reset seed `episode_seed(seed, k, split)`
(`Schedule`). `num_envs` rows play at once. On every step the rows in flight go, in slot order, to
one `act` call that returns each row's action and switch; every row then steps, and a row whose
episode ends starts the next episode of the queue before the next row steps. The batches and
their order therefore depend only on the schedule and `num_envs`: a policy that draws from its own
key stream (one key per call) samples the same actions on every run.

    played = play_episodes(schedule, {"small": config_s, "large": config_l}, num_envs, act)
    played.episodes[k]   # seed, level, success, return, length, calls of episode k

Switching evaluation (`training.evaluation.run_method`) and single-policy evaluation
(`training.policy_eval.evaluate_policy`) both play their episodes here.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from londi_jax.envs.seeds import episode_seed
from londi_jax.training.rows import Row

# act(slots, rows) -> (actions, switches): the action string of each row in flight and whether
# the large LM chose it (`[n]` ints, summed into the episode's `calls`); `slots` are the rows'
# slot indices, stable over an episode (for state a caller keeps per row).
Act = Callable[[list[int], list[Row]], tuple[Sequence[str], np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Which episodes to play.

  Attributes:
    levels: the environment ids; episode `k` plays `levels[k % len(levels)]`.
    episodes: how many episodes.
    seed: first seed of the range.
    split: the seed range (`train`, `dev`, `test`; `londi_jax.envs.seeds`).
  """

  levels: tuple[str, ...]
  episodes: int
  seed: int
  split: str = "test"

  def level(self, k: int) -> str:
    return self.levels[k % len(self.levels)]

  def reset_seed(self, k: int) -> int:
    return episode_seed(self.seed, k, self.split)

  def reset_seeds(self) -> list[int]:
    return [self.reset_seed(k) for k in range(self.episodes)]


@dataclasses.dataclass
class Played:
  """The outcome of `play_episodes`.

  Attributes:
    episodes: per episode, in schedule order, its `episode_record`.
    wall_s: wall time of the stepping loop (the first resets excluded).
  """

  episodes: list[dict[str, Any]]
  wall_s: float


def episode_record(row: Row, info: Mapping[str, Any]) -> dict[str, Any]:
  """What is kept of an episode that just ended on `row` (`info`: its last step's)."""
  return {"seed": row.seed, "level": row.env_id, "success": bool(info["success"]),
          "return": row.episode_return, "length": row.t, "calls": row.calls}


class Slots:
  """`min(num_envs, episodes)` rows and the queue of episodes they have yet to start."""

  def __init__(self, schedule: Schedule, prompt_configs: Mapping[str, Any], num_envs: int):
    self.schedule = schedule
    self.rows = [Row(prompt_configs) for _ in range(min(num_envs, schedule.episodes))]
    self.episode: list[int | None] = [None] * len(self.rows)  # episode index per slot
    self._queue = collections.deque(range(schedule.episodes))

  def start(self, i: int) -> None:
    """Starts the next episode of the queue in slot `i`, or frees the slot when none is left."""
    self.episode[i] = None
    if self._queue:
      k = self._queue.popleft()
      self.rows[i].start(self.schedule.level(k), self.schedule.reset_seed(k))
      self.episode[i] = k

  def live(self) -> list[int]:
    """The slots playing an episode, in order."""
    return [i for i, k in enumerate(self.episode) if k is not None]

  def close(self) -> None:
    for row in self.rows:
      row.close()


def play_episodes(schedule: Schedule, prompt_configs: Mapping[str, Any], num_envs: int, act: Act,
                  progress: Callable[[int], Any] | None = None) -> Played:
  """Plays every episode of `schedule`, `num_envs` at a time, with the actions of `act`.

  Args:
    schedule: the episodes.
    prompt_configs: per policy name, its prompt config (`Row`); `row.prompt(name)` renders it.
    num_envs: episodes in flight.
    act: chooses the actions of the rows in flight (see `Act`).
    progress: called with 1 after each finished episode (e.g. a tqdm bar's `update`).

  Returns:
    The episodes' records and the wall time of the loop.
  """
  slots = Slots(schedule, prompt_configs, num_envs)
  records: list[dict[str, Any] | None] = [None] * schedule.episodes
  try:
    for i in range(len(slots.rows)):
      slots.start(i)
    start = time.perf_counter()
    while live := slots.live():
      rows = [slots.rows[i] for i in live]
      actions, switches = act(live, rows)
      for i, row, action, switch in zip(live, rows, actions, switches):
        _, done, info = row.step(action, int(switch))
        if done:
          records[slots.episode[i]] = episode_record(row, info)
          if progress is not None:
            progress(1)
          slots.start(i)
    wall = time.perf_counter() - start
  finally:
    slots.close()
  return Played(episodes=records, wall_s=wall)
