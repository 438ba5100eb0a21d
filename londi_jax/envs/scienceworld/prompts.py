"""A compact prompt for ScienceWorld policies, after SwiftSage's Swift module (Lin et al. 2023).

    Task: Your task is to boil water. ...
    Time: 3; Score: 0
    Recent: go to kitchen (+0) -> You move to the kitchen. | pick up thermometer (+0) -> You ...
    Room: kitchen
    Observation: You move the thermometer to the inventory.
    Inventory: an orange; a thermometer, currently reading a temperature of 10 degrees celsius
    Next action:

Every part is one line: the task, the time (steps taken) and score, the last few actions with
their rewards and (shortened) observations, the current room, the current observation and the
inventory. `PromptHistory` follows an episode (the `PromptHistory` protocol of
`londi_jax.envs.base`); `build_prompt` is the pure function beneath it, and `episode_prompts`
rebuilds a recorded episode's prompts (`envs.scienceworld.gold` records) in any template.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

from londi_jax.envs.base import Observation

_ROOM = re.compile(r"This room is called the (.+?)\.")
_INVENTORY_HEADER = "In your inventory, you see:"


@dataclasses.dataclass(frozen=True)
class PromptConfig:
  """How to write a prompt.

  Attributes:
    num_actions: how many of the latest actions to show.
    history_chars: the longest an earlier observation may be before it is cut (with `...`).
    observation_chars: the same for the current observation (None: never cut).
  """

  num_actions: int = 5
  history_chars: int = 80
  observation_chars: int | None = 600


@dataclasses.dataclass(frozen=True)
class Turn:
  """One earlier step: the action, its reward and the observation it gave."""

  action: str
  reward: float
  observation: str


def compact(text: str, limit: int | None = None) -> str:
  """The text on one line (its lines joined by `; `), cut to `limit` characters."""
  line = "; ".join(part.strip() for part in text.splitlines() if part.strip())
  line = line.replace(":; ", ": ")
  if limit is not None and len(line) > limit:
    line = line[:max(limit - 3, 0)].rstrip() + "..."
  return line


def room(look: str) -> str:
  """The current room's name, read off the `look around` text ("" if it names none)."""
  found = _ROOM.search(look)
  return found.group(1) if found else ""


def inventory(text: str) -> str:
  """The inventory's items on one line."""
  return compact(text.replace(_INVENTORY_HEADER, "")) or "nothing"


def build_prompt(mission: str, step: int, score: int, turns: Sequence[Turn], observation: str,
                 look: str, inventory_text: str, config: PromptConfig = PromptConfig()) -> str:
  """The prompt for the next action.

  Args:
    mission: the task description.
    step: steps taken so far in the episode.
    score: the current score (0-100).
    turns: the episode's earlier steps, oldest first (only the latest `config.num_actions` show).
    observation: the current observation text.
    look: the current `look around` text (for the room's name).
    inventory_text: the current inventory text.
    config: the template's settings.
  """
  recent = turns[-config.num_actions:] if config.num_actions > 0 else []
  history = " | ".join(
      f"{t.action} ({t.reward:+g}) -> {compact(t.observation, config.history_chars)}"
      for t in recent)
  return "\n".join([
      f"Task: {mission}",
      f"Time: {step}; Score: {score}",
      f"Recent: {history or 'none'}",
      f"Room: {room(look)}",
      f"Observation: {compact(observation, config.observation_chars)}",
      f"Inventory: {inventory(inventory_text)}",
      "Next action:",
  ])


class PromptHistory:
  """Follows one episode and writes the prompt of its current step."""

  def __init__(self, config: PromptConfig = PromptConfig()):
    self.config = config
    self.turns: list[Turn] = []
    self._obs: Observation | None = None

  def reset(self, obs: Observation) -> None:
    """Starts an episode at its first observation."""
    self.turns = []
    self._obs = obs

  def record(self, action: str, obs: Observation, reward: float) -> None:
    """Appends a step: the action taken, the observation it led to and its reward."""
    self.turns.append(Turn(action, reward, obs.extra["observation"]))
    self._obs = obs

  def prompt(self) -> str:
    """The prompt for the current step."""
    obs = self._obs
    return build_prompt(obs.mission, obs.extra["step"], obs.extra["score"], self.turns,
                        obs.extra["observation"], obs.extra["look"], obs.extra["inventory"],
                        self.config)


def episode_prompts(records: Sequence[dict], config: PromptConfig = PromptConfig()) -> list[str]:
  """The prompt of every step of one recorded episode under `config`.

  Args:
    records: the episode's steps in order, each with `mission`, `step`, `score`, `observation`,
      `look`, `inventory` and `action` (`envs.scienceworld.gold` writes them). A step's reward is
      the next step's score minus its own.
    config: the template.
  """
  prompts, turns = [], []
  for i, r in enumerate(records):
    prompts.append(build_prompt(r["mission"], r["step"], r["score"], turns, r["observation"],
                                r["look"], r["inventory"], config))
    if i + 1 < len(records):
      nxt = records[i + 1]
      turns.append(Turn(r["action"], float(nxt["score"] - r["score"]), nxt["observation"]))
  return prompts
