"""The one episode runner: a fixed list of episodes, played a batch of rows at a time.

Episode `k` plays `levels[k % len(levels)]` from the reset seed `episode_seed(seed, k, split)`
(`Schedule`). `num_envs` rows (slots) play at once. On every step the rows in flight go, in slot
order, to one `act` call that returns each row's action and switch; every row then steps (worker
environments all at once, `envs.vector.call_all`), and in slot order each row whose episode ended
starts its next episode. The batches and their order therefore depend only on the schedule and
`num_envs`: a policy that draws from its own key stream (one key per call) samples the same
actions on every run.

Which episode a free slot starts:

- by default the next one of the schedule, whatever its level (a row keeps one environment per
  level it meets);
- when a level's family holds a heavy resource (`envs.heavy`: ScienceWorld's JVM), slot `i` plays
  only the episodes of `levels[i % len(levels)]`, in schedule order, so each row holds one
  environment (and so at most `num_envs` JVMs run).

    played = play_episodes(schedule, {"small": config_s, "large": config_l}, num_envs, act)
    played.episodes[k]   # seed, level, success, return, length, calls, score, switches of
                         # episode k

Switching evaluation (`training.evaluation.run_method`) and single-policy evaluation
(`training.policy_eval.evaluate_policy`) both play their episodes here. `EnvPool` keeps the rows,
and so their environments, from one `play_episodes` call to the next (every method of an
evaluation plays on the same environments instead of starting new ones).
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from londi_jax import envs
from londi_jax.envs.seeds import episode_seed
from londi_jax.envs.vector import call_all
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


def episode_record(row: Row, info: Mapping[str, Any], trace: bool = False) -> dict[str, Any]:
  """What is kept of an episode that just ended on `row` (`info`: its last step's).

  `score` is the episode's final score (ScienceWorld's 0-100, `Row.score`), None for environments
  without scores; `variation` is kept when the environment names one (ScienceWorld's);
  `switches` has one character per step, `1` where the large LM chose the action. With `trace`,
  `actions` lists the actions taken (where a switcher calls: `training.call_sites`).
  """
  record = {"seed": row.seed, "level": row.env_id, "success": bool(info["success"]),
            "return": row.episode_return, "length": row.t, "calls": row.calls,
            "score": row.score, "switches": "".join(map(str, row.switches))}
  if trace:
    record["actions"] = list(row.actions)
  variation = row.obs.extra.get("variation")
  if variation is not None:
    record["variation"] = variation
  return record


def pinned(levels: Sequence[str]) -> bool:
  """Whether slots keep one level each: some level's family holds a heavy resource."""
  return any(envs.heavy(level) for level in levels)


class EnvPool:
  """Rows kept across `play_episodes` calls, so their environments (and JVMs) are built once.

  Every call must use the same prompt configs and levels (slot `i` of a pinned schedule then
  always meets the same level). `close()` ends the environments.

  Args:
    prompt_configs: per policy name, its prompt config (`Row`).
    make_env: builds an environment of an id (`rows.make_env_fn`).
  """

  def __init__(self, prompt_configs: Mapping[str, Any],
               make_env: Callable[[str], Any] = envs.make):
    self._prompt_configs = dict(prompt_configs)
    self._make_env = make_env
    self._rows: list[Row] = []

  def rows(self, n: int) -> list[Row]:
    """The first `n` rows, built when first asked for."""
    while len(self._rows) < n:
      self._rows.append(Row(self._prompt_configs, self._make_env))
    return self._rows[:n]

  def close(self) -> None:
    for row in self._rows:
      row.close()

  def __enter__(self) -> EnvPool:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


class Slots:
  """`min(num_envs, episodes)` rows and the queues of episodes they have yet to start (one queue
  shared by every slot, or one per level when the levels are `pinned`; see the module docstring).

  Args:
    schedule: the episodes.
    prompt_configs: per policy name, its prompt config (`Row`).
    num_envs: episodes in flight.
    make_env: builds an environment of an id (`rows.make_env_fn`).
    pool: rows to play on (closed by their owner); None builds rows closed by `close()`.

  Raises:
    ValueError: pinned levels with fewer slots than levels that have episodes.
  """

  def __init__(self, schedule: Schedule, prompt_configs: Mapping[str, Any], num_envs: int,
               make_env: Callable[[str], Any] = envs.make, pool: EnvPool | None = None):
    self.schedule = schedule
    n = min(num_envs, schedule.episodes)
    self._owned = pool is None
    self.rows = pool.rows(n) if pool is not None else [
        Row(prompt_configs, make_env) for _ in range(n)]
    self.episode: list[int | None] = [None] * len(self.rows)  # episode index per slot
    if pinned(schedule.levels):
      num_levels = len(schedule.levels)
      played = min(num_levels, schedule.episodes)
      if n < played:
        raise ValueError(
            f"{played} levels of {list(schedule.levels)} hold a heavy environment each "
            f"(one level per slot) and need at least {played} slots; got {n} (num_envs)")
      self._queues = [collections.deque(range(j, schedule.episodes, num_levels))
                      for j in range(num_levels)]
      self._queue_of = [i % num_levels for i in range(n)]
    else:
      self._queues = [collections.deque(range(schedule.episodes))]
      self._queue_of = [0] * n

  def start(self, i: int) -> None:
    """Starts the next episode of slot `i`'s queue, or frees the slot when none is left."""
    self.episode[i] = None
    queue = self._queues[self._queue_of[i]]
    if queue:
      k = queue.popleft()
      self.rows[i].start(self.schedule.level(k), self.schedule.reset_seed(k))
      self.episode[i] = k

  def live(self) -> list[int]:
    """The slots playing an episode, in order."""
    return [i for i, k in enumerate(self.episode) if k is not None]

  def close(self) -> None:
    """Ends the rows' environments, unless a pool owns them."""
    if self._owned:
      for row in self.rows:
        row.close()


def play_episodes(schedule: Schedule, prompt_configs: Mapping[str, Any], num_envs: int, act: Act,
                  progress: Callable[[int], Any] | None = None,
                  make_env: Callable[[str], Any] = envs.make,
                  pool: EnvPool | None = None, trace: bool = False) -> Played:
  """Plays every episode of `schedule`, `num_envs` at a time, with the actions of `act`.

  Args:
    schedule: the episodes.
    prompt_configs: per policy name, its prompt config (`Row`); `row.prompt(name)` renders it.
    num_envs: episodes in flight.
    act: chooses the actions of the rows in flight (see `Act`).
    progress: called with 1 after each finished episode (e.g. a tqdm bar's `update`).
    make_env: builds an environment of an id (default `envs.make`, in this process;
      `rows.make_env_fn(config)` for a run's backend and environment arguments).
    pool: rows kept across calls (`EnvPool`, built with the same prompt configs); None builds
      rows with `make_env` and closes them at the end.
    trace: keep each episode's actions in its record (`episode_record`).

  Returns:
    The episodes' records and the wall time of the loop.
  """
  slots = Slots(schedule, prompt_configs, num_envs, make_env, pool)
  records: list[dict[str, Any] | None] = [None] * schedule.episodes
  try:
    for i in range(len(slots.rows)):
      slots.start(i)
    start = time.perf_counter()
    while live := slots.live():
      rows = [slots.rows[i] for i in live]
      actions, switches = act(live, rows)
      actions = list(actions)
      results = call_all([row.env for row in rows], "step", actions)
      for i, row, action, switch, result in zip(live, rows, actions, switches, results):
        _, done, info = row.step(action, int(switch), result=result)
        if done:
          records[slots.episode[i]] = episode_record(row, info, trace)
          if progress is not None:
            progress(1)
          slots.start(i)
    wall = time.perf_counter() - start
  finally:
    slots.close()
  return Played(episodes=records, wall_s=wall)
