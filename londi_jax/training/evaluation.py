"""Evaluating switching rules on fixed episodes: LONDI and the baselines of docs/evaluation.md,
with compute accounting (Sec. 2.2).

Every method plays the same episodes: episode `k` of `levels[k % len(levels)]` reset with seed
`episode_seed(seed, k, split)`, and actions drawn from common random numbers (`lm.crn_uniform`),
so two methods that make the same switches play the same trajectory. A method is a switching
rule `g = rule(view)` over the rows in flight; the small LM scores every row (its features and
confidence are the rule's input), the large LM only the rows with `g = 1` (all rows for the
oracle, which needs both greedy choices).

Compute counts the forward FLOPs a method needs on each step: the small LM where the method needs
it (every step, except for random switching and large-only, which need it only when `g = 0` and
never), the large LM where `g = 1`, and the switcher's MLP for LONDI. The oracle's knowledge of
where the two policies disagree is free: it is a bound, not a method one could run.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any, Callable, Sequence

import numpy as np

from londi_jax.envs.seeds import episode_seed
from londi_jax.training import features as features_lib
from londi_jax.training.lm import LMRunner, choose_actions, crn_uniform
from londi_jax.training.rows import Row

RANDOM_STREAM = 7  # crn stream of the random baseline's coin (actions use stream 0)


@dataclasses.dataclass
class View:
  """What a switching rule sees for the `n` rows in flight.

  Attributes:
    small: the small LM's output on the rows.
    phi: `phi(s)` `[n, F]`.
    remaining: remaining large calls `[n]` (the budget when there is none).
    episode_seeds, t: `[n]` reset seed of each row's episode and its step.
    small_actions, large_actions: `[n]` the candidate each policy would take (large only for
      rules with `needs_large_everywhere`).
  """

  small: Any
  phi: np.ndarray
  remaining: np.ndarray
  episode_seeds: np.ndarray
  t: np.ndarray
  small_actions: np.ndarray
  large_actions: np.ndarray | None


@dataclasses.dataclass
class Method:
  """A switching rule and what it needs.

  Attributes:
    name: the label in tables.
    rule: `View -> g [n]` int.
    small_everywhere: whether the method runs the small LM on every step (else only on g = 0).
    large_everywhere: whether the rule needs the large LM's choice on every row (oracle).
    switcher_flops: FLOPs of the switcher per step (LONDI only).
    budgeted: whether a hard budget holds the method (not the references and the oracle bound).
    info: extra fields for the result (cost, member, threshold, ...).
  """

  name: str
  rule: Callable[[View], np.ndarray]
  small_everywhere: bool = True
  large_everywhere: bool = False
  switcher_flops: int = 0
  budgeted: bool = True
  info: dict = dataclasses.field(default_factory=dict)


def episode_seeds(seed: int, episodes: int, split: str = "test") -> list[int]:
  """The reset seeds of the evaluation episodes."""
  return [episode_seed(seed, k, split) for k in range(episodes)]


def run_method(method: Method, small: LMRunner, large: LMRunner, config, *, episodes: int,
               seed: int, num_envs: int, split: str = "test", budget: int = 0) -> dict:
  """Plays `episodes` episodes with one switching rule, under a hard budget of `budget` large
  calls per episode (0: none) when the method is `budgeted`.

  Returns:
    Totals (`success_rate`, `mean_return`, `large_call_fraction`, `flops`, `steps`,
    `max_large_calls_per_episode`, `seconds_per_step` (wall time without the LMs' compilations),
    `device_seconds_per_step`) and
    `episodes`: per episode `seed`, `level`, `success`, `return`, `length`, `calls`; and
    `small_max_prob`, the small LM's max probability at every visited state.
  """
  levels = tuple(config.levels)
  prompt_configs = {"small": small.prompt_config, "large": large.prompt_config}
  seeds = episode_seeds(seed, episodes, split)
  queue = collections.deque(range(episodes))
  slots: list[Row] = [Row(prompt_configs) for _ in range(min(num_envs, episodes))]
  live: list[int | None] = [None] * len(slots)  # episode index per slot
  remaining = np.zeros(len(slots), np.int64)
  results: list[dict | None] = [None] * episodes
  flops = {"small": 0, "large": 0, "switcher": 0}
  steps = calls = 0
  device_time = compile_time = 0.0
  max_probs = []
  budget = budget if method.budgeted else 0

  def start(i: int) -> None:
    live[i] = None
    if queue:
      k = queue.popleft()
      slots[i].start(levels[k % len(levels)], seeds[k])
      live[i] = k
      remaining[i] = budget

  for i in range(len(slots)):
    start(i)
  wall_start = time.perf_counter()
  while any(k is not None for k in live):
    idx = [i for i, k in enumerate(live) if k is not None]
    rows = [slots[i] for i in idx]
    cands = [r.obs.valid_actions for r in rows]
    n_cands = np.array([len(c) for c in cands])
    ep_seeds = np.array([r.seed for r in rows], np.int64)
    t = np.array([r.t for r in rows], np.int64)
    u = crn_uniform(config.seed, ep_seeds, t)
    mode = config.policies.action
    view = View(small=None, phi=None, remaining=remaining[idx].copy(), episode_seeds=ep_seeds,
                t=t, small_actions=None, large_actions=None)
    small_rows = np.arange(len(rows))
    allowed = (remaining[idx] > 0) if budget > 0 else np.ones(len(rows), bool)  # hard budget
    if not method.small_everywhere:  # the rule needs no LM output; the small LM runs where g = 0
      g = np.asarray(method.rule(view), np.int64) * allowed
      small_rows = np.flatnonzero(g == 0)
    actions = np.zeros(len(rows), np.int64)
    if small_rows.size:
      s = small([rows[j].prompt("small") for j in small_rows], [cands[j] for j in small_rows])
      device_time += s.out.device_time_s
      compile_time += s.out.compile_time_s
      flops["small"] += int(s.row_flops.sum())
      actions[small_rows] = choose_actions(s.out.probs, n_cands[small_rows], u[small_rows], mode)
    if method.small_everywhere:
      view.small = s.out
      view.small_actions = actions.copy()
      view.phi = features_lib.build_features(config, s.out,
                                             np.array([r.time_fraction for r in rows]))
      max_probs.append(np.asarray(s.out.max_prob))
      large_out = None
      if method.large_everywhere:
        large_out = large([r.prompt("large") for r in rows], cands)
        device_time += large_out.out.device_time_s
        compile_time += large_out.out.compile_time_s
        view.large_actions = choose_actions(large_out.out.probs, n_cands, u, mode)
      g = np.asarray(method.rule(view), np.int64) * allowed
    called = np.flatnonzero(g)
    if called.size:
      if method.large_everywhere:
        actions[called] = view.large_actions[called]
        flops["large"] += int(large_out.row_flops[called].sum())
      else:
        lo = large([rows[j].prompt("large") for j in called], [cands[j] for j in called])
        device_time += lo.out.device_time_s
        compile_time += lo.out.compile_time_s
        actions[called] = choose_actions(lo.out.probs, n_cands[called], u[called], mode)
        flops["large"] += int(lo.row_flops.sum())
    flops["switcher"] += method.switcher_flops * len(rows)
    steps += len(rows)
    calls += int(g.sum())
    for j, (i, row) in enumerate(zip(idx, rows)):
      _, done, info = row.step(cands[j][actions[j]], int(g[j]))
      remaining[i] -= int(g[j]) if budget > 0 else 0
      if done:
        results[live[i]] = {"seed": row.seed, "level": row.env_id,
                            "success": bool(info["success"]), "return": row.episode_return,
                            "length": row.t, "calls": row.calls}
        start(i)
  wall = time.perf_counter() - wall_start - compile_time  # steady state: compilations excluded
  for row in slots:
    row.close()
  eps = [r for r in results if r is not None]
  total_flops = sum(flops.values())
  return {
      "episodes": eps,
      "num_episodes": len(eps),
      "success_rate": float(np.mean([e["success"] for e in eps])),
      "mean_return": float(np.mean([e["return"] for e in eps])),
      "mean_length": float(np.mean([e["length"] for e in eps])),
      "steps": steps,
      "large_calls": calls,
      "large_call_fraction": calls / steps,
      "max_large_calls_per_episode": int(max(e["calls"] for e in eps)),
      "flops": total_flops,
      "flops_by_model": flops,
      "seconds_per_step": wall / steps,
      "device_seconds_per_step": device_time / steps,
      "small_max_prob": np.concatenate(max_probs) if max_probs else np.zeros(0),
      **method.info,
  }


def small_only() -> Method:
  return Method("small_only", lambda v: np.zeros(len(v.t), np.int64), budgeted=False)


def large_only() -> Method:
  return Method("large_only", lambda v: np.ones(len(v.t), np.int64), small_everywhere=False,
                budgeted=False)


def oracle() -> Method:
  """Calls the large LM exactly where the two policies' actions differ (under the same random
  numbers, so elsewhere the call would change nothing)."""
  return Method("oracle", lambda v: (v.small_actions != v.large_actions).astype(np.int64),
                large_everywhere=True, budgeted=False)


def random_at_rate(rate: float, seed: int, name: str = "random", **info) -> Method:
  """Calls the large LM with probability `rate` on each step (its coin is a common random number
  of the step, so it needs the small LM only when it does not call)."""

  def rule(v: View):
    return (crn_uniform(seed, v.episode_seeds, v.t, RANDOM_STREAM) < rate).astype(np.int64)

  return Method(name, rule, small_everywhere=False, info=dict(info, rate=rate))


def confidence_threshold(threshold: float, name: str = "confidence", **info) -> Method:
  """Calls the large LM when the small LM's max probability is below `threshold`."""
  return Method(name, lambda v: (v.small.max_prob < threshold).astype(np.int64),
                info=dict(info, threshold=threshold))


def calibrate_threshold(max_probs: np.ndarray, rate: float) -> float:
  """The threshold below which a fraction `rate` of `max_probs` lies (its `rate`-quantile)."""
  if rate <= 0:
    return 0.0
  if rate >= 1:
    return float(np.inf)
  return float(np.quantile(max_probs, rate))


def summary_fields(result: dict, large_flops: float) -> dict:
  """The fields of `eval.json` for one method."""
  keys = ("success_rate", "mean_return", "mean_length", "large_call_fraction",
          "max_large_calls_per_episode", "seconds_per_step", "device_seconds_per_step", "flops",
          "flops_by_model", "steps", "large_calls", "num_episodes", "cost", "member", "rate",
          "threshold", "budget")
  out = {k: result[k] for k in keys if k in result}
  out["compute_relative_to_large"] = result["flops"] / large_flops
  out["episodes"] = result["episodes"]
  return out


def format_table(methods: dict[str, dict]) -> str:
  """A Markdown table of the methods' main numbers."""
  lines = ["| method | success | return | large calls | compute / large | max calls/ep | s/step |",
           "|---|---|---|---|---|---|---|"]
  for name, m in methods.items():
    lines.append(f"| {name} | {m['success_rate']:.3f} | {m['mean_return']:.3f} | "
                 f"{m['large_call_fraction']:.3f} | {m['compute_relative_to_large']:.3f} | "
                 f"{m['max_large_calls_per_episode']} | {m['seconds_per_step'] * 1e3:.2f} ms |")
  return "\n".join(lines)


def sorted_costs(costs: Sequence[float]) -> list[float]:
  return sorted(set(float(c) for c in costs))


def switcher_flops(q_params) -> int:
  """Forward FLOPs of the switcher's MLP on one state: `2 * fan_in * fan_out` per dense layer."""
  import jax
  return int(sum(2 * np.prod(np.shape(x)) for path, x in
                 jax.tree_util.tree_flatten_with_path(q_params)[0]
                 if str(path[-1]).find("kernel") >= 0))


def make_londi_rule_builder(config, num_envs: int):
  """Builds `londi(q_params, name, **info) -> Method`: the greedy learned switch (no exploration)
  under the hard-budget mask, decided every `switcher.hold` steps of an episode; rows are padded
  to `num_envs` so one compilation serves every batch and member."""
  import jax
  import jax.numpy as jnp

  from londi_jax.switching import budget as budget_lib
  from londi_jax.switching.acting import greedy_switch
  from londi_jax.switching.learner import q_values

  sw = config.switcher
  budget = int(sw.budget)
  hold = int(sw.get("hold", 1))

  @jax.jit
  def greedy(params, phi, remaining):
    q = q_values(sw, params, phi, remaining)  # [num_envs, 2]
    return greedy_switch(q, budget_lib.allowed_switches(remaining, budget))

  def londi(q_params, name: str = "londi", **info) -> Method:
    held: dict[int, int] = {}  # episode seed -> the switch of its latest decision

    def rule(v: View):
      n = len(v.t)
      phi = np.zeros((num_envs, v.phi.shape[1]), np.float32)  # [num_envs, F]
      phi[:n] = v.phi
      remaining = np.zeros(num_envs, np.int32)
      remaining[:n] = v.remaining
      g = np.array(greedy(q_params, jnp.asarray(phi), jnp.asarray(remaining))[:n])
      if hold > 1:  # decide every `hold` steps of an episode, as in training
        for j, (seed, t) in enumerate(zip(v.episode_seeds.tolist(), v.t.tolist())):
          if t % hold == 0:
            held[seed] = int(g[j])
          g[j] = held[seed]
      return g

    return Method(name, rule, switcher_flops=switcher_flops(q_params), info=info)

  return londi
