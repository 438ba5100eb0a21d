"""Evaluating switching rules on fixed episodes: LONDI and the baselines of docs/evaluation.md,
with compute accounting (docs/architecture.md: compute accounting).

Every method plays the same episodes (`training.episodes`): episode `k` of
`levels[k % len(levels)]` reset with seed `episode_seed(seed, k, split)`, and actions drawn from
common random numbers (`lm.crn_uniform`), so two methods that make the same switches play the same
trajectory. Episodes run on the run's environments (`rows.make_env_fn`: its backend and
`env_kwargs`), on rows an `EnvPool` may keep from one method to the next. A method is a switching
rule `g = rule(view)` over the rows in flight; the small LM scores every row (its features and
confidence are the rule's input), the large LM only the rows with `g = 1` (every row for the
disagreement reference, which compares both choices). Where the episodes have scores
(ScienceWorld), a method's result holds their mean and its 95% interval too.

Compute counts the forward FLOPs a method needs on each step: the small LM where the method needs
it (every step, except for rules that need no LM output, random switching, schedules and
large-only, which need it only where `g = 0`), the large LM where `g = 1`, and the switcher's MLP
for LONDI. The disagreement reference calls the large LM exactly where the two policies' actions
differ; under common random numbers that reproduces large-only by construction, and it needs the
large LM's choice on every step to know where: its `flops` count only the called rows, its
`reference_flops` every large pass it made. It is a reference point, not a method one could run
cheaper than large-only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from londi_jax.switching import budget as budget_lib
from londi_jax.training import features as features_lib
from londi_jax.training import progress
from londi_jax.training.episodes import Act, EnvPool, Played, Schedule, play_episodes
from londi_jax.training.lm import LMRunner, Scored, choose_actions, crn_uniform, held_coins
from londi_jax.training.rows import Row, make_env_fn

# The baselines matched to each switcher's call rate, by name prefix; `eval.baselines` picks
# among them (by default all but the trigger, which reads ScienceWorld's answers).
MEMBER_BASELINES = ("random", "random_held", "confidence", "schedule", "trigger")
DEFAULT_BASELINES = MEMBER_BASELINES[:4]
RANDOM_STREAM = 7  # crn stream of the random baselines' coins (actions use stream 0)
SCHEDULES = ("after", "first")  # large from step k on; large for the first k steps
Z95 = 1.959964  # the normal quantile of a two-sided 95% interval


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
    rows: the rows themselves (their observation, actions and rewards so far).
  """

  small: Any
  phi: np.ndarray
  remaining: np.ndarray
  episode_seeds: np.ndarray
  t: np.ndarray
  small_actions: np.ndarray
  large_actions: np.ndarray | None
  rows: Sequence[Row] = ()


@dataclasses.dataclass
class Method:
  """A switching rule and what it needs.

  Attributes:
    name: the label in tables.
    rule: `View -> g [n]` int.
    small_everywhere: whether the method runs the small LM on every step (else only on g = 0).
    large_everywhere: whether the rule needs the large LM's choice on every row (oracle).
    switcher_flops: FLOPs of the switcher per step (LONDI only).
    uses_phi: whether the rule reads `phi(s)` (LONDI; it then costs the history view's small-LM
      pass too when `features.history` is on).
    budgeted: whether a hard budget holds the method (not the references and the oracle bound).
    trace: whether its episode records keep the actions taken (LONDI's, for
      `training.call_sites`).
    info: extra fields for the result (cost, member, threshold, ...).
  """

  name: str
  rule: Callable[[View], np.ndarray]
  small_everywhere: bool = True
  large_everywhere: bool = False
  switcher_flops: int = 0
  uses_phi: bool = False
  budgeted: bool = True
  trace: bool = False
  info: dict = dataclasses.field(default_factory=dict)


def episode_seeds(seed: int, episodes: int, split: str = "test") -> list[int]:
  """The reset seeds of the evaluation episodes."""
  return Schedule((), episodes, seed, split).reset_seeds()


@dataclasses.dataclass
class Tally:
  """What a method spends over its episodes: FLOPs per model, steps, large calls, the LMs' device
  and compilation time, and the small LM's max probability at every state it scored."""

  flops: dict[str, int] = dataclasses.field(
      default_factory=lambda: {"small": 0, "large": 0, "switcher": 0})
  steps: int = 0
  calls: int = 0
  device_time: float = 0.0
  compile_time: float = 0.0
  max_probs: list[np.ndarray] = dataclasses.field(default_factory=list)
  reference_large_flops: int = 0  # every large pass of the disagreement reference

  def timed(self, scored: Scored) -> Scored:
    """Adds an LM call's device and compilation time; returns the call."""
    self.device_time += scored.out.device_time_s
    self.compile_time += scored.out.compile_time_s
    return scored


@dataclasses.dataclass
class Batch:
  """The rows in flight on one step and their common random numbers (`crn_uniform`)."""

  rows: list[Row]
  candidates: list[Sequence[str]]
  num_candidates: np.ndarray  # [n]
  episode_seeds: np.ndarray  # [n]
  t: np.ndarray  # [n]
  uniforms: np.ndarray  # [n]
  mode: str  # `policies.action`: sampled or greedy

  @classmethod
  def of(cls, rows: list[Row], config) -> Batch:
    candidates = [r.obs.valid_actions for r in rows]
    episode_seeds = np.array([r.seed for r in rows], np.int64)
    t = np.array([r.t for r in rows], np.int64)
    return cls(rows, candidates, np.array([len(c) for c in candidates]), episode_seeds, t,
               crn_uniform(config.seed, episode_seeds, t), config.policies.action)

  def score(self, runner: LMRunner, which: np.ndarray, tally: Tally, count_flops: bool = True
            ) -> Scored:
    """`runner` on the rows `which`; its FLOPs count towards the method unless `count_flops` is
    off (the oracle's look at the large LM's choice on every row)."""
    scored = tally.timed(runner([self.rows[j].prompt(runner.name) for j in which],
                                [self.candidates[j] for j in which]))
    if count_flops:
      tally.flops[runner.name] += int(scored.row_flops.sum())
    return scored

  def choose(self, scored: Scored, which: np.ndarray) -> np.ndarray:
    """The candidate each of the rows `which` takes under `scored`, at its common random number."""
    return choose_actions(scored.out.probs, self.num_candidates[which], self.uniforms[which],
                          self.mode)


def decide(method: Method, view: View, allowed: np.ndarray) -> np.ndarray:
  """The method's switches `[n]`, with `g = 1` masked where the budget is spent."""
  return np.asarray(method.rule(view), np.int64) * allowed


def small_then_rule(method: Method, view: View, batch: Batch, small: LMRunner, large: LMRunner,
                    allowed: np.ndarray, config, tally: Tally):
  """The small LM acts on every row and the rule sees its output, `phi(s)` and (for the oracle)
  the large LM's choice; returns `(g, actions, large_scored)` (`large_scored` for the oracle)."""
  every = np.arange(len(batch.rows))
  scored = batch.score(small, every, tally)
  actions = batch.choose(scored, every)
  view.small, view.small_actions = scored.out, actions.copy()
  if method.uses_phi:
    history = features_lib.history_view(config, small, batch.rows, batch.candidates)
    if history is not None:
      tally.timed(history)
      tally.flops["small"] += int(history.row_flops.sum())
    view.phi = features_lib.build_features(config, scored.out,
                                           np.array([r.time_fraction for r in batch.rows]),
                                           None if history is None else history.out,
                                           batch.rows)
  tally.max_probs.append(np.asarray(scored.out.max_prob))
  large_scored = None
  if method.large_everywhere:
    large_scored = batch.score(large, every, tally, count_flops=False)
    tally.reference_large_flops += int(large_scored.row_flops.sum())
    view.large_actions = batch.choose(large_scored, every)
  return decide(method, view, allowed), actions, large_scored


def rule_then_small(method: Method, view: View, batch: Batch, small: LMRunner,
                    allowed: np.ndarray, tally: Tally):
  """A rule that needs no LM output decides first; the small LM acts only where `g = 0`."""
  g = decide(method, view, allowed)
  actions = np.zeros(len(batch.rows), np.int64)
  small_rows = np.flatnonzero(g == 0)
  if small_rows.size:
    actions[small_rows] = batch.choose(batch.score(small, small_rows, tally), small_rows)
  return g, actions


def large_acts(g: np.ndarray, actions: np.ndarray, view: View, batch: Batch, large: LMRunner,
               large_scored: Scored | None, tally: Tally) -> np.ndarray:
  """`actions` with the large LM's choice where `g = 1`: from `large_scored` when the large LM
  already scored every row (the oracle; only the called rows' FLOPs count), else from a call on
  the called rows alone."""
  called = np.flatnonzero(g)
  if not called.size:
    return actions
  if large_scored is not None:
    actions[called] = view.large_actions[called]
    tally.flops[large.name] += int(large_scored.row_flops[called].sum())
  else:
    actions[called] = batch.choose(batch.score(large, called, tally), called)
  return actions


def method_act(method: Method, small: LMRunner, large: LMRunner, config, budget: int,
               num_slots: int, tally: Tally) -> Act:
  """The `play_episodes` step of a method: both LMs where the method needs them, the switches
  under the hard budget of `budget` calls per episode (0: none), and the tally."""
  remaining = np.full(num_slots, budget, np.int64)  # z per slot

  def act(slots: list[int], rows: list[Row]):
    batch = Batch.of(rows, config)
    remaining[slots] = np.where(batch.t == 0, budget, remaining[slots])  # a new episode: z = n
    view = View(small=None, phi=None, remaining=remaining[slots].copy(),
                episode_seeds=batch.episode_seeds, t=batch.t, small_actions=None,
                large_actions=None, rows=rows)
    allowed = np.asarray(budget_lib.allowed_switches(view.remaining, budget))[:, 1]
    large_scored = None
    if method.small_everywhere:
      g, actions, large_scored = small_then_rule(method, view, batch, small, large, allowed,
                                                 config, tally)
    else:
      g, actions = rule_then_small(method, view, batch, small, allowed, tally)
    actions = large_acts(g, actions, view, batch, large, large_scored, tally)
    tally.flops["switcher"] += method.switcher_flops * len(rows)
    tally.steps += len(rows)
    tally.calls += int(g.sum())
    remaining[slots] = budget_lib.spend(remaining[slots], g, budget)
    return [c[a] for c, a in zip(batch.candidates, actions)], g

  return act


def prompt_configs(small: LMRunner, large: LMRunner) -> dict[str, Any]:
  """The rows' prompt configs of the two policies (an `EnvPool` for `run_method` uses these)."""
  return {r.name: r.prompt_config for r in (small, large)}


def run_method(method: Method, small: LMRunner, large: LMRunner, config, *, episodes: int,
               seed: int, num_envs: int, split: str = "test", budget: int = 0,
               progress: Callable[[int], Any] | None = None,
               pool: EnvPool | None = None) -> dict:
  """Plays `episodes` episodes with one switching rule, under a hard budget of `budget` large
  calls per episode (0: none) when the method is `budgeted`.

  Args:
    progress: called with 1 after each finished episode.
    pool: rows to play on, kept by the caller across methods (built with `prompt_configs(small,
      large)` and `rows.make_env_fn(config)`); None builds the run's environments and ends them.

  Returns:
    Totals (`success_rate`, `mean_return`, `large_call_fraction`, `flops`, `steps`,
    `max_large_calls_per_episode`, `seconds_per_step` (wall time without the LMs' compilations),
    `device_seconds_per_step`; `mean_score` and `score_ci95` where the episodes have scores) and
    `episodes`: per episode `seed`, `level`, `success`, `return`, `length`, `calls`, `score`,
    `switches` (and `actions` for a `trace`d method); and `small_max_prob`, the small LM's max
    probability at every visited state.
  """
  schedule = Schedule(tuple(config.levels), episodes, seed, split)
  tally = Tally()
  act = method_act(method, small, large, config, budget if method.budgeted else 0,
                   min(num_envs, episodes), tally)
  played = play_episodes(schedule, prompt_configs(small, large), num_envs, act, progress,
                         make_env=make_env_fn(config), pool=pool, trace=method.trace)
  return method_result(method, played, tally)


def has_scores(episodes: Sequence[dict]) -> bool:
  """Whether every episode record carries a score (ScienceWorld's; BabyAI-Text's do not)."""
  return bool(episodes) and all(e.get("score") is not None for e in episodes)


def mean_and_ci95(values: Sequence[float]) -> tuple[float, float]:
  """The mean of `values` and the half-width of its normal 95% interval (nan for one value)."""
  values = np.asarray(values, np.float64)
  half = (float(Z95 * np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1
          else float("nan"))
  return float(np.mean(values)), half


def method_result(method: Method, played: Played, tally: Tally) -> dict:
  """The totals of `run_method` from the episodes' records and the tally."""
  eps, steps = played.episodes, tally.steps
  scores = {}
  if has_scores(eps):
    mean, half = mean_and_ci95([e["score"] for e in eps])
    scores = {"mean_score": mean, "score_ci95": half}
  return {
      "episodes": eps,
      "num_episodes": len(eps),
      "success_rate": float(np.mean([e["success"] for e in eps])),
      "mean_return": float(np.mean([e["return"] for e in eps])),
      "mean_length": float(np.mean([e["length"] for e in eps])),
      **scores,
      "steps": steps,
      "large_calls": tally.calls,
      "large_call_fraction": tally.calls / steps,
      "max_large_calls_per_episode": int(max(e["calls"] for e in eps)),
      "flops": sum(tally.flops.values()),
      "flops_by_model": tally.flops,
      **({"reference_flops": sum(tally.flops.values()) - tally.flops["large"]
          + tally.reference_large_flops} if tally.reference_large_flops else {}),
      # steady state: the LMs' compilations excluded
      "seconds_per_step": (played.wall_s - tally.compile_time) / steps,
      "device_seconds_per_step": tally.device_time / steps,
      "small_max_prob": np.concatenate(tally.max_probs) if tally.max_probs else np.zeros(0),
      **method.info,
  }


def small_only() -> Method:
  return Method("small_only", lambda v: np.zeros(len(v.t), np.int64), budgeted=False)


def large_only() -> Method:
  return Method("large_only", lambda v: np.ones(len(v.t), np.int64), small_everywhere=False,
                budgeted=False)


def disagreement() -> Method:
  """The disagreement reference: the large LM acts exactly where the two policies' actions differ
  under the same random numbers (elsewhere its call would change nothing), so it plays large-only's
  episodes; knowing where takes the large LM on every step (its `reference_flops`)."""
  return Method("disagreement", lambda v: (v.small_actions != v.large_actions).astype(np.int64),
                large_everywhere=True, budgeted=False)


def random_at_rate(rate: float, seed: int, name: str = "random", **info) -> Method:
  """Calls the large LM with probability `rate` on each step (its coin is a common random number
  of the step, so it needs the small LM only when it does not call)."""

  def rule(v: View):
    return held_coins(seed, v.episode_seeds, v.t, 1, rate, RANDOM_STREAM)

  return Method(name, rule, small_everywhere=False, info=dict(info, rate=rate))


def random_held(rate: float, seed: int, hold: int, name: str = "random_held", **info) -> Method:
  """Random switching with LONDI's decision hold: every `hold` steps of an episode a coin with
  probability `rate` decides, and the decision holds until the next one. The coin is a common
  random number of the episode and the decision's step, so each step calls with probability
  `rate`, like LONDI's measured rate, in blocks like LONDI's."""

  def rule(v: View):
    return held_coins(seed, v.episode_seeds, v.t, hold, rate, RANDOM_STREAM)

  return Method(name, rule, small_everywhere=False, info=dict(info, rate=rate, hold=hold))


def schedule(kind: str, k: int, name: str | None = None, **info) -> Method:
  """A fixed time rule: the large LM from step `k` of each episode on (`after`), or for its first
  `k` steps (`first`)."""
  if kind not in SCHEDULES:
    raise ValueError(f"unknown schedule {kind!r}; known: {SCHEDULES}")

  def rule(v: View):
    return (v.t >= k if kind == "after" else v.t < k).astype(np.int64)

  return Method(name or f"{kind}_{k}", rule, small_everywhere=False,
                info=dict(info, schedule=kind, k=k))


def schedule_k(kind: str, lengths: np.ndarray, rate: float) -> int:
  """The `k` whose schedule calls on the fraction of steps closest to `rate` over episodes of
  `lengths` (the lengths stay as given: a calibration round plays the rule to update them)."""
  lengths = np.asarray(lengths)
  ks = np.arange(int(lengths.max()) + 2)
  calls = np.maximum(lengths[None] - ks[:, None], 0).sum(-1)  # after: steps t >= k
  if kind == "first":
    calls = lengths.sum() - calls
  return int(ks[np.argmin(np.abs(calls / lengths.sum() - rate))])


def trigger_rule(patience: int, duration: int, name: str = "trigger", rearm: bool = False,
                 **info) -> Method:
  """A SwiftSage-style trigger (Lin et al. 2023, "SwiftSage: a generative agent with fast and slow
  thinking"): the large LM takes over for `duration` steps of the episode when

  - the score has not risen on the last `patience` steps (with `rearm`, on the last `patience`
    steps of the small LM: a takeover's own steps do not count toward the next stall),
  - the environment rejected the last action (`progress.REJECTED`), or
  - the small LM proposes the episode's first `focus on` action (ScienceWorld ends a task that
    focuses on the wrong object),

  and the small LM acts otherwise. A takeover that ends while a trigger still holds starts again,
  so without `rearm` a stall keeps the large LM on until the score rises. The rule reads each
  row's rewards and observation, and the small LM's proposal."""
  if patience < 1 or duration < 1:
    raise ValueError(f"the trigger needs patience >= 1 and duration >= 1, got {patience}, "
                     f"{duration}")
  until: dict[int, int] = {}  # episode seed -> the step at which its takeover ends

  def triggered(row: Row, proposal: str, seed: int, t: int) -> bool:
    stalled = (progress.stall(row.rewards) >= patience
               and (not rearm or t >= until.get(seed, 0) + patience))
    first_focus = proposal.startswith(progress.FOCUS) and not progress.focused(row)
    return stalled or progress.rejected(row) or first_focus

  def rule(v: View):
    g = np.zeros(len(v.t), np.int64)
    for j, (row, seed, t) in enumerate(zip(v.rows, v.episode_seeds.tolist(), v.t.tolist())):
      if t == 0:
        until.pop(seed, None)
      if t >= until.get(seed, 0):
        if not triggered(row, row.obs.valid_actions[int(v.small_actions[j])], seed, t):
          continue
        until[seed] = t + duration
      g[j] = 1
    return g

  return Method(name, rule, info=dict(info, patience=patience, duration=duration,
                                     **({"rearm": True} if rearm else {})))


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
  keys = ("success_rate", "mean_score", "score_ci95", "mean_return", "mean_length",
          "large_call_fraction", "max_large_calls_per_episode", "seconds_per_step",
          "device_seconds_per_step", "flops", "flops_by_model", "steps", "large_calls",
          "num_episodes", "cost", "member", "rate", "threshold", "budget", "hold", "schedule", "k",
          "patience", "duration", "rearm", "calibration", "reference_flops")
  out = {k: result[k] for k in keys if k in result}
  out["compute_relative_to_large"] = result["flops"] / large_flops
  if "reference_flops" in result:
    out["compute_with_reference_passes"] = result["reference_flops"] / large_flops
  out["episodes"] = result["episodes"]
  return out


def format_table(methods: dict[str, dict]) -> str:
  """A Markdown table of the methods' main numbers (with the mean score and its 95% interval
  first when the episodes have scores)."""
  scored = all("mean_score" in m for m in methods.values())
  lines = ["| method | " + ("score | " if scored else "") + "success | return | large calls | "
           "compute / large | max calls/ep | s/step |",
           "|---|---|---|---|---|---|---|" + ("---|" if scored else "")]
  for name, m in methods.items():
    score = f"{m['mean_score']:.1f} ± {m['score_ci95']:.1f} | " if scored else ""
    lines.append(f"| {name} | {score}{m['success_rate']:.3f} | {m['mean_return']:.3f} | "
                 f"{m['large_call_fraction']:.3f} | {m['compute_relative_to_large']:.3f} | "
                 f"{m['max_large_calls_per_episode']} | {m['seconds_per_step'] * 1e3:.2f} ms |")
  return "\n".join(lines)


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

  from londi_jax.switching.acting import greedy_under_budget
  from londi_jax.switching.learner import q_values

  sw = config.switcher
  budget = int(sw.budget)
  hold = int(sw.get("hold", 1))

  @jax.jit
  def greedy(params, phi, remaining):
    q = q_values(sw, params, phi, remaining)  # [num_envs, 2]
    return greedy_under_budget(q, remaining, budget)

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

    return Method(name, rule, switcher_flops=switcher_flops(q_params), uses_phi=True,
                  trace=True, info=info)

  return londi
