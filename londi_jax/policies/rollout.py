"""Success rate of a policy in text environments, batched over episodes, with a 95% interval."""

from __future__ import annotations

import collections
import math
from typing import Any, Callable, Sequence

import numpy as np

from londi_jax import envs
from londi_jax.envs.seeds import episode_seed
from londi_jax.envs.babyai.prompts import PromptConfig, PromptHistory
from londi_jax.policies.policy import Policy


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
  """Wilson score interval of a binomial proportion (Wilson 1927), 95% by default."""
  if n == 0:
    return (0.0, 1.0)
  p = successes / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return (max(0.0, centre - half), min(1.0, centre + half))


def evaluate_policy(policy: Policy, prompt_config: PromptConfig, env_ids: Sequence[str],
                    episodes: int, *, seed: int = 0, split: str = "test", num_envs: int = 32,
                    mode: str = "sampled",
                    progress: Callable[[int], Any] | None = None) -> dict[str, Any]:
  """Plays `episodes` episodes, episode `k` of `env_ids[k % len(env_ids)]` with the reset seed
  `londi_jax.envs.seeds.episode_seed(seed, k, split)` (the `test` split never meets training seeds).

  Args:
    policy: acts on `prompt_config` prompts.
    prompt_config: the policy's prompt template and history.
    env_ids: the level mix.
    episodes: how many episodes in all.
    seed: first seed of the range.
    split: the seed range (`train`, `dev`, `test`).
    num_envs: episodes played at once (one batched policy call per step).
    mode: `sampled` (from the action distribution, as GLAM evaluates) or `greedy`.
    progress: called with 1 after each finished episode.

  Returns:
    `episodes`, `successes`, `success_rate`, `ci95`, `mode`, `per_level` (episodes, successes,
    success_rate, ci95), `steps`, `mean_length`, `flops_per_step`, `mean_prompt_tokens` and
    `device_time_per_call_s`.
  """
  if mode not in ("sampled", "greedy"):
    raise ValueError(f"mode must be sampled or greedy, got {mode!r}")
  pool: dict[tuple[int, str], Any] = {}
  queue = collections.deque(range(episodes))
  slots: list[dict[str, Any] | None] = [None] * min(num_envs, episodes)
  results: dict[str, list[int]] = collections.defaultdict(list)
  steps = flops = prompt_tokens = 0
  device_time, timed_calls = 0.0, 0

  def start(i: int) -> None:
    if not queue:
      slots[i] = None
      return
    k = queue.popleft()
    env_id = env_ids[k % len(env_ids)]
    env = pool.get((i, env_id))
    if env is None:
      env = pool[(i, env_id)] = envs.make(env_id)
    history = PromptHistory(prompt_config)
    obs = env.reset(seed=episode_seed(seed, k, split))
    history.reset(obs)
    slots[i] = {"env": env, "env_id": env_id, "history": history, "obs": obs}

  for i in range(len(slots)):
    start(i)
  try:
    while any(s is not None for s in slots):
      live = [i for i, s in enumerate(slots) if s is not None]
      prompts = [slots[i]["history"].prompt() for i in live]
      out = policy(prompts, [slots[i]["obs"].valid_actions for i in live])
      actions = out.sampled_action if mode == "sampled" else out.greedy_action
      steps += len(live)
      flops += out.flops
      prompt_tokens += sum(len(p) for p in policy.tokenizer.encode_prompts(prompts))
      if out.device_time_s > 0:
        device_time += out.device_time_s
        timed_calls += 1
      for i, action in zip(live, actions):
        slot = slots[i]
        obs, _, done, info = slot["env"].step(action)
        slot["history"].record(action, obs)
        slot["obs"] = obs
        if done:
          results[slot["env_id"]].append(int(info["success"]))
          if progress is not None:
            progress(1)
          start(i)
  finally:
    for env in pool.values():
      env.close()
  every = [x for r in results.values() for x in r]
  n, s = len(every), int(sum(every))
  return {
      "episodes": n, "successes": s, "success_rate": s / n if n else float("nan"),
      "ci95": list(wilson_interval(s, n)), "mode": mode,
      "per_level": {k: {"episodes": len(v), "successes": int(sum(v)),
                        "success_rate": float(np.mean(v)),
                        "ci95": list(wilson_interval(int(sum(v)), len(v)))}
                    for k, v in sorted(results.items())},
      "steps": steps, "mean_length": steps / n if n else float("nan"),
      "flops_per_step": flops / steps if steps else float("nan"),
      "mean_prompt_tokens": prompt_tokens / steps if steps else float("nan"),
      "device_time_per_call_s": device_time / timed_calls if timed_calls else float("nan"),
  }
