"""Expert demonstrations on BabyAI-Text from minigrid's `BabyAIBot`.

`collect` plays `episodes` episodes of one level with the bot and writes one record per step
(`londi_jax.envs.demo_files` format). Episode `k` is reset with seed `offset(split) + seed + k`,
so a seed range always gives the same demonstrations, and the splits (`train`, `dev`, `test`)
never share a seed. Besides the required keys, a record holds what any prompt template needs:
`mission`, `sentences` (this step's observation) and `step`; earlier observations and actions are
the episode's earlier records. `prompt` is written with the default template (`PromptConfig()`).
"""

from __future__ import annotations

import collections
from typing import Any, Callable

from minigrid.utils.baby_ai_bot import BabyAIBot

from londi_jax import envs
from londi_jax.envs.demo_files import DemoWriter
from londi_jax.envs.babyai.env import ACTIONS
from londi_jax.envs.babyai.prompts import PromptConfig, PromptHistory
from londi_jax.envs.seeds import episode_seed


def run_expert(env, seed: int, config: PromptConfig = PromptConfig()
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
  """Plays one episode with the bot.

  Args:
    env: a BabyAI-Text environment (`londi_jax.envs.babyai.env.BabyAITextEnv`).
    seed: the reset seed.
    config: the prompt template written into the records.

  Returns:
    `(steps, outcome)`: per step a dict with `step`, `prompt`, `action`, `valid_actions`,
    `mission`, `sentences`; and `success`, `length`, `return`, `level` of the episode. The bot
    fails when it gives up (`done`), raises, or runs out of steps.
  """
  obs = env.reset(seed=seed)
  history = PromptHistory(config)
  history.reset(obs)
  bot = BabyAIBot(env.unwrapped)
  steps, total, info = [], 0.0, {"success": False}
  done = False
  while not done:
    try:
      index = int(bot.replan())
    except Exception:  # the bot's own failures (e.g. DisappearedBoxError) end the episode
      break
    if index >= len(ACTIONS):  # `done`: the bot believes the mission is over, but it is not
      break
    action = ACTIONS[index]
    steps.append({"step": len(steps), "prompt": history.prompt(), "action": action,
                  "valid_actions": list(obs.valid_actions), "mission": obs.mission,
                  "sentences": list(obs.sentences)})
    obs, reward, done, info = env.step(action)
    total += reward
    history.record(action, obs, reward)
  outcome = {"success": bool(info["success"]), "length": len(steps), "return": total,
             "level": env.level}
  return steps, outcome


def collect(env_id: str, writer: DemoWriter, *, episodes: int, seed: int = 0,
            split: str | None = None, keep_failed: bool = False,
            prompt_config: PromptConfig = PromptConfig(),
            progress: Callable[[int], Any] | None = None, **env_kwargs: Any) -> dict[str, Any]:
  """Writes the bot's demonstrations of `episodes` episodes of one level.

  Args:
    env_id: a `babyai_text/...` id.
    writer: where the records go.
    episodes: how many episodes to play.
    seed: first seed of the range (see `episode_seed`).
    split: `train`, `dev` or `test` (disjoint seed ranges); None is `train`.
    keep_failed: also write the steps of episodes the bot failed.
    prompt_config: the template of the records' `prompt`.
    progress: called with 1 after each episode (e.g. a tqdm bar's `update`).
    **env_kwargs: passed to `londi_jax.envs.make`.

  Returns:
    `env_id`, `episodes`, `successes`, `success_rate`, `records`, `seeds` ([first, last]) and
    `per_level` (for the mixed levels, per mission kind: `episodes`, `successes`,
    `success_rate`, `mean_length`); also stored in `writer.summary["collect"][env_id]`.
  """
  env = envs.make(env_id, **env_kwargs)
  per_level: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  records = 0
  try:
    for k in range(episodes):
      s = episode_seed(seed, k, split)
      steps, outcome = run_expert(env, s, prompt_config)
      level = per_level[outcome["level"]]
      level["episodes"] += 1
      level["successes"] += outcome["success"]
      level["steps"] += outcome["length"]
      if outcome["success"] or keep_failed:
        for step in steps:
          writer.write({"env_id": env_id, "episode": k, "seed": s, "level": outcome["level"],
                        "success": outcome["success"], **step})
        records += len(steps)
      if progress is not None:
        progress(1)
  finally:
    env.close()
  successes = sum(c["successes"] for c in per_level.values())
  summary = {
      "env_id": env_id, "episodes": episodes, "successes": successes,
      "success_rate": successes / episodes if episodes else float("nan"), "records": records,
      "seeds": [episode_seed(seed, 0, split), episode_seed(seed, episodes - 1, split)],
      "per_level": {name: {"episodes": c["episodes"], "successes": c["successes"],
                           "success_rate": c["successes"] / c["episodes"],
                           "mean_length": c["steps"] / c["episodes"]}
                    for name, c in sorted(per_level.items())},
  }
  writer.summary.setdefault("collect", {})[env_id] = summary
  return summary
