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


def _layout(env):
  """`(agent x, agent y, direction, mission)` of the current episode, to pin the derivations."""
  u = env.unwrapped
  return int(u.agent_pos[0]), int(u.agent_pos[1]), int(u.agent_dir), u.mission


# Grid codes in the layouts below: `#` wall, `.` empty, `?` unseen (outside the grid or behind a
# wall); objects are colour + type: g green, e grey, r red, p purple, y yellow; K key, A ball,
# B box. Top-down layouts have x growing right and y growing down; minigrid direction 0 faces
# +x (east), 1 +y (south), 2 -x (west), 3 -y (north). The 7x7 views are drawn as the agent sees
# them: row f is f steps forward (the agent `^` stands in row 0), column r is r steps right.


def test_goto_local_seed_0_sentences_by_hand():
  # BabyAI-GoToLocal-v0, seed 0: the agent stands at (6, 5) facing west (direction 2).
  #        x: 0  1  2  3  4  5  6  7
  #   y 0     #  #  #  #  #  #  #  #
  #     1     #  .  .  .  .  .  .  #
  #     2     #  .  .  .  .  .  .  #
  #     3     #  .  gK .  rB .  .  #
  #     4     #  eA .  .  gK eA .  #
  #     5     #  .  .  gA .  .  <  #
  #     6     #  .  .  .  pK yK .  #
  #     7     #  #  #  #  #  #  #  #
  env = envs.make("babyai_text/BabyAI-GoToLocal-v0")
  obs = env.reset(seed=0)
  assert _layout(env) == (6, 5, 2, "go to the green ball")
  assert obs.mission == "go to the green ball" and obs.valid_actions == SIX_ACTIONS
  # Facing west, forward is -x and right is north (-y): view cell (r, f) is grid (6 - f, 5 - r).
  #   f\r  -3 -2 -1  0  1  2  3
  #    6    ?  #  #  #  #  #  #     x = 0
  #    5    ?  #  .  .  eA .  .     x = 1
  #    4    ?  #  .  .  .  gK .     x = 2
  #    3    ?  #  .  gA .  .  .     x = 3
  #    2    ?  #  pK .  gK rB .     x = 4
  #    1    ?  #  yK .  eA .  .     x = 5
  #    0    ?  #  .  ^  .  .  .     x = 6
  # Ahead the green ball (f 3) comes before any wall: no forward wall sentence. Left: empty,
  # then the wall 2 steps left. Right: three empty cells, then the edge of the view: nothing.
  # Objects column by column from r = -3, farthest row first within a column.
  assert obs.sentences == (
      "You see a wall 2 steps left",
      "You see a purple key 1 step left and 2 steps forward",  # r -1, f 2
      "You see a yellow key 1 step left and 1 step forward",  # r -1, f 1
      "You see a green ball 3 steps forward",  # r 0, f 3
      "You see a grey ball 1 step right and 5 steps forward",  # r 1, f 5
      "You see a green key 1 step right and 2 steps forward",  # r 1, f 2
      "You see a grey ball 1 step right and 1 step forward",  # r 1, f 1
      "You see a green key 2 steps right and 4 steps forward",  # r 2, f 4
      "You see a red box 2 steps right and 2 steps forward",  # r 2, f 2
  )

  obs, reward, done, info = env.step("turn right")
  assert (reward, done) == (0.0, False) and set(info) >= {"success", "truncated"}
  assert _layout(env)[:3] == (6, 5, 3)
  # Facing north, forward is -y and right is +x: view cell (r, f) is grid (6 + r, 5 - f).
  #   f\r  -3 -2 -1  0  1  2  3
  #    6    ?  ?  ?  ?  ?  ?  ?     y = -1
  #    5    #  #  #  #  #  ?  ?     y = 0
  #    4    .  .  .  .  #  ?  ?     y = 1
  #    3    .  .  .  .  #  ?  ?     y = 2
  #    2    .  rB .  .  #  ?  ?     y = 3
  #    1    .  gK eA .  #  ?  ?     y = 4
  #    0    gA .  .  ^  #  ?  ?     y = 5
  # Ahead: four empty cells, the wall in f 5. Left: two empty cells, then the green ball (no
  # wall sentence). Right: the wall at once, `1 step` singular.
  assert obs.sentences == (
      "You see a wall 5 steps forward",
      "You see a wall 1 step right",
      "You see a green ball 3 steps left",  # r -3, f 0: beside the agent, no `forward` part
      "You see a red box 2 steps left and 2 steps forward",  # r -2, f 2
      "You see a green key 2 steps left and 1 step forward",  # r -2, f 1
      "You see a grey ball 1 step left and 1 step forward",  # r -1, f 1
  )

  obs, reward, done, _ = env.step("go forward")
  assert (reward, done) == (0.0, False)
  assert _layout(env)[:3] == (6, 4, 3)
  # One step north: view cell (r, f) is grid (6 + r, 4 - f); the green ball is now behind.
  #   f\r  -3 -2 -1  0  1
  #    4    #  #  #  #  #     y = 0
  #    3    .  .  .  .  #     y = 1
  #    2    .  .  .  .  #     y = 2
  #    1    .  rB .  .  #     y = 3
  #    0    .  gK eA ^  #     y = 4
  assert obs.sentences == (
      "You see a wall 4 steps forward",
      # left: the grey ball right beside the agent ends the search, so no wall sentence
      "You see a wall 1 step right",
      "You see a red box 2 steps left and 1 step forward",  # r -2, f 1
      "You see a green key 2 steps left",  # r -2, f 0
      "You see a grey ball 1 step left",  # r -1, f 0
  )


def test_pickup_loc_seed_0_sentences_by_hand():
  # BabyAI-PickupLoc-v0, seed 0: the agent stands at (4, 5) facing north (direction 3).
  #        x: 0  1  2  3  4  5  6  7
  #   y 0     #  #  #  #  #  #  #  #
  #     1     #  .  .  .  .  .  .  #
  #     2     #  .  .  .  .  .  .  #
  #     3     #  .  .  yK .  yA .  #
  #     4     #  .  eK .  .  .  .  #
  #     5     #  .  .  rA ^  .  pK #
  #     6     #  pK pB rK .  .  .  #
  #     7     #  #  #  #  #  #  #  #
  env = envs.make("babyai_text/BabyAI-PickupLoc-v0")
  obs = env.reset(seed=0)
  assert _layout(env) == (4, 5, 3, "pick up the grey key")
  # Facing north: view cell (r, f) is grid (4 + r, 5 - f).
  #   f\r  -3 -2 -1  0  1  2  3
  #    6    ?  ?  ?  ?  ?  ?  ?     y = -1
  #    5    #  #  #  #  #  #  #     y = 0
  #    4    .  .  .  .  .  .  #     y = 1
  #    3    .  .  .  .  .  .  #     y = 2
  #    2    .  .  yK .  yA .  #     y = 3
  #    1    .  eK .  .  .  .  #     y = 4
  #    0    .  .  rA ^  .  pK #     y = 5
  # Left: the red ball at once (no wall sentence); right: empty, then the purple key (none).
  assert obs.sentences == (
      "You see a wall 5 steps forward",
      "You see a grey key 2 steps left and 1 step forward",  # r -2, f 1
      "You see a yellow key 1 step left and 2 steps forward",  # r -1, f 2
      "You see a red ball 1 step left",  # r -1, f 0
      "You see a yellow ball 1 step right and 2 steps forward",  # r 1, f 2
      "You see a purple key 2 steps right",  # r 2, f 0
  )

  obs, _, _, _ = env.step("turn left")
  assert _layout(env)[:3] == (4, 5, 2)
  # Facing west: view cell (r, f) is grid (4 - f, 5 - r); the red ball is now ahead.
  #   f\r  -3 -2 -1  0  1  2  3
  #  5, 6   ?  ?  ?  ?  ?  ?  ?     x = -1, -2
  #    4    ?  #  #  #  #  #  #     x = 0
  #    3    ?  #  pK .  .  .  .     x = 1
  #    2    ?  #  pB .  eK .  .     x = 2
  #    1    ?  #  rK rA .  yK .     x = 3
  #    0    ?  #  .  ^  .  .  .     x = 4
  left_objects = (
      "You see a purple key 1 step left and 3 steps forward",  # r -1, f 3
      "You see a purple box 1 step left and 2 steps forward",  # r -1, f 2
      "You see a red key 1 step left and 1 step forward",  # r -1, f 1
  )
  right_objects = (
      "You see a grey key 1 step right and 2 steps forward",  # r 1, f 2
      "You see a yellow key 2 steps right and 1 step forward",  # r 2, f 1
  )
  assert obs.sentences == (
      "You see a wall 2 steps left",  # ahead the red ball ends the search: no forward wall
      *left_objects,
      "You see a red ball 1 step forward",  # r 0, f 1
      *right_objects,
  )

  # Picking up the red ball is not the mission (the grey key): the episode goes on, the ball
  # leaves the grid and is described first, and the way ahead is clear up to the wall in f 4.
  obs, reward, done, info = env.step("pick up")
  assert (reward, done, info["success"]) == (0.0, False, False)
  assert obs.sentences == (
      "You carry a red ball",
      "You see a wall 4 steps forward",
      "You see a wall 2 steps left",
      *left_objects,
      *right_objects,
  )


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
