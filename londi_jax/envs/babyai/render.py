"""BabyAI-Text rendering: the agent's egocentric view in sentences (docs/environments.md).

The input is minigrid's encoded partial view (`Grid.encode(vis_mask)` of `gen_obs_grid()`, which
is also the `"image"` of every minigrid observation): an array `[view, view, 3]` indexed
`[column, row]`, holding `(type, color, state)` per cell, zeros where the cell is not visible. The
agent stands at column `view // 2` of the last row and faces the first row.
"""

from __future__ import annotations

import functools

import numpy as np
from minigrid.core.constants import IDX_TO_COLOR, IDX_TO_OBJECT, OBJECT_TO_IDX, STATE_TO_IDX

_UNSEEN = OBJECT_TO_IDX["unseen"]
_EMPTY = OBJECT_TO_IDX["empty"]
_WALL = OBJECT_TO_IDX["wall"]
_DOOR = OBJECT_TO_IDX["door"]
_IDX_TO_STATE = {idx: name for name, idx in STATE_TO_IDX.items()}


def _steps(n: int) -> str:
  return f"{n} step" if n == 1 else f"{n} steps"


def where(x: int, y: int) -> str:
  """Describes a cell `x` columns right of the agent (negative: left) and `y` rows ahead."""
  if x == 0:
    return f"{_steps(y)} forward"
  lateral = f"{_steps(abs(x))} {'left' if x < 0 else 'right'}"
  return lateral if y == 0 else f"{lateral} and {_steps(y)} forward"


@functools.lru_cache(maxsize=None)
def _where_table(view: int) -> tuple[tuple[str, ...], ...]:
  """`table[i][j]`: `where` of view cell (column i, row j) for a `view x view` view."""
  agent_x, agent_y = view // 2, view - 1
  return tuple(tuple(where(i - agent_x, agent_y - j) for j in range(view)) for i in range(view))


@functools.lru_cache(maxsize=None)
def object_name(type_idx: int, color_idx: int, state_idx: int) -> str:
  """`<color> <type>`, or `<state> <color> door` for a door, from minigrid's encoding."""
  name = f"{IDX_TO_COLOR[color_idx]} {IDX_TO_OBJECT[type_idx]}"
  if type_idx == _DOOR:
    return f"{_IDX_TO_STATE[state_idx]} {name}"
  return name


def _wall_sentence(line: np.ndarray, direction: str) -> list[str]:
  """The wall sentence for the cells of one straight line, nearest first (at most one)."""
  for k, type_idx in enumerate(line.tolist(), start=1):
    if type_idx == _UNSEEN or type_idx == _EMPTY:
      continue
    if type_idx == _WALL:
      return [f"You see a wall {_steps(k)} {direction}"]
    return []
  return []


def describe(image: np.ndarray, carrying=None) -> tuple[str, ...]:
  """Describes an encoded egocentric view in sentences, in the order of docs/environments.md.

  Args:
    image: `[view, view, 3]` uint8, minigrid's `Grid.encode(vis_mask)` of the agent's view.
    carrying: the object the agent carries (a minigrid `WorldObj`), or None.

  Returns:
    `You carry a ...` if carrying, then the walls ahead, left and right, then every visible
    object scanned column by column from the far left, farthest row first within a column.
  """
  view = image.shape[0]
  agent_x, agent_y = view // 2, view - 1
  types = image[:, :, 0]  # [view (column), view (row)]
  sentences = []
  if carrying is not None:
    sentences.append(f"You carry a {carrying.color} {carrying.type}")
  sentences += _wall_sentence(types[agent_x, agent_y - 1::-1], "forward")
  sentences += _wall_sentence(types[agent_x - 1::-1, agent_y], "left")
  sentences += _wall_sentence(types[agent_x + 1:, agent_y], "right")

  objects = types > _WALL  # [view, view]; excludes unseen, empty and walls
  objects[agent_x, agent_y] = False
  table = _where_table(view)
  for i, j in zip(*np.nonzero(objects)):  # C order: column by column, farthest row first
    type_idx, color_idx, state_idx = image[i, j].tolist()
    sentences.append(f"You see a {object_name(type_idx, color_idx, state_idx)} {table[i][j]}")
  return tuple(sentences)


def describe_env(env) -> tuple[str, ...]:
  """Describes what a minigrid environment's agent sees now (recomputes the view)."""
  grid, vis_mask = env.gen_obs_grid()
  return describe(grid.encode(vis_mask), env.carrying)
