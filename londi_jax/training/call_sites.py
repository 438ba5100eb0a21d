"""Where a switcher calls the large LM: its call rate per task, by stage of the episode and by
the kind of action taken, from the episode records of a traced evaluation (`switches` and
`actions`; `training.episodes.episode_record`).

Stages: the third of the episode a step falls in (`early`, `middle`, `late`, by the step over the
episode's own length), and for families with a milestone action (ScienceWorld's `focus on`, which
commits to the task's object) whether the step comes `before` or `after` the first such action.
The kind of an action is its first word (`pick`, `move`, `focus`, `go`, ...).

    rows = call_site_rows(eval_json["methods"]["londi_c0.005_m0"]["episodes"])
    rows["scienceworld/boil"]["by_stage"]["before focus"]   # {"steps": ..., "call_rate": ...}
"""

from __future__ import annotations

import collections
from typing import Any, Iterable, Mapping, Sequence

from londi_jax.training.progress import FOCUS

MILESTONES = {"scienceworld": FOCUS}  # family prefix -> the action prefix of its milestone
THIRDS = ("early", "middle", "late")


def action_kind(action: str) -> str:
  """The first word of an action (`"pick up red box"` -> `"pick"`)."""
  return action.split(" ", 1)[0] if action.strip() else "(empty)"


def milestone_stage(reached: bool, milestone: str) -> str:
  """The stage name of a step before (`before focus`) or after (`after focus`) a milestone."""
  return f"{'after' if reached else 'before'} {milestone.split()[0]}"


def step_stages(actions: Sequence[str], milestone: str | None) -> list[list[str]]:
  """Per step, the stages it belongs to: its third of the episode and, with a `milestone`, whether
  it comes before the first action starting with it (the milestone step itself is `before`)."""
  n = len(actions)
  reached = False
  stages = []
  for t, action in enumerate(actions):
    names = [THIRDS[min(3 * t // max(n, 1), 2)]]
    if milestone is not None:
      names.append(milestone_stage(reached, milestone))
      reached = reached or action.startswith(milestone)
    stages.append(names)
  return stages


def _rates(counts: Mapping[str, list[int]]) -> dict[str, dict[str, float]]:
  return {k: {"steps": n, "call_rate": c / n} for k, (n, c) in counts.items()}


def call_site_rows(episodes: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
  """Per level (task), the call rate overall, by stage and by kind of action.

  Args:
    episodes: episode records with `level`, `switches` and `actions` (a traced method's).

  Returns:
    `{level: {"steps", "call_rate", "by_stage": {stage: {"steps", "call_rate"}}, "by_kind":
    {kind: {"steps", "call_rate"}}}}`, kinds by decreasing number of steps.

  Raises:
    ValueError: a record without `actions` (the method was not traced) or whose `switches` do not
      cover its actions.
  """
  stage_counts: dict[str, dict[str, list[int]]] = collections.defaultdict(dict)
  kind_counts: dict[str, dict[str, list[int]]] = collections.defaultdict(dict)
  for e in episodes:
    if "actions" not in e:
      raise ValueError(f"episode seed {e.get('seed')} of {e.get('level')} has no actions: "
                       "where a method calls needs a traced evaluation (Method.trace)")
    actions, switches = e["actions"], e["switches"]
    if len(actions) != len(switches):
      raise ValueError(f"episode seed {e['seed']}: {len(switches)} switches for "
                       f"{len(actions)} actions")
    level = e["level"]
    milestone = MILESTONES.get(level.partition("/")[0])
    for action, switch, stages in zip(actions, switches, step_stages(actions, milestone)):
      for counts, key in [(stage_counts[level], s) for s in ("all", *stages)] + [
          (kind_counts[level], action_kind(action))]:
        n_c = counts.setdefault(key, [0, 0])
        n_c[0] += 1
        n_c[1] += switch == "1"
  rows = {}
  for level in sorted(stage_counts):
    stages = _rates(stage_counts[level])
    total = stages.pop("all")
    order = sorted(kind_counts[level].items(), key=lambda kv: (-kv[1][0], kv[0]))
    rows[level] = {**total, "by_stage": stages, "by_kind": _rates(dict(order))}
  return rows


def merge_episodes(methods: Mapping[str, Mapping[str, Any]], prefix: str = "londi"
                   ) -> list[Mapping[str, Any]]:
  """The episodes of every traced method whose name starts with `prefix` (a sweep's members)."""
  return [e for name, m in methods.items() if name.startswith(prefix)
          for e in m["episodes"] if "actions" in e]


def table_lines(rows: Mapping[str, Mapping[str, Any]], top_kinds: int = 4) -> list[str]:
  """A Markdown table: per level its steps, call rate, the rate in each stage, and the most
  frequent kinds of action with their call rates."""
  stages = [s for s in (*THIRDS, *(milestone_stage(reached, m) for m in MILESTONES.values()
                                   for reached in (False, True)))
            if any(s in r["by_stage"] for r in rows.values())]
  lines = ["| task | steps | calls | " + " | ".join(stages) + " | most frequent actions (calls) |",
           "|---|---|---|" + "---|" * len(stages) + "---|"]
  for level, r in rows.items():
    cells = [level.partition("/")[2] or level, str(r["steps"]), f"{r['call_rate']:.0%}"]
    for s in stages:
      st = r["by_stage"].get(s)
      cells.append("-" if st is None else f"{st['call_rate']:.0%} of {st['steps']}")
    kinds = list(r["by_kind"].items())[:top_kinds]
    cells.append(", ".join(f"{k} {v['steps']} ({v['call_rate']:.0%})" for k, v in kinds))
    lines.append("| " + " | ".join(cells) + " |")
  return lines
