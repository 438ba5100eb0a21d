"""A batch of text environments stepped together, with automatic reset and episode statistics.

    vec = VectorEnv([lambda: make("babyai_text/BabyAI-GoToLocal-v0")] * 16, seed=0)
    obs = vec.reset()                               # list of B Observations
    obs, rewards, dones, infos = vec.step(actions)  # rewards [B] float32, dones [B] bool

Seeds: the `k`-th episode of environment `i` (counting from 0 since the last `reset(seed)`) is
reset with `seed + i + B * k`, so B environments never share a seed and a run is reproducible.

When a row's episode ends, `step` resets that environment at once: the observation returned for the
row is the new episode's first one, and the row's info holds `final_observation` (the last
observation of the finished episode) and `episode` (`return`, `length`, `success`, `seed`).
`statistics()` aggregates over all finished episodes and over a window of the latest ones.

Environments may live in worker processes: a wrapped environment that has `reset_async(seed)`,
`step_async(action)` and `wait()` (which returns what the synchronous call would) gets all the
batch's calls issued first and then waited on, so the batch steps in parallel.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Sequence

import numpy as np

from londi_jax.envs import make
from londi_jax.envs.base import Observation, TextEnv


def _is_async(env: Any) -> bool:
  return all(hasattr(env, name) for name in ("reset_async", "step_async", "wait"))


def call_all(envs: Sequence[Any], method: str, args: Sequence[Any]) -> list[Any]:
  """`getattr(env, method)(arg)` for each environment and argument, in order.

  Asynchronous environments (worker processes, Ray actors: `reset_async`, `step_async`, `wait`)
  get every call issued before any is waited on, so they run concurrently; the others run in
  this process, one after another.

  Args:
    envs: the environments.
    method: `reset` or `step`.
    args: one argument per environment (a seed or an action).
  """
  if len(envs) != len(args):
    raise ValueError(f"{len(envs)} environments but {len(args)} arguments")
  asynchronous = [_is_async(env) for env in envs]
  for env, arg, a in zip(envs, args, asynchronous):
    if a:
      getattr(env, f"{method}_async")(arg)
  results = [None if a else getattr(env, method)(arg)
             for env, arg, a in zip(envs, args, asynchronous)]
  return [env.wait() if a else r for env, r, a in zip(envs, results, asynchronous)]


class VectorEnv:
  """`B` text environments stepped in lockstep, each with its own deterministic seeds.

  Attributes:
    envs: the wrapped environments.
    num_envs: `B`.
    seed: the base seed of the current numbering of episodes.
  """

  def __init__(self, env_fns: Sequence[Callable[[], TextEnv]], seed: int = 0,
               stats_window: int = 100):
    """Builds the environments.

    Args:
      env_fns: one constructor per environment.
      seed: base seed; episode `k` of environment `i` uses `seed + i + B * k`.
      stats_window: how many of the latest finished episodes `statistics()` averages over.
    """
    if not env_fns:
      raise ValueError("VectorEnv needs at least one environment")
    self.envs = [fn() for fn in env_fns]
    self.num_envs = len(self.envs)
    self.seed = seed
    self._episode_index = np.full(self.num_envs, -1, dtype=np.int64)  # [B]; -1: never reset
    self._episode_seed = np.zeros(self.num_envs, dtype=np.int64)  # [B]
    self._returns = np.zeros(self.num_envs, dtype=np.float64)  # [B]
    self._lengths = np.zeros(self.num_envs, dtype=np.int64)  # [B]
    self._recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=stats_window)
    self._totals = {"episodes": 0, "return": 0.0, "length": 0, "successes": 0}

  def episode_seed(self, env_index: int, episode: int) -> int:
    """The reset seed of episode `episode` of environment `env_index`."""
    return self.seed + env_index + self.num_envs * episode

  def reset(self, seed: int | None = None) -> list[Observation]:
    """Starts a new episode in every environment.

    Args:
      seed: if given, becomes the base seed and the episode numbering restarts at 0 (so
        `reset(seed=s)` always gives the same observations); otherwise every environment moves
        on to its next episode.

    Returns:
      The B first observations.
    """
    if seed is not None:
      self.seed = seed
      self._episode_index[:] = -1
    return self._reset_rows(range(self.num_envs))

  def step(self, actions: Sequence[str]
           ) -> tuple[list[Observation], np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Steps every environment with its action, resetting those whose episode ended.

    Args:
      actions: B action strings.

    Returns:
      `(observations, rewards [B] float32, dones [B] bool, infos)`; see the module docstring
      for what a finished row's observation and info hold.
    """
    if len(actions) != self.num_envs:
      raise ValueError(f"expected {self.num_envs} actions, got {len(actions)}")
    if (self._episode_index < 0).any():
      raise RuntimeError("VectorEnv.step() before reset()")
    results = self._call("step", list(enumerate(actions)))
    observations = [obs for obs, _, _, _ in results]
    rewards = np.array([r for _, r, _, _ in results], dtype=np.float32)  # [B]
    dones = np.array([d for _, _, d, _ in results], dtype=bool)  # [B]
    infos = [dict(info) for _, _, _, info in results]
    self._returns += rewards
    self._lengths += 1
    finished = np.flatnonzero(dones).tolist()
    for i in finished:
      infos[i]["final_observation"] = observations[i]
      infos[i]["episode"] = self._finish_episode(i, bool(infos[i].get("success", False)))
    for i, obs in zip(finished, self._reset_rows(finished)):
      observations[i] = obs
    return observations, rewards, dones, infos

  def _finish_episode(self, i: int, success: bool) -> dict[str, Any]:
    episode = {"return": float(self._returns[i]), "length": int(self._lengths[i]),
               "success": success, "seed": int(self._episode_seed[i])}
    self._recent.append(episode)
    self._totals["episodes"] += 1
    self._totals["return"] += episode["return"]
    self._totals["length"] += episode["length"]
    self._totals["successes"] += int(success)
    return episode

  def statistics(self) -> dict[str, float]:
    """Aggregates of finished episodes: over all of them and over the latest `stats_window`.

    Returns:
      `episodes`, `mean_return`, `mean_length`, `success_rate` (all episodes) and the same means
      prefixed `recent_` (the window); means are NaN before any episode has finished.
    """
    totals, recent = self._totals, list(self._recent)
    n = totals["episodes"]

    def mean(total, count):
      return total / count if count else float("nan")

    return {
        "episodes": n,
        "mean_return": mean(totals["return"], n),
        "mean_length": mean(totals["length"], n),
        "success_rate": mean(totals["successes"], n),
        "recent_mean_return": mean(sum(e["return"] for e in recent), len(recent)),
        "recent_mean_length": mean(sum(e["length"] for e in recent), len(recent)),
        "recent_success_rate": mean(sum(e["success"] for e in recent), len(recent)),
    }

  def _reset_rows(self, rows: Sequence[int]) -> list[Observation]:
    calls = []
    for i in rows:
      self._episode_index[i] += 1
      self._episode_seed[i] = self.episode_seed(i, int(self._episode_index[i]))
      self._returns[i] = 0.0
      self._lengths[i] = 0
      calls.append((i, int(self._episode_seed[i])))
    return self._call("reset", calls)

  def _call(self, method: str, calls: list[tuple[int, Any]]) -> list[Any]:
    """Calls `method(arg)` on the given rows; asynchronous environments run concurrently."""
    return call_all([self.envs[i] for i, _ in calls], method, [arg for _, arg in calls])

  def close(self) -> None:
    """Closes every environment."""
    for env in self.envs:
      env.close()

  def __enter__(self) -> VectorEnv:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def make_vector(env_id: str, num_envs: int, seed: int = 0, backend: str = "local",
                ray_address: str = "", timeout_s: float = 60.0, **kwargs: Any) -> VectorEnv:
  """A `VectorEnv` of `num_envs` copies of `londi_jax.envs.make(env_id, **kwargs)`.

  Args:
    backend: where each environment runs: `local` (this process), `process` (an `EnvWorker`
      subprocess each) or `ray` (a Ray actor each); see `envs.workers.env_factory`.
    ray_address: with `ray`, the cluster to join ("" starts a local Ray).
    timeout_s: with a worker backend, the longest a step may take.
  """
  if backend == "local":
    return VectorEnv([lambda: make(env_id, **kwargs)] * num_envs, seed=seed)
  from londi_jax.envs.workers import env_factory  # pylint: disable=import-outside-toplevel
  factory = env_factory(backend, ray_address=ray_address, timeout_s=timeout_s)
  return VectorEnv([lambda: factory(env_id, **kwargs)] * num_envs, seed=seed)
