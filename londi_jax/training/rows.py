"""Environment rows the host loop steps: one text environment each, with a prompt history per
policy and the log of the current episode's actions. A row serves any registered environment
family: its prompt histories come from `envs.prompt_history` and its time from `env.step_limit`.

Every episode is reset from a seed and every action is recorded, so a row's state is exactly
`(seed, actions)`: a checkpoint stores that and `Row.replay` rebuilds the environment and both
prompt histories by playing the actions again (the environments are deterministic given a seed).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from londi_jax import envs
from londi_jax.envs.base import PromptHistory
from londi_jax.envs.seeds import episode_seed


class Row:
  """One environment slot; it may play different levels (one environment object per level).

  Args:
    prompt_configs: per policy name, its prompt config (a saved mapping of the family's
      `PromptConfig` fields, or the family's `PromptConfig`; see `envs.prompt_history`).
    make_env: builds the environment of an id (default `envs.make`, in this process; see
      `envs.workers.env_factory` for worker processes and Ray actors).
  """

  def __init__(self, prompt_configs: Mapping[str, Any],
               make_env: Callable[[str], Any] = envs.make):
    self._make_env = make_env
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
    self.calls = 0

  def start(self, env_id: str, seed: int) -> None:
    """Resets to a new episode of `env_id` with reset seed `seed`."""
    if env_id not in self._envs:
      self._envs[env_id] = self._make_env(env_id)
    self.env, self.env_id, self.seed = self._envs[env_id], env_id, int(seed)
    self.obs = self.env.reset(seed=self.seed)
    self.histories = {name: envs.prompt_history(env_id, c)
                      for name, c in self._prompt_configs.items()}
    for h in self.histories.values():
      h.reset(self.obs)
    self.t, self.actions, self.rewards, self.episode_return, self.calls = 0, [], [], 0.0, 0

  def prompt(self, name: str) -> str:
    """The prompt of policy `name` for the next action."""
    return self.histories[name].prompt()

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
    self.calls += int(switch)
    return float(reward), bool(done), info

  def snapshot(self) -> dict[str, Any]:
    """What `replay` needs (JSON-serialisable)."""
    return {"env_id": self.env_id, "seed": self.seed, "actions": list(self.actions),
            "calls": self.calls}

  def replay(self, snap: Mapping[str, Any]) -> None:
    """Restores the state `snapshot` described by replaying its episode's actions."""
    self.start(snap["env_id"], snap["seed"])
    for action in snap["actions"]:
      _, done, _ = self.step(action)
      if done:
        raise RuntimeError(f"replaying episode seed {snap['seed']} ended early; the environment "
                           "is not deterministic")
    self.calls = int(snap["calls"])

  def close(self) -> None:
    for env in self._envs.values():
      env.close()


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
    for row, s in zip(self.rows, snap["rows"]):
      row.replay(s)

  def close(self) -> None:
    for row in self.rows:
      row.close()
