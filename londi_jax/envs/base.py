"""The protocol every text environment of the project follows.

    obs = env.reset(seed=s)
    obs, reward, done, info = env.step(action_text)

`obs.mission` is the goal, `obs.sentences` the description (one sentence each) and
`obs.valid_actions` the candidate action strings offered to the policies. `info` carries at least
`success: bool` and `truncated: bool`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol, runtime_checkable


@dataclasses.dataclass(frozen=True)
class Observation:
  """One observation of a text environment.

  Attributes:
    mission: the task, in words.
    sentences: the description of what the agent perceives, one sentence each.
    valid_actions: the candidate actions offered to policies, in a deterministic order.
    extra: environment-specific fields (for example ScienceWorld's inventory and score).
  """

  mission: str
  sentences: tuple[str, ...]
  valid_actions: tuple[str, ...]
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@runtime_checkable
class TextEnv(Protocol):
  """A text environment: `reset(seed)` and `step(action_text)`, then `close()`."""

  def reset(self, seed: int | None = None) -> Observation:
    ...

  def step(self, action: str) -> tuple[Observation, float, bool, dict[str, Any]]:
    ...

  def close(self) -> None:
    ...


class InvalidActionError(ValueError):
  """An action string outside the observation's `valid_actions`."""

  def __init__(self, action: str, valid_actions: tuple[str, ...]):
    super().__init__(
        f"invalid action {action!r}; valid actions are: {', '.join(map(repr, valid_actions))}")
    self.action = action
    self.valid_actions = valid_actions


class UnknownEnvironmentError(ValueError):
  """An environment id that no family knows."""
