"""BabyAI-Text: minigrid's BabyAI levels with the agent's view described in sentences.

    env = londi_jax.envs.make("babyai_text/BabyAI-GoToLocal-v0")
    obs = env.reset(seed=0)        # obs.mission, obs.sentences, obs.valid_actions
    obs, reward, done, info = env.step("go forward")

Rendering follows docs/environments.md: BabyAI-Text (`babyai_render`). The reward is minigrid's
`1 - 0.9 * steps / max_steps` on success, else 0. An episode ends on success, on failure, or at
the level's step limit (`info["truncated"]`). `mixed-train` and `mixed-test` sample, per episode,
one of the four mission kinds of `babyai_levels` (GLAM's mixed levels).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Sequence

import gymnasium as gym
import minigrid  # noqa: F401  (registers the BabyAI-* ids with gymnasium)
import numpy as np

from londi_jax.envs.babyai import levels as levels_lib
from londi_jax.envs.babyai.render import describe
from londi_jax.envs.base import InvalidActionError, Observation

ACTIONS = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
ACTION_INDEX = {name: index for index, name in enumerate(ACTIONS)}
LEVELS = ("BabyAI-GoToLocal-v0", "BabyAI-PickupLoc-v0", "BabyAI-PutNextLocal-v0",
          "BabyAI-OpenDoor-v0")
MIXED = {"mixed-train": "train", "mixed-test": "test"}


def known_ids() -> tuple[str, ...]:
  """The level names this family lists (without the `babyai_text/` prefix)."""
  return LEVELS + tuple(MIXED)


def accepts(name: str) -> bool:
  """Whether `name` is any registered `BabyAI-*` gymnasium id (besides `known_ids()`)."""
  return name.startswith("BabyAI-") and name in gym.registry


def make(name: str, **kwargs: Any) -> BabyAITextEnv:
  """Builds the text environment of one level.

  Args:
    name: a `BabyAI-*` gymnasium id, `mixed-train` or `mixed-test`.
    **kwargs: passed on to the minigrid level's constructor (e.g. `max_steps`, `room_size`).

  Returns:
    The environment; its `unwrapped` is the minigrid environment of the current episode.
  """
  if name in MIXED:
    levels = {kind: levels_lib.MixedLocalLevel(kind, MIXED[name], **kwargs)
              for kind in levels_lib.KINDS}
  else:
    levels = {name: gym.make(name, **kwargs).unwrapped}
  return BabyAITextEnv(levels, env_id=f"babyai_text/{name}")


@contextlib.contextmanager
def _quiet():
  """Swallows what minigrid prints while it generates missions (`Sampling rejected: ...`)."""
  with contextlib.redirect_stdout(io.StringIO()):
    yield


class BabyAITextEnv:
  """A text environment over one or several minigrid BabyAI levels.

  With several levels, each `reset` draws one of them uniformly (from the reset seed when one is
  given) and resets it with the same seed.

  Attributes:
    env_id: the full id, e.g. `babyai_text/BabyAI-GoToLocal-v0`.
    level: the name of the current episode's level (a mission kind for the mixed levels).
    unwrapped: the current episode's minigrid environment.
    valid_actions: the six action strings (minigrid actions 0-5), the same in every state.
    step_limit: the current episode's step limit.
  """

  valid_actions = ACTIONS

  def __init__(self, levels: dict[str, Any], env_id: str):
    self.env_id = env_id
    self._levels = levels
    self._names: Sequence[str] = tuple(levels)
    self._rng = np.random.default_rng()
    self.level = self._names[0]
    self.unwrapped = levels[self.level]
    self._done = True

  @property
  def step_limit(self) -> int:
    """Steps after which the current episode ends truncated (its minigrid level's `max_steps`)."""
    return self.unwrapped.max_steps

  def reset(self, seed: int | None = None) -> Observation:
    """Starts an episode; the same seed gives the same level, layout and mission."""
    if seed is not None:
      self._rng = np.random.default_rng(seed)
    if len(self._names) > 1:
      self.level = self._names[int(self._rng.integers(len(self._names)))]
      self.unwrapped = self._levels[self.level]
    with _quiet():
      raw_obs, _ = self.unwrapped.reset(seed=seed)
    self._done = False
    return self._observe(raw_obs)

  def step(self, action: str) -> tuple[Observation, float, bool, dict[str, Any]]:
    """Takes one of `ACTIONS`; returns `(obs, reward, done, info)`.

    `info` holds `success`, `truncated` (the step limit ended the episode without success),
    `level`, `steps` (taken so far) and `max_steps`.

    Raises:
      InvalidActionError: `action` is not one of `ACTIONS`.
      RuntimeError: the episode is over (call `reset`).
    """
    index = ACTION_INDEX.get(action)
    if index is None:
      raise InvalidActionError(action, ACTIONS)
    if self._done:
      raise RuntimeError("step() after the episode ended; call reset() first")
    raw_obs, reward, terminated, truncated, _ = self.unwrapped.step(index)
    success = bool(terminated and reward > 0)
    self._done = bool(terminated or truncated)
    info = {"success": success, "truncated": bool(truncated and not terminated),
            "level": self.level, "steps": self.unwrapped.step_count,
            "max_steps": self.unwrapped.max_steps}
    return self._observe(raw_obs), float(reward), self._done, info

  def _observe(self, raw_obs: dict[str, Any]) -> Observation:
    return Observation(mission=raw_obs["mission"],
                       sentences=describe(raw_obs["image"], self.unwrapped.carrying),
                       valid_actions=ACTIONS)

  def close(self) -> None:
    for env in self._levels.values():
      env.close()
