"""Candidate actions for ScienceWorld, and matching gold-path actions to them.

The simulator lists its valid actions (`get_valid_action_object_combinations_with_templates`) as
templates filled with the objects in view, each named by a unique referent that is qualified by
its container where a bare name would be ambiguous (`substance in metal pot`, `orange in bowl`).
Gold paths use other surface forms for the same actions (`examine X` for `look at X`, `drop X`
for `put down X`, `thermometer in inventory` for `thermometer`, `open door to kitchen` when the
`easy` preset has opened the doors already), so read literally about half of them are missing.

`build_candidates` turns the simulator's list into the policies' candidate list: it drops the
actions that only cost the policy scoring time (carrying rooms, doors or the agent, or carrying
things into them; pouring or dunking what is not a vessel; acting on rooms, doors or the agent
other than by walking, opening, closing or looking; `reset task`), adds each listed action's twin
(`open D` beside `close D`, `pick up X` beside `put down X`, `activate X` beside `deactivate X`
and back), and sorts the result. `match_gold` finds, for a gold action, the candidate with the
same template and the same objects (resolved through the objects' referents and containers),
which is how gold-path coverage is measured and how demonstrations are labelled.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Mapping, Sequence

# Template ids of the simulator's action templates.
OPEN, CLOSE, GO, LOOK_AROUND, LOOK_AT, LOOK_IN = 0, 1, 2, 3, 4, 5
ACTIVATE, DEACTIVATE = 6, 7
MOVE, POUR, FOCUS, RESET, USE, PICK_UP, PUT_DOWN, DUNK = 9, 10, 11, 12, 13, 21, 22, 26
_CARRY = {MOVE, POUR, DUNK, PICK_UP}  # the first object is carried (to the second one)
_CARRY_INTO = {MOVE, POUR, DUNK}
_EMPTIED = {POUR, DUNK}  # the first object is a container whose contents go into the second

# Rooms, the agent, doors and drains: neither carried nor carried into, only walked through,
# opened, closed or looked at. (Anything else may be carried: `find-non-living-thing` has gold
# paths that put a cupboard into a box.)
_PLACES = ("scienceworld.objects.location.", "scienceworld.objects.agent.",
           "scienceworld.objects.portal.")
_PLACE_TEMPLATES_KEPT = {OPEN, CLOSE, GO, LOOK_AT, LOOK_IN}
# Only a container that is not furniture is poured or dunked.
_CONTAINERS = "scienceworld.objects.containers."
_FURNITURE = "scienceworld.objects.containers.furniture."
# A listed action implies its twin: (template, verb, twin template, twin verb).
_TWINS = ((CLOSE, "close ", OPEN, "open "), (PUT_DOWN, "put down ", PICK_UP, "pick up "),
          (ACTIVATE, "activate ", DEACTIVATE, "deactivate "),
          (DEACTIVATE, "deactivate ", ACTIVATE, "activate "))

# Gold-path verbs that the simulator lists under another verb.
_VERB_ALIASES = (("examine ", "look at "), ("drop ", "put down "))
# The words that may join the two objects of a pour (gold paths write `in` or `into`).
_POUR_JOINERS = (" into ", " in ")
# `X in Y`, `X on Y`: the object X, qualified by what holds it (a lone `door` by where it goes).
_QUALIFIERS = (" in ", " on ")
_DOOR_QUALIFIER = " to "
_TERMINAL = re.compile(r"(.+) terminal \d+")


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One candidate action.

  Attributes:
    text: the action as typed.
    template_id: the simulator's template id.
    obj_ids: the ids of the objects that fill its slots, in order.
  """

  text: str
  template_id: int
  obj_ids: tuple[int, ...]


def _is_place(cls: str | None) -> bool:
  return bool(cls) and cls.startswith(_PLACES)


def _is_vessel(cls: str | None) -> bool:
  return bool(cls) and cls.startswith(_CONTAINERS) and not cls.startswith(_FURNITURE)


def _keep(entry: Mapping[str, Any], classes: Mapping[int, str]) -> bool:
  template = entry["template_id"]
  if template == RESET:
    return False
  kinds = [classes.get(t) for t in entry.get("type_ids", ())]
  if template in _CARRY and _is_place(kinds[0]):
    return False
  if template in _EMPTIED and not _is_vessel(kinds[0]):
    return False
  if template in _CARRY_INTO:
    return not _is_place(kinds[1])
  if len(kinds) == 1 and template not in _PLACE_TEMPLATES_KEPT:
    return not _is_place(kinds[0])
  return True


def build_candidates(valid: Iterable[Mapping[str, Any]],
                     classes: Mapping[int, str]) -> tuple[Candidate, ...]:
  """The candidate actions offered to policies, sorted by text.

  Args:
    valid: the simulator's `get_valid_action_object_combinations_with_templates()` entries
      (`action`, `template_id`, `obj_ids`, `type_ids`).
    classes: the simulator's object type id -> Java class name (from `get_object_types()`).

  Returns:
    The candidates, without duplicates, in a deterministic order.
  """
  by_text: dict[str, Candidate] = {}
  for entry in valid:
    if not _keep(entry, classes):
      continue
    text = entry["action"]
    by_text[text] = Candidate(text, entry["template_id"], tuple(entry["obj_ids"]))
    # Gold paths open doors that the `easy` preset opened, pick up what they carry and
    # switch off what they could not switch on.
    for template, verb, twin_template, twin_verb in _TWINS:
      if entry["template_id"] == template and text.startswith(verb):
        twin = twin_verb + text[len(verb):]
        by_text.setdefault(twin, Candidate(twin, twin_template, tuple(entry["obj_ids"])))
  return tuple(by_text[text] for text in sorted(by_text))


def object_names(candidates: Iterable[Candidate]) -> dict[int, str]:
  """Each object's name as the candidate list spells it, read off the one-object actions."""
  names: dict[int, str] = {}
  for cand in candidates:
    if len(cand.obj_ids) == 1 and cand.template_id in (LOOK_AT, FOCUS):
      prefix = "look at " if cand.template_id == LOOK_AT else "focus on "
      names.setdefault(cand.obj_ids[0], cand.text[len(prefix):])
  return names


def _door_aliases(name: str) -> tuple[str, ...]:
  """The other names of a door: `kitchen door` is also `door to kitchen`, and vice versa."""
  if name.endswith(" door"):
    return ("door to " + name[:-len(" door")],)
  if name.startswith("door to "):
    return (name[len("door to "):] + " door",)
  return ()


@dataclasses.dataclass(frozen=True)
class _World:
  """What gold phrases are resolved against: names, referents and containers of objects."""

  names: Mapping[int, str]
  referents: Mapping[int, Sequence[str]]
  parents: Mapping[int, int]

  def words(self, obj: int) -> tuple[str, ...]:
    name = self.names.get(obj)
    listed = (name, *_door_aliases(name)) if name else ()
    return (*listed, *self.referents.get(obj, ()))

  def held_by(self, obj: int, where: str) -> bool:
    """Whether `where` names a container (at any depth) of `obj`."""
    seen = set()
    while obj in self.parents and obj not in seen:
      seen.add(obj)
      obj = self.parents[obj]
      if where in self.words(obj):
        return True
    return False


def _rank(phrase: str, obj: int, world: _World) -> int | None:
  """How closely a phrase names an object (0: its listed name; None: not at all).

  Args:
    phrase: a gold action's object phrase (`thermometer in inventory`).
    obj: the object's id.
    world: the objects' names, referents and containers.
  """
  name = world.names[obj]
  if phrase == name:
    return 0
  words = world.words(obj)
  if phrase in words:
    return 1
  terminal = _TERMINAL.fullmatch(phrase)
  # `connect X terminal 1 to ...`: connecting X itself takes its first free terminal.
  best = 3 if terminal and terminal.group(1) in words else None
  for word in words:
    qualifiers = _QUALIFIERS + ((_DOOR_QUALIFIER,) if word == "door" else ())
    for qualifier in qualifiers:
      if phrase.startswith(word + qualifier):
        where = phrase[len(word) + len(qualifier):]
        # Closer when the qualifier names what holds the object.
        held = world.held_by(obj, where) or name.endswith(qualifier + where)
        rank = 2 if held else 3
        best = rank if best is None else min(best, rank)
  return best


def match_gold(action: str, candidates: Sequence[Candidate],
               referents: Mapping[int, Sequence[str]],
               parents: Mapping[int, int] | None = None) -> Candidate | None:
  """The candidate that does what a gold-path action does, or None when none does.

  Args:
    action: the gold action's text.
    candidates: the current candidates (from `build_candidates`).
    referents: object id -> every referent the simulator accepts for it (from
      `get_all_object_ids_types_referents_LUTJSON()`).
    parents: object id -> the id of the object that holds it (from the object tree), which
      tells `apple seed in seed jar` from an apple seed in a flower pot.

  Returns:
    The candidate with the same template whose objects the gold action's phrases name, the
    closest match first; the candidate with the same text if there is one.
  """
  for cand in candidates:
    if cand.text == action:
      return cand
  for gold, listed in _VERB_ALIASES:
    if action.startswith(gold):
      action = listed + action[len(gold):]
  world = _World(object_names(candidates), referents, parents or {})
  best, best_rank = None, None
  for cand in candidates:
    rank = _match_rank(action, cand, world)
    if rank is not None and (best_rank is None or rank < best_rank):
      best, best_rank = cand, rank
  return best


def _match_rank(action: str, cand: Candidate, world: _World) -> int | None:
  """How closely `action` names `cand`'s objects under `cand`'s verb (None: it does not)."""
  slots = [world.names.get(obj) for obj in cand.obj_ids]
  if not cand.obj_ids or None in slots:
    return 0 if action == cand.text else None
  verb = cand.text[:cand.text.index(slots[0])] if cand.text.find(slots[0]) > 0 else None
  if verb is None or not action.startswith(verb):
    return None
  rest = action[len(verb):]
  if len(slots) == 1:
    return _rank(rest, cand.obj_ids[0], world)
  joiner = cand.text[len(verb) + len(slots[0]):cand.text.rindex(slots[1])]
  best = None
  for joiner_word in _POUR_JOINERS if cand.template_id == POUR else (joiner,):
    start = rest.find(joiner_word)
    while start > 0:
      first, second = rest[:start], rest[start + len(joiner_word):]
      r1, r2 = _rank(first, cand.obj_ids[0], world), _rank(second, cand.obj_ids[1], world)
      if r1 is not None and r2 is not None and (best is None or r1 + r2 < best):
        best = r1 + r2
      start = rest.find(joiner_word, start + 1)
  return best
