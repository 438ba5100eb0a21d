"""Environment rows the host loop steps: one text environment each, with a prompt history per
policy and the log of the current episode's actions. A row serves any registered environment
family: its prompt histories come from `envs.prompt_history` and its time from `env.step_limit`.

Every episode is reset from a seed and every action is recorded with whether the large LM chose
it, so a row's state is exactly `(seed, actions, switches)`: a checkpoint stores that and
`Row.replay` rebuilds the environment and both prompt histories by playing the actions again (the
environments are deterministic given a seed).

`make_env_fn(config)` builds a run's environments: in the backend of `config.envs` and with the
keyword arguments of `config.env_kwargs` (ScienceWorld's step limit and simplification), for the
training rows, the evaluation rows and the calibration rows alike.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import ml_collections
import numpy as np

from londi_jax import envs
from londi_jax.envs.base import PromptHistory
from londi_jax.envs.seeds import episode_seed
from londi_jax.envs.workers import env_factory


def env_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The keyword arguments every environment of a run is built with (`config.env_kwargs`; none
  when the config has no such field, as BabyAI-Text's)."""
  kwargs = config.get("env_kwargs")
  if kwargs is None:
    return {}
  return kwargs.to_dict() if isinstance(kwargs, ml_collections.ConfigDict) else dict(kwargs)


def make_env_fn(config: ml_collections.ConfigDict) -> Callable[[str], Any]:
  """`make(env_id) -> TextEnv` for a run: the backend of `config.envs` (`backend`,
  `ray_address`, `timeout_s`; in this process when the config has no `envs` block) and the
  keyword arguments of `env_kwargs(config)`."""
  cfg = config.get("envs")
  if cfg is None:
    make = env_factory("local")
  else:
    make = env_factory(cfg.backend, ray_address=cfg.get("ray_address", ""),
                       timeout_s=float(cfg.get("timeout_s", 60.0)))
  kwargs = env_kwargs(config)
  if not kwargs:
    return make
  return lambda env_id: make(env_id, **kwargs)


class Row:
  """One environment slot; it may play different levels (one environment object per level).

  Attributes:
    score: the latest score of the current episode (`info["score"]`, or `obs.extra["score"]`
      after a reset; ScienceWorld's 0-100), None for environments without scores (BabyAI-Text).
      A step that ends without a score (a restarted worker's) keeps the one before.
    switches: per step of the current episode, 1 where the large LM chose its action; `calls`
      is their sum.
    memory: `phi` at the current episode's decision points so far, with `features.memory`
      (`training.features.build_features` appends to it); empty otherwise.

  Args:
    prompt_configs: per policy name, its prompt config (a saved mapping of the family's
      `PromptConfig` fields, or the family's `PromptConfig`; see `envs.prompt_history`).
    make_env: builds the environment of an id (default `envs.make`, in this process; see
      `envs.workers.env_factory` for worker processes and Ray actors).
    max_envs: environments kept open (one per id started); starting another id beyond it closes
      the others first (a ScienceWorld environment is a JVM). 0 keeps every one.
  """

  def __init__(self, prompt_configs: Mapping[str, Any],
               make_env: Callable[[str], Any] = envs.make, max_envs: int = 0):
    self._make_env = make_env
    self._max_envs = int(max_envs)
    self._envs: dict[str, Any] = {}
    self._prompt_configs = dict(prompt_configs)
    self.histories: dict[str, PromptHistory] = {}
    self.env = None
    self.env_id = ""
    self.obs = None
    self.seed = -1
    self.t = 0
    self.actions: list[str] = []
    self.rewards: list[float] = []
    self.episode_return = 0.0
    self.switches: list[int] = []
    self.memory: list[np.ndarray] = []
    self.score: float | None = None

  def start(self, env_id: str, seed: int) -> None:
    """Resets to a new episode of `env_id` with reset seed `seed`."""
    self._open(env_id, seed)
    self._begin(self.env.reset(seed=self.seed))

  def _open(self, env_id: str, seed: int) -> None:
    """Makes the environment of `env_id` (opened once) the row's, for reset seed `seed`."""
    if env_id not in self._envs:
      if self._max_envs and len(self._envs) >= self._max_envs:
        self.close()
      self._envs[env_id] = self._make_env(env_id)
    self.env, self.env_id, self.seed = self._envs[env_id], env_id, int(seed)

  def _begin(self, obs) -> None:
    """Starts the row's episode at its first observation `obs`."""
    self.obs = obs
    self.histories = {name: envs.prompt_history(self.env_id, c)
                      for name, c in self._prompt_configs.items()}
    for h in self.histories.values():
      h.reset(self.obs)
    self.t, self.actions, self.rewards, self.episode_return = 0, [], [], 0.0
    self.switches, self.memory = [], []
    self.score = self.obs.extra.get("score")

  def prompt(self, name: str) -> str:
    """The prompt of policy `name` for the next action."""
    return self.histories[name].prompt()

  @property
  def calls(self) -> int:
    """Large-LM calls so far in the current episode."""
    return sum(self.switches)

  @property
  def time_fraction(self) -> float:
    """`t / T`: the step in the episode over the episode's step limit."""
    return self.t / self.env.step_limit

  def step(self, action: str, switch: int = 0, result: tuple | None = None
           ) -> tuple[float, bool, dict[str, Any]]:
    """Takes `action` (`switch` says whether the large LM chose it); returns `(r, done, info)`.

    `result` is the environment's `(obs, reward, done, info)` for `action` when the caller has
    already stepped it (a batch of workers stepped together, `envs.vector.call_all`).
    """
    obs, reward, done, info = self.env.step(action) if result is None else result
    for h in self.histories.values():
      h.record(action, obs, reward)
    self.obs = obs
    self.t += 1
    self.actions.append(action)
    self.rewards.append(float(reward))
    self.episode_return += float(reward)
    self.switches.append(int(switch))
    if info.get("score") is not None:
      self.score = info["score"]
    return float(reward), bool(done), info

  def snapshot(self) -> dict[str, Any]:
    """What `replay` needs (JSON-serialisable): the episode's seed, actions and switches, and its
    episode memory where it has one (float32 values, exact through JSON)."""
    snap = {"env_id": self.env_id, "seed": self.seed, "actions": list(self.actions),
            "switches": "".join(map(str, self.switches))}
    if self.memory:
      snap["memory"] = [x.tolist() for x in self.memory]
    return snap

  def replay(self, snap: Mapping[str, Any]) -> None:
    """Restores the state `snapshot` described by replaying its episode's actions
    (`envs.base.replay`: one call to a worker, and no candidates for the states in between).

    Snapshots written before switches were kept hold only their number (`calls`); those replay
    with the calls on the episode's first steps (the number, which budgets read, is exact).
    """
    replay_rows([self], [snap])

  def _send_replay(self, snap: Mapping[str, Any]) -> tuple[list[str], list[int]]:
    """Opens the snapshot's environment and starts its replay where the environment can run one
    in the background (a worker); returns the actions and switches to apply."""
    actions = list(snap["actions"])
    if "switches" in snap:
      switches = [int(g) for g in snap["switches"]]
    else:
      calls = int(snap["calls"])
      switches = [1] * calls + [0] * (len(actions) - calls)
    if len(switches) != len(actions):
      raise ValueError(f"row snapshot of episode seed {snap['seed']} has {len(actions)} actions "
                       f"but {len(switches)} switches")
    self._open(snap["env_id"], snap["seed"])
    if hasattr(self.env, "replay_async"):
      self.env.replay_async(self.seed, actions)
    return actions, switches

  def _finish_replay(self, snap: Mapping[str, Any], actions: list[str], switches: list[int]
                     ) -> None:
    if hasattr(self.env, "replay_async"):
      first, steps = self.env.wait_replay()
    else:
      first, steps = envs.base.replay(self.env, self.seed, actions)
    self._begin(first)
    for action, switch, result in zip(actions, switches, steps):
      _, done, _ = self.step(action, switch, result)
      if done:
        raise RuntimeError(f"replaying episode seed {snap['seed']} ended early; the environment "
                           "is not deterministic")
    self.memory = [np.asarray(x, np.float32) for x in snap.get("memory", ())]

  def has_env(self, env_id: str) -> bool:
    """Whether an environment of `env_id` is open (`start` on it builds none)."""
    return env_id in self._envs

  def close(self) -> None:
    for env in self._envs.values():
      env.close()
    self._envs = {}


def replay_rows(rows: Sequence[Row], snaps: Sequence[Mapping[str, Any]]) -> None:
  """`Row.replay` of each row to its snapshot, the replays of worker-held environments in flight
  together (each worker replays its own episode while the others do)."""
  # pylint: disable=protected-access
  started, waiting = [], []
  try:
    for row, snap in zip(rows, snaps):
      started.append(row._send_replay(snap))
      waiting.append(row)
    for row, snap, (actions, switches) in zip(rows, snaps, started):
      waiting.remove(row)
      row._finish_replay(snap, actions, switches)
  finally:
    for row in waiting:  # a replay failed: the others' answers are collected and dropped
      if hasattr(row.env, "replay_async"):
        try:
          row.env.wait_replay()
        except Exception:  # pylint: disable=broad-except
          pass


class TrainRows:
  """`R` rows that restart episodes forever: episode `k` of row `r` plays
  `levels[r % len(levels)]` with reset seed `episode_seed(seed, r + R * k, split)`."""

  def __init__(self, levels: Sequence[str], num_rows: int, seed: int,
               prompt_configs: Mapping[str, Any], split: str = "dev",
               make_env: Callable[[str], Any] = envs.make):
    self.levels = tuple(levels)
    self.seed = seed
    self.split = split
    self.rows = [Row(prompt_configs, make_env) for _ in range(num_rows)]
    self.episode_index = [0] * num_rows

  def __len__(self) -> int:
    return len(self.rows)

  def start(self, r: int) -> None:
    n = len(self.rows)
    self.rows[r].start(self.levels[r % len(self.levels)],
                       episode_seed(self.seed, r + n * self.episode_index[r], self.split))

  def reset(self) -> None:
    for r in range(len(self.rows)):
      self.start(r)

  def next_episode(self, r: int) -> None:
    self.episode_index[r] += 1
    self.start(r)

  def snapshot(self) -> dict[str, Any]:
    return {"episode_index": list(self.episode_index),
            "rows": [row.snapshot() for row in self.rows]}

  def restore(self, snap: Mapping[str, Any]) -> None:
    self.episode_index = [int(k) for k in snap["episode_index"]]
    replay_rows(self.rows, snap["rows"])

  def close(self) -> None:
    for row in self.rows:
      row.close()
