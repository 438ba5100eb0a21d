"""GLAM's mixed BabyAI levels, defined on minigrid (docs/environments.md: BabyAI-Text).

GLAM (Carta et al. 2023) trained on `BabyAI-MixedTrainLocal` and tested generalisation on
`BabyAI-MixedTestLocal`; minigrid ships neither. `MixedLocalLevel(kind, split)` rebuilds the four
action kinds of those levels:

- `goto`, `pickup`: one 8x8 room with 9 objects; go to / pick up one of them;
- `putnext`: one room with 10 objects; put one next to another;
- `open`: two rooms joined by a locked door, its key and 8 objects in the agent's room; open the
  door (GLAM's `Unlock` competency). As in GLAM, held-out door colours occur only in `test`.

Missions that name one of `HELD_OUT` (object/colour pairs) occur only in the `test` split; the
`train` split never names them (they may still appear as distractors, as in GLAM). GLAM's
`pick up A then go to B` sequences are left out: the project samples the four single actions.
"""

from __future__ import annotations

from minigrid.core.constants import COLOR_NAMES
from minigrid.envs.babyai.core.roomgrid_level import RejectSampling, RoomGridLevel
from minigrid.envs.babyai.core.verifier import (
    GoToInstr,
    ObjDesc,
    OpenInstr,
    PickupInstr,
    PutNextInstr,
)

KINDS = ("goto", "pickup", "putnext", "open")
SPLITS = ("train", "test")
HELD_OUT = ("yellow box", "red key", "red door", "green ball", "grey door")


def names_held_out(mission: str) -> bool:
  """Whether a mission names one of the object/colour pairs held out for the test split."""
  return any(pair in mission for pair in HELD_OUT)


class MixedLocalLevel(RoomGridLevel):
  """One action kind of GLAM's mixed local levels, for the train or the test split."""

  def __init__(self, kind: str, split: str, room_size: int = 8, num_dists: int = 8, **kwargs):
    if kind not in KINDS:
      raise ValueError(f"unknown mission kind {kind!r}; known: {KINDS}")
    if split not in SPLITS:
      raise ValueError(f"unknown split {split!r}; known: {SPLITS}")
    self.kind = kind
    self.split = split
    self.num_dists = num_dists
    super().__init__(room_size=room_size, num_rows=1, num_cols=2 if kind == "open" else 1,
                     **kwargs)

  def gen_mission(self):
    if self.kind == "open":
      self._gen_open()
    else:
      self.place_agent()
      num_objs = self.num_dists + (2 if self.kind == "putnext" else 1)
      objs = self.add_distractors(num_distractors=num_objs, all_unique=False)
      self.check_objs_reachable()
      if self.kind == "putnext":
        move, fixed = self._rand_subset(objs, 2)
        self.instrs = PutNextInstr(ObjDesc(move.type, move.color), ObjDesc(fixed.type, fixed.color))
      else:
        target = self._rand_elem(objs)
        instr = GoToInstr if self.kind == "goto" else PickupInstr
        self.instrs = instr(ObjDesc(target.type, target.color))
    if names_held_out(self.instrs.surface(self)) != (self.split == "test"):
      raise RejectSampling(f"mission does not belong to the {self.split} split")

  def _gen_open(self):
    locked = self._rand_int(0, 2)  # which of the two rooms is locked
    free = 1 - locked
    held_out = self.split == "test"
    colors = [c for c in COLOR_NAMES if names_held_out(f"{c} door") == held_out]
    door, _ = self.add_door(locked, 0, door_idx=2 if locked else 0, color=self._rand_elem(colors),
                            locked=True)
    self.add_object(free, 0, "key", door.color)
    self.add_distractors(free, 0, num_distractors=self.num_dists, all_unique=False)
    self.place_agent(free, 0)
    self.check_objs_reachable()
    self.instrs = OpenInstr(ObjDesc("door", self._rand_elem([None, door.color])))
