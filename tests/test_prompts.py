"""Prompt builders: GLAM's template, the compact one, history windows."""

import pytest

from londi_jax.envs.base import Observation
from londi_jax.envs.babyai.prompts import (
    PromptConfig,
    PromptHistory,
    build_prompt,
    compact_sentence,
    episode_prompts,
)

ACTIONS = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
MISSION = "pick up the red ball"
OBSERVATIONS = [
    ("You see a wall 2 steps forward", "You see a red ball 1 step left"),
    ("You see a red ball 1 step forward",),
    ("You carry a red ball", "You see a closed blue door 3 steps right and 1 step forward"),
    ("You carry a red ball", "You see a wall 1 step right"),
]
TAKEN = ["turn left", "pick up", "turn right"]


def test_glam_template_shows_three_observations_and_two_actions():
  assert build_prompt(MISSION, OBSERVATIONS, TAKEN, ACTIONS) == (
      "Possible actions of the agent: turn left, turn right, go forward, pick up, drop, toggle\n"
      "Goal of the agent: pick up the red ball\n"
      "Observation 0: You see a red ball 1 step forward\n"
      "Action 0: pick up\n"
      "Observation 1: You carry a red ball, You see a closed blue door 3 steps right and 1 step "
      "forward\n"
      "Action 1: turn right\n"
      "Observation 2: You carry a red ball, You see a wall 1 step right\n"
      "Action 2:")


def test_glam_template_at_the_first_step():
  assert build_prompt(MISSION, OBSERVATIONS[:1], [], ACTIONS) == (
      "Possible actions of the agent: turn left, turn right, go forward, pick up, drop, toggle\n"
      "Goal of the agent: pick up the red ball\n"
      "Observation 0: You see a wall 2 steps forward, You see a red ball 1 step left\n"
      "Action 0:")


@pytest.mark.parametrize("sentence,words", [
    ("You see a red ball 2 steps left and 1 step forward", "red_ball l2f1"),
    ("You see a wall 3 steps forward", "wall f3"),
    ("You see a wall 1 step right", "wall r1"),
    ("You see a locked grey door 1 step right and 6 steps forward", "locked_grey_door r1f6"),
    ("You carry a purple key", "carry purple_key"),
])
def test_compact_sentences(sentence, words):
  assert compact_sentence(sentence) == words


def test_compact_template_with_one_observation():
  config = PromptConfig(template="compact", num_observations=1, num_actions=0)
  assert build_prompt(MISSION, OBSERVATIONS, TAKEN, ACTIONS, config) == (
      "pick up the red ball\no: carry red_ball wall r1\na:")


def test_whole_history_and_the_starting_observation():
  whole = PromptConfig(template="compact", num_observations=None, num_actions=None)
  assert build_prompt(MISSION, OBSERVATIONS, TAKEN, ACTIONS, whole) == (
      "pick up the red ball\n"
      "o: wall f2 red_ball l1\na: turn left\n"
      "o: red_ball f1\na: pick up\n"
      "o: carry red_ball closed_blue_door r3f1\na: turn right\n"
      "o: carry red_ball wall r1\na:")
  start = PromptConfig(template="glam", num_observations=1, num_actions=1, keep_first=True)
  assert build_prompt(MISSION, OBSERVATIONS, TAKEN, ACTIONS, start).splitlines()[2:] == [
      "Start: You see a wall 2 steps forward, You see a red ball 1 step left",
      "Action 0: turn right",
      "Observation 1: You carry a red ball, You see a wall 1 step right",
      "Action 1:",
  ]


def test_history_follows_an_episode():
  config = PromptConfig(template="compact", num_observations=2, num_actions=2)
  history = PromptHistory(config)
  history.reset(Observation(MISSION, OBSERVATIONS[0], ACTIONS))
  prompts = [history.prompt()]
  for action, sentences in zip(TAKEN, OBSERVATIONS[1:]):
    history.record(action, Observation(MISSION, sentences, ACTIONS))
    prompts.append(history.prompt())
  assert prompts == episode_prompts(MISSION, OBSERVATIONS, TAKEN, ACTIONS, config)
  assert prompts[-1] == ("pick up the red ball\n"
                         "a: pick up\n"
                         "o: carry red_ball closed_blue_door r3f1\na: turn right\n"
                         "o: carry red_ball wall r1\na:")


def test_misaligned_history_is_rejected():
  with pytest.raises(ValueError, match="one action fewer"):
    build_prompt(MISSION, OBSERVATIONS, TAKEN[:1], ACTIONS)
  with pytest.raises(ValueError, match="template"):
    PromptConfig(template="chatty")
