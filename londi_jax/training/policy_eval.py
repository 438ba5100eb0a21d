"""Success rate (and mean score, where episodes have one) of one LM policy on a level mix, with
95% intervals (`launch.pretrain`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np

from londi_jax import envs
from londi_jax.policies.policy import Policy, PolicyOutput
from londi_jax.training.episodes import Schedule, play_episodes
from londi_jax.training.evaluation import mean_and_ci95
from londi_jax.training.rows import Row

NAME = "policy"  # the rows' name of the one prompt history


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
  """Wilson score interval of a binomial proportion (Wilson 1927), 95% by default."""
  if n == 0:
    return (0.0, 1.0)
  p = successes / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return (max(0.0, centre - half), min(1.0, centre + half))


@dataclasses.dataclass
class _Tally:
  """What the policy's calls cost: steps, FLOPs, prompt tokens and timed device time."""

  steps: int = 0
  flops: int = 0
  prompt_tokens: int = 0
  device_time: float = 0.0
  timed_calls: int = 0

  def add(self, policy: Policy, prompts: Sequence[str], out: PolicyOutput) -> None:
    self.steps += len(prompts)
    self.flops += out.flops
    self.prompt_tokens += sum(len(p) for p in policy.tokenizer.encode_prompts(prompts))
    if out.device_time_s > 0:  # a call that compiled is not timed
      self.device_time += out.device_time_s
      self.timed_calls += 1


def evaluate_policy(policy: Policy, prompt_config: Any, env_ids: Sequence[str], episodes: int, *,
                    seed: int = 0, split: str = "test", num_envs: int = 32, mode: str = "sampled",
                    progress: Callable[[int], Any] | None = None,
                    env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
  """Plays `episodes` episodes, episode `k` of `env_ids[k % len(env_ids)]` with the reset seed
  `londi_jax.envs.seeds.episode_seed(seed, k, split)` (the `test` split never meets training
  seeds), on `training.episodes.play_episodes`.

  Args:
    policy: acts on `prompt_config` prompts; samples with its own key stream.
    prompt_config: the policy's prompt template and history (the family's `PromptConfig`, or its
      saved fields).
    env_ids: the level mix.
    episodes: how many episodes in all.
    seed: first seed of the range.
    split: the seed range (`train`, `dev`, `test`).
    num_envs: episodes played at once (one batched policy call per step).
    mode: `sampled` (from the action distribution, as GLAM evaluates) or `greedy`.
    progress: called with 1 after each finished episode.
    env_kwargs: keyword arguments of `envs.make` (ScienceWorld's `step_limit`, ...).

  Returns:
    `episodes`, `successes`, `success_rate`, `ci95`, `mode`, `per_level` (episodes, successes,
    success_rate, ci95), `steps`, `mean_length`, `flops_per_step`, `mean_prompt_tokens` and
    `device_time_per_call_s`; where episodes have scores (ScienceWorld's 0-100) also
    `mean_score` and `score_ci95`, overall and per level.
  """
  if mode not in ("sampled", "greedy"):
    raise ValueError(f"mode must be sampled or greedy, got {mode!r}")
  tally = _Tally()

  def act(slots: list[int], rows: list[Row]):
    del slots
    prompts = [row.prompt(NAME) for row in rows]
    out = policy(prompts, [row.obs.valid_actions for row in rows])
    tally.add(policy, prompts, out)
    actions = out.sampled_action if mode == "sampled" else out.greedy_action
    return actions, np.zeros(len(rows), np.int64)

  kwargs = dict(env_kwargs or {})
  played = play_episodes(Schedule(tuple(env_ids), episodes, seed, split), {NAME: prompt_config},
                         num_envs, act, progress,
                         make_env=lambda env_id: envs.make(env_id, **kwargs))
  return _summary(played.episodes, tally, mode)


def _scores(records: list[dict[str, Any]]) -> dict[str, Any]:
  scores = [e.get("score") for e in records]
  if not scores or any(x is None for x in scores):
    return {}
  mean, half = mean_and_ci95(scores)
  return {"mean_score": mean, "score_ci95": [mean - half, mean + half]}


def _summary(records: list[dict[str, Any]], tally: _Tally, mode: str) -> dict[str, Any]:
  by_level: dict[str, list[dict[str, Any]]] = {}
  for e in records:
    by_level.setdefault(e["level"], []).append(e)
  n, s = len(records), sum(int(e["success"]) for e in records)
  steps = tally.steps
  return {
      "episodes": n, "successes": s, "success_rate": s / n if n else float("nan"),
      "ci95": list(wilson_interval(s, n)), "mode": mode,
      **_scores(records),
      "per_level": {k: {"episodes": len(v), "successes": sum(int(e["success"]) for e in v),
                        "success_rate": float(np.mean([e["success"] for e in v])),
                        "ci95": list(wilson_interval(sum(int(e["success"]) for e in v), len(v))),
                        **_scores(v)}
                    for k, v in sorted(by_level.items())},
      "steps": steps, "mean_length": steps / n if n else float("nan"),
      "flops_per_step": tally.flops / steps if steps else float("nan"),
      "mean_prompt_tokens": tally.prompt_tokens / steps if steps else float("nan"),
      "device_time_per_call_s": (tally.device_time / tally.timed_calls if tally.timed_calls
                                 else float("nan")),
  }

