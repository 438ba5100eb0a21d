"""The protocols every text environment of the project follows, and the prompts written for it.

    obs = env.reset(seed=s)
    obs, reward, done, info = env.step(action_text)

`obs.mission` is the goal, `obs.sentences` the description (one sentence each) and
`obs.valid_actions` the candidate action strings offered to the policies. `info` carries at least
`success: bool` and `truncated: bool`; `env.step_limit` is the step at which the current episode
ends truncated.

Each family also renders prompts for LM policies behind one `PromptHistory` protocol:

    history.reset(obs)
    prompt = history.prompt()
    obs, reward, done, info = env.step(action)
    history.record(action, obs, reward)

`envs.base.replay(env, seed, actions)` restores a state by resetting and stepping its episode's
actions (in one worker call for a remote environment).

`londi_jax.envs.prompt_history(env_id, config)` builds the history of an environment's family
from a saved prompt config, so code that plays episodes need not know which family it serves.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable


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

  @property
  def step_limit(self) -> int:
    """Steps after which the current episode ends truncated (`info["truncated"]`)."""
    ...

  def reset(self, seed: int | None = None) -> Observation:
    ...

  def step(self, action: str) -> tuple[Observation, float, bool, dict[str, Any]]:
    ...

  def close(self) -> None:
    ...


@runtime_checkable
class PromptHistory(Protocol):
  """Follows one episode and writes the prompt of its current step, in one family's template."""

  def reset(self, obs: Observation) -> None:
    """Starts an episode at its first observation."""
    ...

  def record(self, action: str, obs: Observation, reward: float) -> None:
    """Appends a step: the action taken, the observation it led to and its reward."""
    ...

  def prompt(self) -> str:
    """The prompt for the next action."""
    ...


def replay(env: TextEnv, seed: int | None, actions: Sequence[str]
           ) -> tuple[Observation, list[tuple[Observation, float, bool, dict[str, Any]]]]:
  """`env.reset(seed)`, then `env.step` of each action until one ends the episode.

  Returns the first observation and every step's `(obs, reward, done, info)`. An environment
  with its own `replay(seed, actions)` (ScienceWorld's skips what only the last state needs)
  answers instead; a worker runs it in one call (`envs.workers`).
  """
  own = getattr(env, "replay", None)
  if own is not None:
    return own(seed, actions)
  first, steps = env.reset(seed=seed), []
  for action in actions:
    steps.append(env.step(action))
    if steps[-1][2]:
      break
  return first, steps


class InvalidActionError(ValueError):
  """An action string outside the observation's `valid_actions`."""

  def __init__(self, action: str, valid_actions: tuple[str, ...]):
    super().__init__(
        f"invalid action {action!r}; valid actions are: {', '.join(map(repr, valid_actions))}")
    self.action = action
    self.valid_actions = valid_actions


class UnknownEnvironmentError(ValueError):
  """An environment id that no family knows."""
