"""Evaluating a trained run against every baseline on the same episodes (`launch.evaluate`).

Methods, in order: `small_only`, `large_only`, `oracle`, then for each member (cost `c`, and the
hard budget `n` when configured, `londi_b<n>_c<c>`): `londi_c<c>` (the greedy switcher),
`random_c<c>` (random switching at that switcher's measured call rate) and `confidence_c<c>`
(a threshold on the small LM's max probability: the quantile at that rate of the max
probabilities the switcher's own episodes visited, then `eval.calibration_rounds` times the
quantile over the states the previous threshold visited, keeping the threshold whose call rate is
closest to the target). Under a hard budget every method is held to it, except the references
(small-only, large-only) and the oracle bound. `compute_relative_to_large` is a method's total
FLOPs over the episodes divided by large-only's.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from londi_jax.switching.config import member_seeds_and_costs
from londi_jax.training import evaluation as ev
from londi_jax.training import features as features_lib
from londi_jax.training.checkpoint import CheckpointStore, load_config
from londi_jax.training.lm import load_runners
from londi_jax.training.members import make_members


def restore_members(config, workdir: str, feature_dim: int, which: str = "latest"):
  """`(members, step)` of a run's checkpoint."""
  members, _ = make_members(config, feature_dim)
  abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), members)
  store = CheckpointStore(workdir, read_only=True)
  try:
    members, _, meta = store.restore(abstract, which=which)
  finally:
    store.close()
  return members, int(meta["step"])


def method_label(prefix: str, cost: float, budget: int) -> str:
  return f"{prefix}_b{budget}_c{cost:g}" if budget > 0 and prefix == "londi" else \
      f"{prefix}_c{cost:g}"


def evaluate_run(workdir: str, episodes: int | None = None, seed: int | None = None,
                 which: str | None = None, runners=None,
                 log: Callable[[str], None] = print,
                 progress: Callable[[str, int], Any] | None = None) -> dict:
  """Evaluates the run in `workdir` and writes `DIR/eval.json`; returns what it writes.

  Args:
    workdir: a `launch.train` run folder.
    episodes, seed, which: override the run's `eval.episodes`, `eval.seed`, `eval.checkpoint`.
    runners: the small and large `LMRunner` (default: loaded from the run's config).
    log: prints a line per method and the table.
    progress: `progress(method_name, episodes)` opens a progress bar for one method's episodes
      (an object with `update(n)` and `close()`, e.g. `tqdm.tqdm`); None shows none.
  """
  workdir = os.path.abspath(workdir)
  config = load_config(workdir)
  episodes = int(config.eval.episodes if episodes is None else episodes)
  seed = int(config.eval.seed if seed is None else seed)
  which = which or config.eval.checkpoint
  small, large = runners or load_runners(config)
  feature_dim = features_lib.feature_dim(config, small.hidden_size)
  members, step = restore_members(config, workdir, feature_dim, which)
  _, costs = member_seeds_and_costs(config)
  budget = int(config.switcher.budget)
  num_envs = min(int(config.eval.num_envs), episodes)
  common = dict(episodes=episodes, seed=seed, num_envs=num_envs, split="test", budget=budget)
  log(f"evaluating {workdir} ({which} checkpoint, step {step}) on {episodes} episodes, seed {seed}")

  results = {}

  def play(method: ev.Method) -> dict:
    bar = progress(method.name, episodes) if progress is not None else None
    try:
      return ev.run_method(method, small, large, config, **common,
                           progress=None if bar is None else bar.update)
    finally:
      if bar is not None:
        bar.close()

  def run(method: ev.Method) -> dict:
    r = play(method)
    r["budget"] = budget if method.budgeted else 0
    results[method.name] = r
    log(f"  {method.name:<22s} success {r['success_rate']:.3f}  calls "
        f"{r['large_call_fraction']:.3f}  {r['seconds_per_step'] * 1e3:.1f} ms/step")
    return r

  run(ev.small_only())
  run(ev.large_only())
  run(ev.oracle())
  londi = ev.make_londi_rule_builder(config, num_envs)
  params = jax.device_get(members.learner.q_params)
  for k, cost in enumerate(costs):
    q = jax.tree_util.tree_map(lambda x: jnp.asarray(x[k]), params)
    r = run(londi(q, method_label("londi", cost, budget), cost=cost, member=k))
    rate = r["large_call_fraction"]
    run(ev.random_at_rate(rate, seed, method_label("random", cost, budget), cost=cost, member=k))
    name = method_label("confidence", cost, budget)
    visited = r["small_max_prob"]
    best = None
    for _ in range(1 + int(config.eval.calibration_rounds)):
      threshold = ev.calibrate_threshold(visited, rate)
      c = play(ev.confidence_threshold(threshold, name, cost=cost, member=k))
      if best is None or abs(c["large_call_fraction"] - rate) < abs(
          best["large_call_fraction"] - rate):
        best = c
      visited = c["small_max_prob"]  # the threshold's own states: a fixed-point iteration
    best["budget"] = budget
    results[name] = best
    log(f"  {name:<22s} success {best['success_rate']:.3f}  calls "
        f"{best['large_call_fraction']:.3f} (target {rate:.3f}, threshold {best['threshold']:.4f})")

  large_flops = results["large_only"]["flops"]
  out = {
      "workdir": os.path.relpath(workdir), "checkpoint": {"which": which, "step": step},
      "episodes": episodes, "seed": seed, "split": "test", "budget": budget,
      "levels": list(config.levels), "member_costs": costs,
      "seeds": ev.episode_seeds(seed, episodes, "test"),
      "methods": {name: ev.summary_fields(r, large_flops) for name, r in results.items()},
  }
  tmp = os.path.join(workdir, "eval.json.tmp")
  with open(tmp, "w") as f:
    json.dump(out, f, indent=1, default=_json_default)
  os.replace(tmp, os.path.join(workdir, "eval.json"))
  log(ev.format_table(out["methods"]))
  return out


def _json_default(x):
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (np.floating,)):
    return float(x)
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f"not JSON serialisable: {type(x)}")
