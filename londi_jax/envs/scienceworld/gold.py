"""Gold-path demonstrations on ScienceWorld.

`collect` plays the simulator's gold path (`generateGoldPath=True`) on the variations of a split
and writes one record per step (`londi_jax.envs.demo_files` format) with the compact prompt of
`londi_jax.envs.scienceworld.prompts`. Each gold action is replaced by the candidate that does the
same thing (`candidates_lib.match_gold`: `examine X` is listed as `look at X`, `thermometer in
inventory` as `thermometer`), so the recorded action is one of the record's `valid_actions`; the
episode is played with the recorded actions, so its final score shows that the replacements did
what the gold path did. A gold action without such a candidate is played and recorded as written,
with `covered: false`. The gold paths' `0` (the answer to an ambiguity prompt) is left out, since
the environment answers those prompts itself.

Episode `k` resets with seed `seed + k`: the split's variation number `(seed + k) mod n`.
"""

from __future__ import annotations

import collections
import statistics
from typing import Any, Callable

from londi_jax import envs
from londi_jax.envs.demo_files import DemoWriter
from londi_jax.envs.scienceworld import candidates as candidates_lib
from londi_jax.envs.scienceworld.prompts import PromptConfig, PromptHistory

_AMBIGUITY_ANSWER = "0"


def play_gold(env, seed: int, config: PromptConfig = PromptConfig()
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
  """Plays one episode's gold path through the candidate list.

  Args:
    env: a `ScienceWorld` environment made with `gold_path=True`.
    seed: the reset seed (picks the variation).
    config: the prompt template written into the records.

  Returns:
    `(steps, outcome)`: per step a dict with `step`, `prompt`, `action`, `gold_action`,
    `covered`, `valid_actions`, `mission`, `observation`, `look`, `inventory`, `score` (enough
    for `prompts.episode_prompts` to rebuild the prompt in any template); and the episode's
    `variation`, `success`, `score`, `length`, `gold_length`, `covered`, `uncovered` (the gold
    actions without a candidate) and `candidates` (the list's size at each step).
  """
  obs = env.reset(seed=seed)
  history = PromptHistory(config)
  history.reset(obs)
  gold = [a for a in env.gold_actions if a != _AMBIGUITY_ANSWER]
  steps, uncovered, sizes = [], [], []
  info = {"success": False, "score": 0}
  for gold_action in gold:
    match = candidates_lib.match_gold(gold_action, env.candidates, env.referents(),
                                               env.parents())
    action = match.text if match else gold_action
    if match is None:
      uncovered.append(gold_action)
    sizes.append(len(obs.valid_actions))
    steps.append({"step": len(steps), "prompt": history.prompt(), "action": action,
                  "gold_action": gold_action, "covered": match is not None,
                  "valid_actions": list(obs.valid_actions), "mission": obs.mission,
                  "observation": obs.extra["observation"], "look": obs.extra["look"],
                  "inventory": obs.extra["inventory"], "score": obs.extra["score"]})
    obs, reward, done, info = env.step(action)
    history.record(action, obs, reward)
    if done:
      break
  outcome = {"variation": env.variation, "success": bool(info["success"]),
             "score": int(info["score"]), "length": len(steps), "gold_length": len(gold),
             "covered": len(steps) - len(uncovered), "uncovered": uncovered, "candidates": sizes}
  return steps, outcome


def collect(env_id: str, writer: DemoWriter, *, episodes: int, seed: int = 0,
            split: str | None = "train", keep_failed: bool = False, distinct: bool = False,
            prompt_config: PromptConfig = PromptConfig(),
            progress: Callable[[int], Any] | None = None, **env_kwargs: Any) -> dict[str, Any]:
  """Writes the gold-path demonstrations of `episodes` episodes of one task.

  Args:
    env_id: a `scienceworld/...` id (task name or id).
    writer: where the records go.
    episodes: how many episodes to play.
    seed: the first reset seed (see the module docstring).
    split: `train`, `dev` or `test`; None is `train`.
    keep_failed: also write the steps of episodes whose gold path did not reach score 100.
    distinct: play each of the split's variations at most once (at most as many episodes as the
      split has variations).
    prompt_config: the template of the records' `prompt`.
    progress: called with 1 after each episode (e.g. a tqdm bar's `update`).
    **env_kwargs: passed to `londi_jax.envs.make` (e.g. `simplification`); the step limit
      defaults to 1000, since some gold paths are longer than the usual 100 steps.

  Returns:
    `env_id`, `episodes`, `successes`, `success_rate`, `records`, `mean_final_score`,
    `gold_coverage` (the share of gold actions with a candidate), `gold_actions`,
    `uncovered` (the most frequent gold actions without one), `candidates` (median and max of
    the list's size) and `variations`; also stored in `writer.summary["collect"][env_id]`.
  """
  env_kwargs.setdefault("step_limit", 1000)
  env = envs.make(env_id, split=split or "train", gold_path=True, **env_kwargs)
  outcomes, records = [], 0
  try:
    if distinct:
      episodes = min(episodes, len(env.variations()))
    for k in range(episodes):
      steps, outcome = play_gold(env, seed + k, prompt_config)
      outcomes.append(outcome)
      if outcome["success"] or keep_failed:
        for step in steps:
          writer.write({"env_id": env_id, "episode": k, "seed": seed + k,
                        "variation": outcome["variation"], "success": outcome["success"], **step})
        records += len(steps)
      if progress is not None:
        progress(1)
  finally:
    env.close()
  summary = _summary(env_id, outcomes, records)
  writer.summary.setdefault("collect", {})[env_id] = summary
  return summary


def _summary(env_id: str, outcomes: list[dict[str, Any]], records: int) -> dict[str, Any]:
  episodes = len(outcomes)
  successes = sum(o["success"] for o in outcomes)
  played = sum(o["length"] for o in outcomes)
  covered = sum(o["covered"] for o in outcomes)
  sizes = [size for o in outcomes for size in o["candidates"]]
  uncovered = collections.Counter(a for o in outcomes for a in o["uncovered"])
  nan = float("nan")
  return {
      "env_id": env_id, "episodes": episodes, "successes": successes,
      "success_rate": successes / episodes if episodes else nan, "records": records,
      "mean_final_score": statistics.fmean(o["score"] for o in outcomes) if outcomes else nan,
      "gold_actions": played, "gold_coverage": covered / played if played else nan,
      "uncovered": dict(uncovered.most_common(10)),
      "candidates": {"median": statistics.median(sizes) if sizes else 0,
                     "max": max(sizes, default=0)},
      "variations": [o["variation"] for o in outcomes],
  }
