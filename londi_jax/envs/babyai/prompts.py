"""Prompt builders for LM policies: the text a policy reads before scoring candidate actions.

Two templates over the same history (the mission, observations `o_0 .. o_t` and actions
`a_0 .. a_{t-1}`):

- `glam`: GLAM's verbose prompt (docs/environments.md): the possible actions, the goal, the
  last observations and actions, ending with the slot for the next action:

      Possible actions of the agent: turn left, turn right, go forward, pick up, drop, toggle
      Goal of the agent: go to the red ball
      Observation 0: You see a wall 2 steps forward, You see a red ball 1 step left
      Action 0: turn left
      Observation 1: You see a red ball 1 step forward
      Action 1:

- `compact`: for small offline models, each BabyAI-Text sentence as two words
  (`You see a red ball 1 step left and 2 steps forward` -> `red_ball l1f2`, a wall
  `wall f2`, a door `locked_red_door r1`, a carried object `carry red_ball`):

      go to the red ball
      o: wall f2 red_ball l1
      a: turn left
      o: red_ball f1
      a:

`PromptConfig` sets the template and the history: how many past observations and actions, or the
whole history, and whether to keep the episode's first observation (the starting pose, which
missions such as `behind you` refer to) when it has left the window. `PromptHistory` follows an
episode step by step (the `PromptHistory` protocol of `londi_jax.envs.base`); `build_prompt` and
`episode_prompts` are the pure functions beneath it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

from londi_jax.envs.base import Observation

TEMPLATES = ("glam", "compact")

_SEE = re.compile(
    r"You see a (?P<name>.+?) (?:(?P<x>\d+) steps? (?P<side>left|right))?(?: and )?"
    r"(?:(?P<y>\d+) steps? forward)?$")
_CARRY = "You carry a "


@dataclasses.dataclass(frozen=True)
class PromptConfig:
  """How to write a prompt.

  Attributes:
    template: `glam` or `compact`.
    num_observations: how many of the latest observations to show (the current one included);
      None shows the whole episode.
    num_actions: how many of the latest actions to show; None shows all.
    keep_first: also show the episode's first observation, marked `Start:` (`s:` in the compact
      template), when the window no longer contains it.
  """

  template: str = "glam"
  num_observations: int | None = 3
  num_actions: int | None = 2
  keep_first: bool = False

  def __post_init__(self):
    if self.template not in TEMPLATES:
      raise ValueError(f"unknown prompt template {self.template!r}; known: {TEMPLATES}")
    if self.num_observations is not None and self.num_observations < 1:
      raise ValueError(f"num_observations must be None or >= 1, got {self.num_observations}")
    if self.num_actions is not None and self.num_actions < 0:
      raise ValueError(f"num_actions must be None or >= 0, got {self.num_actions}")


def compact_sentence(sentence: str) -> str:
  """Rewrites one BabyAI-Text sentence as two words, e.g. `red_ball l1f2` or `wall f2`."""
  if sentence.startswith(_CARRY):
    return "carry " + sentence[len(_CARRY):].replace(" ", "_")
  match = _SEE.match(sentence)
  if match is None:
    return sentence
  where = ""
  if match["x"]:
    where += ("l" if match["side"] == "left" else "r") + match["x"]
  if match["y"]:
    where += "f" + match["y"]
  return f"{match['name'].replace(' ', '_')} {where}"


def build_prompt(mission: str, observations: Sequence[Sequence[str]], actions: Sequence[str],
                 valid_actions: Sequence[str], config: PromptConfig = PromptConfig()) -> str:
  """The prompt for choosing the action after the last observation.

  Args:
    mission: the goal.
    observations: `o_0 .. o_t`, each a sequence of sentences (the whole episode so far or its
      tail; only the tail the config asks for is shown).
    actions: `a_0 .. a_{t-1}`, one fewer than `observations`, aligned to their starts.
    valid_actions: the candidate actions (listed by the `glam` template).
    config: the template and history lengths.

  Returns:
    The prompt, ending with the slot for the next action.
  """
  if len(actions) != len(observations) - 1:
    raise ValueError(f"need one action fewer than observations, got {len(actions)} actions for "
                     f"{len(observations)} observations")
  t = len(observations) - 1
  n_obs = t + 1 if config.num_observations is None else config.num_observations
  n_act = t if config.num_actions is None else config.num_actions
  first_obs, first_act = max(0, t - n_obs + 1), max(0, t - n_act)
  glam = config.template == "glam"

  def obs_text(sentences):
    if glam:
      return ", ".join(sentences)
    return " ".join(compact_sentence(s) for s in sentences)

  lines = ([f"Possible actions of the agent: {', '.join(valid_actions)}",
            f"Goal of the agent: {mission}"] if glam else [mission])
  if config.keep_first and first_obs > 0:
    lines.append(f"{'Start' if glam else 's'}: {obs_text(observations[0])}")
  shown = 0  # GLAM numbers the steps of the window from 0
  for k in range(min(first_obs, first_act), t + 1):
    label = str(shown) if glam else ""
    if k >= first_obs:
      lines.append(f"{'Observation ' + label if glam else 'o'}: {obs_text(observations[k])}")
    if first_act <= k < t:
      lines.append(f"{'Action ' + label if glam else 'a'}: {actions[k]}")
    shown += 1
  lines.append(f"Action {shown - 1}:" if glam else "a:")
  return "\n".join(lines)


def episode_prompts(mission: str, observations: Sequence[Sequence[str]], actions: Sequence[str],
                    valid_actions: Sequence[str],
                    config: PromptConfig = PromptConfig()) -> list[str]:
  """The prompt of every step of an episode: `[build_prompt(o_0..o_k, a_0..a_{k-1}) for k]`.

  Args:
    mission: the goal.
    observations: `o_0 .. o_T`, each a sequence of sentences.
    actions: at least `a_0 .. a_{T-1}` (a final action after `o_T` is ignored).
    valid_actions: the candidate actions.
    config: the template and history lengths.
  """
  return [build_prompt(mission, observations[:k + 1], actions[:k], valid_actions, config)
          for k in range(len(observations))]


class PromptHistory:
  """Follows one episode and writes the prompt of its current step.

      history = PromptHistory(PromptConfig(template="compact", num_observations=1))
      history.reset(env.reset(seed=0))
      prompt = history.prompt()
      obs, reward, done, info = env.step(action)
      history.record(action, obs, reward)
  """

  def __init__(self, config: PromptConfig = PromptConfig()):
    self.config = config
    self._mission = ""
    self._valid_actions: tuple[str, ...] = ()
    self._observations: list[tuple[str, ...]] = []
    self._actions: list[str] = []

  def reset(self, obs: Observation) -> None:
    """Starts a new episode at its first observation."""
    self._mission = obs.mission
    self._valid_actions = tuple(obs.valid_actions)
    self._observations = [tuple(obs.sentences)]
    self._actions = []

  def record(self, action: str, obs: Observation, reward: float) -> None:
    """Appends the action taken and the observation that followed (the templates show no
    rewards)."""
    del reward
    self._actions.append(action)
    self._observations.append(tuple(obs.sentences))
    self._valid_actions = tuple(obs.valid_actions)

  def prompt(self) -> str:
    """The prompt for the next action."""
    if not self._observations:
      raise ValueError("PromptHistory.prompt() before reset()")
    return build_prompt(self._mission, self._observations, self._actions, self._valid_actions,
                        self.config)
