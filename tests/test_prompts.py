"""Prompt builders: GLAM's template, the compact one, history windows, and ScienceWorld's
template, both behind the one `PromptHistory` protocol."""

import pytest

from londi_jax import envs
from londi_jax.envs.base import Observation, PromptHistory as PromptHistoryProtocol
from londi_jax.envs.base import UnknownEnvironmentError
from londi_jax.envs.babyai.prompts import (
    PromptConfig,
    PromptHistory,
    build_prompt,
    compact_sentence,
    episode_prompts,
)
from londi_jax.envs.scienceworld import prompts as scienceworld_prompts

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
    history.record(action, Observation(MISSION, sentences, ACTIONS), 0.0)
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


BABYAI = "babyai_text/BabyAI-PickupLoc-v0"
SCIENCEWORLD = "scienceworld/boil"


def _play(history, observations, actions, rewards):
  """Prompts of every step of an episode played through the `PromptHistory` protocol."""
  history.reset(observations[0])
  prompts = [history.prompt()]
  for action, obs, reward in zip(actions, observations[1:], rewards):
    history.record(action, obs, reward)
    prompts.append(history.prompt())
  return prompts


def test_every_family_builds_its_history_from_a_saved_config():
  for env_id, family in ((BABYAI, PromptHistory),
                         (SCIENCEWORLD, scienceworld_prompts.PromptHistory)):
    history = envs.prompt_history(env_id, {})
    assert isinstance(history, family) and isinstance(history, PromptHistoryProtocol)
  saved = {"template": "compact", "num_observations": 1, "num_actions": 0, "keep_first": False}
  assert envs.prompt_history(BABYAI, saved).config == PromptConfig(
      template="compact", num_observations=1, num_actions=0)
  assert envs.prompt_history(BABYAI, None).config.template == "glam"  # the default


def test_babyai_history_through_the_protocol_ignores_rewards():
  observations = [Observation(MISSION, o, ACTIONS) for o in OBSERVATIONS]
  saved = {"template": "compact", "num_observations": 1, "num_actions": 0}
  paid = _play(envs.prompt_history(BABYAI, saved), observations, TAKEN, [1.0, 0.5, 2.0])
  unpaid = _play(envs.prompt_history(BABYAI, saved), observations, TAKEN, [0.0] * 3)
  assert paid == unpaid
  assert paid == ["pick up the red ball\no: wall f2 red_ball l1\na:",
                  "pick up the red ball\no: red_ball f1\na:",
                  "pick up the red ball\no: carry red_ball closed_blue_door r3f1\na:",
                  "pick up the red ball\no: carry red_ball wall r1\na:"]


def _scienceworld_obs(observation, room, score, step):
  return Observation(
      mission="Your task is to boil water.", sentences=tuple(observation.splitlines()),
      valid_actions=("look around", "go to kitchen"),
      extra={"observation": observation, "look": f"This room is called the {room}. It holds",
             "inventory": "In your inventory, you see:\n\tan orange\n", "score": score,
             "step": step})


def test_scienceworld_history_through_the_protocol_shows_rewards():
  observations = [_scienceworld_obs("This room is called the hallway.\nYou see a door.",
                                    "hallway", 0, 0),
                  _scienceworld_obs("You move to the kitchen.", "kitchen", 5, 1),
                  _scienceworld_obs("You see a stove.", "kitchen", 5, 2)]
  prompts = _play(envs.prompt_history(SCIENCEWORLD, {"num_actions": 1}), observations,
                  ["go to kitchen", "look around"], [5.0, 0.0])
  assert prompts[0] == ("Task: Your task is to boil water.\n"
                        "Time: 0; Score: 0\n"
                        "Recent: none\n"
                        "Room: hallway\n"
                        "Observation: This room is called the hallway.; You see a door.\n"
                        "Inventory: an orange\n"
                        "Next action:")
  assert prompts[1].splitlines()[1:3] == [
      "Time: 1; Score: 5", "Recent: go to kitchen (+5) -> You move to the kitchen."]
  assert prompts[2].splitlines()[1:5] == [  # one action shown: the latest
      "Time: 2; Score: 5", "Recent: look around (+0) -> You see a stove.", "Room: kitchen",
      "Observation: You see a stove."]


def test_a_prompt_config_of_another_family_is_refused():
  with pytest.raises(ValueError, match="template"):
    envs.prompt_history(SCIENCEWORLD, {"template": "compact"})
  with pytest.raises(ValueError, match="history_chars"):
    envs.prompt_history(BABYAI, {"history_chars": 80})
  with pytest.raises(UnknownEnvironmentError, match="families"):
    envs.prompt_history("atari/pong", {})
