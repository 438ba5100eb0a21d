"""BabyAI-Text: rendering on hand-built grids, the environment protocol, levels, the expert."""

import numpy as np
import pytest
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Ball, Box, Door, Key, Wall
from minigrid.minigrid_env import MiniGridEnv

from bench.babyai_text import bench
from londi_jax import envs
from londi_jax.envs.babyai import expert as babyai_expert
from londi_jax.envs.babyai import render as babyai_render
from londi_jax.envs.base import InvalidActionError, UnknownEnvironmentError

SIX_ACTIONS = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
# GLAM's object/colour pairs that only mixed-test missions name.
HELD_OUT = ("yellow box", "red key", "red door", "green ball", "grey door")


class _OpenRoom(MiniGridEnv):
  """A 15x15 room with the agent in the middle: its outer walls are out of the 7x7 view."""

  def __init__(self):
    super().__init__(mission_space=MissionSpace(mission_func=lambda: "test"), grid_size=15,
                     max_steps=10, see_through_walls=False)

  def _gen_grid(self, width, height):
    self.grid = Grid(width, height)
    self.grid.wall_rect(0, 0, width, height)
    self.agent_pos = (7, 7)
    self.agent_dir = 0
    self.mission = "test"


def _room(direction, placements, carrying=None):
  """The room with the agent facing `direction` and `(x right, y forward) -> object` placed."""
  env = _OpenRoom()
  env.reset(seed=0)
  env.agent_dir = direction
  forward = np.array(env.dir_vec)
  right = np.array(env.right_vec)
  for (x, y), obj in placements.items():
    env.grid.set(*(np.array(env.agent_pos) + x * right + y * forward), obj)
  env.carrying = carrying
  return env


@pytest.mark.parametrize("direction", [0, 1, 2, 3])
def test_objects_walls_and_doors_in_every_direction(direction):
  env = _room(direction, {
      (0, 4): Wall(), (-2, 0): Wall(), (1, 0): Key("green"), (3, 0): Wall(),
      (-3, 6): Ball("red"), (-3, 1): Box("purple"), (-2, 4): Door("blue", is_open=True),
      (-1, 2): Ball("yellow"), (0, 5): Box("blue"), (1, 6): Door("red", is_locked=True),
      (2, 5): Ball("grey"), (2, 1): Key("purple"), (3, 3): Door("yellow"),
  })
  assert babyai_render.describe_env(env) == (
      "You see a wall 4 steps forward",
      "You see a wall 2 steps left",
      # right: the key 1 step right comes before the wall 3 steps right, so no wall sentence
      "You see a red ball 3 steps left and 6 steps forward",
      "You see a purple box 3 steps left and 1 step forward",
      "You see a open blue door 2 steps left and 4 steps forward",
      "You see a yellow ball 1 step left and 2 steps forward",
      "You see a blue box 5 steps forward",
      "You see a locked red door 1 step right and 6 steps forward",
      "You see a green key 1 step right",
      "You see a grey ball 2 steps right and 5 steps forward",
      "You see a purple key 2 steps right and 1 step forward",
      "You see a closed yellow door 3 steps right and 3 steps forward",
  )


def test_nothing_behind_a_wall_is_described():
  wall_row = {(x, 2): Wall() for x in range(-3, 4)}
  env = _room(3, {**wall_row, (0, 4): Ball("red"), (-3, 5): Key("blue"), (1, 1): Ball("green")})
  assert babyai_render.describe_env(env) == (
      "You see a wall 2 steps forward",
      "You see a green ball 1 step right and 1 step forward",
  )


def test_wall_sentence_only_for_the_nearest_cell():
  env = _room(1, {(0, 1): Box("blue"), (0, 3): Wall(), (-1, 0): Wall(), (2, 0): Wall(),
                  (3, 0): Wall()})
  assert babyai_render.describe_env(env) == (
      "You see a wall 1 step left",
      "You see a wall 2 steps right",
      "You see a blue box 1 step forward",
  )


def test_carried_object_comes_first():
  env = _room(2, {(0, 1): Wall(), (2, 3): Door("green")}, carrying=Key("yellow"))
  assert babyai_render.describe_env(env) == (
      "You carry a yellow key",
      "You see a wall 1 step forward",
      "You see a closed green door 2 steps right and 3 steps forward",
  )


def test_environment_renders_minigrids_view_and_protocol():
  env = envs.make("babyai_text/BabyAI-PutNextLocal-v0")
  obs = env.reset(seed=1)
  assert obs.valid_actions == SIX_ACTIONS
  assert obs.mission == env.unwrapped.mission
  assert obs.sentences == babyai_render.describe_env(env.unwrapped)
  for action in ["turn left", "go forward", "pick up", "turn right", "go forward"]:
    obs, reward, done, info = env.step(action)
    assert obs.sentences == babyai_render.describe_env(env.unwrapped)
    assert set(info) >= {"success", "truncated"}


def test_reset_and_step_are_deterministic_for_a_seed():
  actions = ["go forward", "turn left", "go forward", "pick up", "turn right", "toggle"]

  def rollout(env_id):
    env = envs.make(env_id)
    trace = [env.reset(seed=7)]
    for action in actions:
      trace.append(env.step(action)[:3])
      if trace[-1][2]:
        break
    return trace

  for env_id in ["babyai_text/BabyAI-GoToLocal-v0", "babyai_text/mixed-train"]:
    assert rollout(env_id) == rollout(env_id)
  assert rollout("babyai_text/BabyAI-GoToLocal-v0")[0] != envs.make(
      "babyai_text/BabyAI-GoToLocal-v0").reset(seed=8)


def test_invalid_action_names_it_and_lists_the_valid_ones():
  env = envs.make("babyai_text/BabyAI-GoToLocal-v0")
  env.reset(seed=0)
  with pytest.raises(InvalidActionError) as error:
    env.step("jump")
  assert error.value.action == "jump"
  assert "'jump'" in str(error.value)
  for action in SIX_ACTIONS:
    assert repr(action) in str(error.value)


def test_unknown_level_lists_the_known_ones():
  with pytest.raises(UnknownEnvironmentError, match="babyai_text/mixed-test"):
    envs.make("babyai_text/BabyAI-NoSuchLevel-v0")
  # any registered BabyAI level is accepted besides the listed ones
  assert envs.make("babyai_text/BabyAI-GoToRedBall-v0").reset(seed=0).mission == (
      "go to the red ball")


def test_truncation_at_the_step_limit():
  env = envs.make("babyai_text/BabyAI-GoToLocal-v0", max_steps=4)
  env.reset(seed=0)
  outcomes = [env.step("turn left") for _ in range(4)]
  assert [done for _, _, done, _ in outcomes] == [False, False, False, True]
  _, reward, _, info = outcomes[-1]
  assert reward == 0.0
  assert info["truncated"] and not info["success"]
  with pytest.raises(RuntimeError, match="reset"):
    env.step("turn left")


def test_expert_succeeds_with_the_documented_reward():
  env = envs.make("babyai_text/BabyAI-GoToLocal-v0")
  obs = env.reset(seed=3)
  steps, outcome = babyai_expert.run_expert(env, seed=3)
  assert outcome["success"]
  assert steps[0]["sentences"] == list(obs.sentences)
  assert outcome["return"] == pytest.approx(1 - 0.9 * len(steps) / 64)  # GoToLocal: 8x8 room


@pytest.mark.parametrize("name", ["BabyAI-GoToLocal-v0", "BabyAI-PickupLoc-v0",
                                  "BabyAI-PutNextLocal-v0", "BabyAI-OpenDoor-v0", "mixed-train",
                                  "mixed-test"])
def test_expert_solves_every_level(name):
  env = envs.make(f"babyai_text/{name}")
  outcomes = [babyai_expert.run_expert(env, seed)[1] for seed in range(20)]
  assert all(o["success"] for o in outcomes)


@pytest.mark.parametrize("name,held_out", [("mixed-train", False), ("mixed-test", True)])
def test_mixed_levels_hold_out_pairs_for_test(name, held_out, capsys):
  env = envs.make(f"babyai_text/{name}")
  kinds, missions = set(), []
  for seed in range(40):
    missions.append(env.reset(seed=seed).mission)
    kinds.add(env.level)
  assert kinds == {"goto", "pickup", "putnext", "open"}
  assert all(any(p in m for p in HELD_OUT) == held_out for m in missions), missions
  assert capsys.readouterr().out == ""  # minigrid's "Sampling rejected" prints are swallowed


def test_benchmark_runs():
  result = bench("BabyAI-GoToLocal-v0", steps=64, batch=4, repeats=1, seed=0)
  assert set(result) == {"raw_steps_per_s", "text_steps_per_s", "render_calls_per_s",
                         "vector_b4_env_steps_per_s", "text_over_raw_cost",
                         "render_over_raw_step_cost"}
  assert all(value > 0 for value in result.values())
