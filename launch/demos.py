"""Collects expert demonstrations for behaviour cloning.

    python -m launch.demos --env babyai_text/BabyAI-GoToLocal-v0 --episodes 2000 --out DIR
    python -m launch.demos --env babyai_text/BabyAI-GoToLocal-v0,babyai_text/BabyAI-PickupLoc-v0 \
        --episodes 500 --out DIR --split test

Writes `DIR/demos.jsonl` and `DIR/summary.json` (`londi_jax.envs.demo_files`), then prints the expert's
success rate per environment and level as a table and, last, as one JSON line. Each env id's
family (`babyai_text/...`, `scienceworld/...`) selects the module whose `collect` plays the expert.
"""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any

from absl import app, flags
import tqdm

from londi_jax.envs.demo_files import DemoWriter
from londi_jax.envs.base import UnknownEnvironmentError

# env id family -> module with `collect(env_id, writer, *, episodes, seed, split, ...) -> dict`.
COLLECTORS = {
    "babyai_text": "londi_jax.envs.babyai.expert",
    "scienceworld": "londi_jax.envs.scienceworld.gold",
}

def collector(env_id: str):
  """The `collect` function for an env id's family.

  Raises:
    UnknownEnvironmentError: the id names no family with demonstrations.
  """
  family = env_id.partition("/")[0]
  if family not in COLLECTORS or "/" not in env_id:
    raise UnknownEnvironmentError(f"no demonstrations for {env_id!r}: the id must start with one of "
                     f"{', '.join(f'{f}/' for f in COLLECTORS)}")
  return importlib.import_module(COLLECTORS[family]).collect


def format_table(summaries: list[dict[str, Any]]) -> str:
  """One row per (environment, level): episodes, expert successes and success rate."""
  rows = [("env", "level", "episodes", "success", "rate")]
  for s in summaries:
    for level, c in s.get("per_level", {"-": s}).items():
      rows.append((s["env_id"], level, str(c["episodes"]), str(c["successes"]),
                   f"{c['success_rate']:.3f}"))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def run(env_ids: list[str], episodes: int, out: str, seed: int = 0,
        split: str | None = None) -> list[dict[str, Any]]:
  """Collects demonstrations of every env id into `out`; returns their summaries."""
  collectors = [collector(env_id) for env_id in env_ids]  # fail before writing anything
  summaries = []
  with DemoWriter(out) as writer:
    for env_id, collect in zip(env_ids, collectors):
      kwargs: dict[str, Any] = {"episodes": episodes, "seed": seed}
      if split is not None:  # otherwise the family's own default split
        kwargs["split"] = split
      with tqdm.tqdm(total=episodes, desc=env_id, unit="episode") as bar:
        if "progress" in inspect.signature(collect).parameters:
          kwargs["progress"] = bar.update
        summaries.append(collect(env_id, writer, **kwargs))
  return summaries


def define_flags() -> None:
  """Defines the command-line flags (only when run as a program, so importing stays inert)."""
  flags.DEFINE_list("env", None, "Environment id(s), e.g. babyai_text/BabyAI-GoToLocal-v0.",
                    required=True)
  flags.DEFINE_integer("episodes", 100, "Episodes per environment.", lower_bound=1)
  flags.DEFINE_string("out", None, "Output folder.", required=True)
  flags.DEFINE_integer("seed", 0, "First seed of the episode range.")
  flags.DEFINE_string("split", None, "Split (train, dev, test) where the family has them.")


def main(argv):
  del argv
  f = flags.FLAGS
  try:
    summaries = run(f.env, f.episodes, f.out, f.seed, f.split)
  except UnknownEnvironmentError as e:
    raise app.UsageError(str(e)) from e
  print(format_table(summaries))
  print(json.dumps({"out": f.out, "summaries": summaries}, sort_keys=True))


if __name__ == "__main__":
  define_flags()
  app.run(main)
