"""Evaluating a trained run against every baseline on the same episodes (`launch.evaluate`).

Methods, in order: `small_only`, `large_only`, `disagreement` (the reference that calls exactly
where the two policies' actions differ), then for each member (cost `c`; `londi_b<n>_c<c>` under
a hard budget `n`):

- `londi_c<c>`: the greedy switcher, its decisions held `switcher.hold` steps;
- `random_c<c>`: a coin on every step at the switcher's measured call rate;
- `random_held_c<c>`: a coin every `switcher.hold` steps, held like the switcher's decisions, at
  the same rate;
- `confidence_c<c>`: a threshold on the small LM's max probability and `schedule_c<c>`: the better
  (on dev) of "large from step k on" and "large for the first k steps", both calibrated to the
  switcher's rate on dev episodes (`training.calibration`), never on the test episodes.

- `trigger_c<c>` (when `eval.baselines` names it): the SwiftSage-style trigger rule, its
  patience and duration chosen from the grid `eval.trigger` on dev episodes to match the rate.

`eval.baselines` names which rate-matched baselines are played (by default all but the trigger).

Every method, and every dev calibration run, plays on the same rows (`episodes.EnvPool`), so the
run's environments (ScienceWorld's JVMs, one per slot) start once for the whole evaluation.
Where the episodes have scores (ScienceWorld), each method's line and the table show the mean
score with its 95% interval.

Under a hard budget every method is held to it, except small-only, large-only and the
disagreement reference. `compute_relative_to_large` is a method's total FLOPs over the episodes
divided by large-only's. `--seed S` plays test episodes `S * EVAL_SEED_STRIDE + k`, so different
seeds never share an episode.

Each test method's result is kept in `DIR/eval_partial/` as soon as it is played, so an
evaluation cut off (ScienceWorld's take hours on a CPU) resumes at the method it was playing,
without calibrating again the baselines it reads back; the folder is removed once `eval.json` is
written.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from londi_jax.switching.config import member_seeds_and_costs
from londi_jax.training import evaluation as ev
from londi_jax.training import features as features_lib
from londi_jax.training.calibration import DevCalibrator, dev_summary
from londi_jax.training.checkpoint import CheckpointStore, load_config
from londi_jax.training.episodes import EnvPool
from londi_jax.training.lm import load_runners
from londi_jax.training.members import make_members
from londi_jax.training.rows import make_env_fn


EVAL_SEED_STRIDE = 100_000  # test episodes per evaluation seed at most; seeds never overlap
PARTIAL_DIR = "eval_partial"  # finished methods of an evaluation in progress
DEV_CALIBRATION_SEED = 700_000  # dev episodes of calibration, apart from training's and periodic
                                # evaluation's dev episodes


def first_test_seed(seed: int, episodes: int) -> int:
  """The first seed of the test episodes of evaluation seed `seed`."""
  if episodes > EVAL_SEED_STRIDE:
    raise ValueError(f"at most {EVAL_SEED_STRIDE} test episodes per evaluation seed, got {episodes}")
  return seed * EVAL_SEED_STRIDE


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


def method_label(prefix: str, cost: float, budget: int, member: int | None = None) -> str:
  """`<prefix>_c<c>` (`londi_b<n>_c<c>` under a hard budget), with `_m<member>` when several
  members share the cost (training seeds of a sweep)."""
  label = f"{prefix}_b{budget}_c{cost:g}" if budget > 0 and prefix == "londi" else \
      f"{prefix}_c{cost:g}"
  return label if member is None else f"{label}_m{member}"


def evaluate_run(workdir: str, episodes: int | None = None, seed: int | None = None,
                 which: str | None = None, runners=None,
                 log: Callable[[str], None] = print,
                 progress: Callable[[str, int], Any] | None = None,
                 references: dict[str, dict] | None = None) -> dict:
  """Evaluates the run in `workdir` and writes `DIR/eval.json`; returns what it writes.

  Args:
    workdir: a `launch.train` run folder.
    episodes, seed, which: override the run's `eval.episodes`, `eval.seed`, `eval.checkpoint`.
    runners: the small and large `LMRunner` (default: loaded from the run's config).
    log: prints a line per method and the table.
    progress: `progress(method_name, episodes)` opens a progress bar for one method's episodes
      (an object with `update(n)` and `close()`, e.g. `tqdm.tqdm`); None shows none.
    references: `eval.json` entries of `small_only`, `large_only` and `disagreement` from an
      evaluation of the same policies on the same episodes (a sweep's earlier variant); they are
      copied instead of played again.
  """
  workdir = os.path.abspath(workdir)
  config = load_config(workdir)
  episodes = int(config.eval.episodes if episodes is None else episodes)
  seed = int(config.eval.seed if seed is None else seed)
  which = which or config.eval.checkpoint
  baselines = tuple(config.eval.get("baselines", ev.DEFAULT_BASELINES))
  unknown = sorted(set(baselines) - set(ev.MEMBER_BASELINES))
  if unknown:
    raise ValueError(f"unknown eval.baselines {unknown}; known: {list(ev.MEMBER_BASELINES)}")
  small, large = runners or load_runners(config)
  feature_dim = features_lib.feature_dim(config, small.hidden_size)
  members, step = restore_members(config, workdir, feature_dim, which)
  _, costs = member_seeds_and_costs(config)
  budget = int(config.switcher.budget)
  hold = int(config.switcher.hold)
  num_envs = min(int(config.eval.num_envs), episodes)
  first_seed = first_test_seed(seed, episodes)
  log(f"evaluating {workdir} ({which} checkpoint, step {step}) on {episodes} episodes, seed {seed}")

  results = {}
  pool = EnvPool(ev.prompt_configs(small, large), make_env_fn(config))

  def play(method: ev.Method, split: str = "test", n: int = episodes, at: int = first_seed):
    bar = progress(f"{method.name} ({split})", n) if progress is not None else None
    try:
      r = ev.run_method(method, small, large, config, episodes=n, seed=at,
                        num_envs=min(num_envs, n), split=split, budget=budget,
                        progress=None if bar is None else bar.update, pool=pool)
    finally:
      if bar is not None:
        bar.close()
    r["budget"] = budget if method.budgeted else 0
    return r

  # Each finished test method is kept here until eval.json is written, so an evaluation cut off
  # (a long ScienceWorld one) resumes at the method it was playing.
  partial = os.path.join(workdir, PARTIAL_DIR, f"{which}-{step}-{episodes}-{seed}")

  def run(name: str, make: Callable[[], ev.Method],
          note: Callable[[dict], str] = lambda r: "") -> dict:
    """Plays `make()` (which may calibrate on dev first), or reads it back without calibrating
    when it was played before the evaluation was cut off."""
    path = os.path.join(partial, f"{name}.json")
    resumed = ""
    if os.path.exists(path):
      with open(path) as f:
        r = results[name] = json.load(f)
      resumed = f" (resumed from {os.path.relpath(path)})"
    else:
      r = results[name] = play(make())
      _write_json(path, r)
    score = (f"  score {r['mean_score']:.1f} ± {r['score_ci95']:.1f}" if "mean_score" in r
             else "")
    log(f"  {name:<24s} success {r['success_rate']:.3f}{score}  calls "
        f"{r['large_call_fraction']:.3f}  {r['seconds_per_step'] * 1e3:.1f} ms/step"
        f"{note(r)}{resumed}")
    return r

  def dev_calls(r: dict) -> str:
    return f"dev calls {r['calibration']['dev_call_fraction']:.3f}"

  try:
    dev = DevCalibrator(
        lambda m: play(m, "dev", int(config.eval.get("dev_episodes", 200)),
                       int(config.seed) + DEV_CALIBRATION_SEED),
        rounds=int(config.eval.calibration_rounds))
    for method in (ev.small_only(), ev.large_only(), ev.disagreement()):
      if references and method.name in references:
        results[method.name] = dict(references[method.name])
        log(f"  {method.name:<24s} copied from the reference evaluation")
      else:
        run(method.name, lambda m=method: m)
    londi = ev.make_londi_rule_builder(config, num_envs)
    params = jax.device_get(members.learner.q_params)
    for k, cost in enumerate(costs):
      q = jax.tree_util.tree_map(lambda x: jnp.asarray(x[k]), params)
      info = dict(cost=cost, member=k)
      label = functools.partial(method_label, cost=cost, budget=budget,
                                member=k if costs.count(cost) > 1 else None)
      rate = run(label("londi"), lambda: londi(q, label("londi"), **info)
                 )["large_call_fraction"]
      if "random" in baselines:
        run(label("random"), lambda: ev.random_at_rate(rate, seed, label("random"), **info))
      if "random_held" in baselines:
        run(label("random_held"),
            lambda: ev.random_held(rate, seed, hold, label("random_held"), **info))
      if "confidence" in baselines:
        def confidence():
          threshold, calib = dev.confidence(rate)
          return ev.confidence_threshold(threshold, label("confidence"), **info,
                                         calibration=dev_summary(calib))
        run(label("confidence"), confidence,
            lambda r: f" (threshold {r['threshold']:.4f}; {dev_calls(r)})")
      if "schedule" in baselines:
        def fixed_schedule():
          kind, at, calib = dev.schedule(rate)
          return ev.schedule(kind, at, label("schedule"), **info, calibration=dev_summary(calib))
        run(label("schedule"), fixed_schedule,
            lambda r: f" ({r['schedule']} {r['k']}; {dev_calls(r)})")
      if "trigger" in baselines:
        def trigger():
          grid = config.eval.trigger
          rearm = bool(grid.get("rearm", False))
          patience, duration, calib = dev.trigger(rate, grid.patience, grid.duration, rearm)
          return ev.trigger_rule(patience, duration, label("trigger"), rearm, **info,
                                 calibration=dev_summary(calib))
        run(label("trigger"), trigger,
            lambda r: f" (patience {r['patience']}, duration {r['duration']}; {dev_calls(r)})")
  finally:
    pool.close()

  large_flops = results["large_only"]["flops"]
  out = {
      "workdir": os.path.relpath(workdir), "checkpoint": {"which": which, "step": step},
      "episodes": episodes, "seed": seed, "split": "test", "budget": budget,
      "levels": list(config.levels), "member_costs": costs,
      "seeds": ev.episode_seeds(first_seed, episodes, "test"),
      "methods": {name: ev.summary_fields(r, large_flops) for name, r in results.items()},
  }
  _write_json(os.path.join(workdir, "eval.json"), out)
  shutil.rmtree(os.path.join(workdir, PARTIAL_DIR), ignore_errors=True)
  log(ev.format_table(out["methods"]))
  return out


def _write_json(path: str, data: Any) -> None:
  """Writes `data` to `path` atomically (a temporary file renamed into place)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(data, f, indent=1, default=_json_default)
  os.replace(tmp, path)


def _json_default(x):
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (np.floating,)):
    return float(x)
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f"not JSON serialisable: {type(x)}")
