"""The host-side training loop of docs/architecture.md: one acting step (`launch.train`).

Each acting step, for `M` members with `B` environment rows each (`R = M * B` rows), runs five
stages (`Trainer.act`):

    1. score small      the small LM on all R rows -> phi(s) [M, B, F]
    2. member step      the jitted member step: complete the pending transition and write it to
                        replay, U updates every k steps, epsilon-greedy switch -> g [M, B]
    3. score large      the large LM on the rows with g = 1 (padded to a batch bucket)
    4. choose actions   the small LM's action, or the large LM's where g = 1, at a common random
                        number of (seed, episode seed, t)
    5. step envs        every row steps; its switcher reward and discount are the `Pending`
                        transition of the next member step; z is spent; finished episodes
                        restart with z = n

A row decides every `switcher.hold` steps of its episode, and each decision's transition is
written `switcher.n_step` decisions late, by the step that sees the bootstrap state
(`switching.nstep`). An episode's end (success, failure or the step limit) is terminal for the
switcher (discount 0); with the time fraction in `phi` the step limit is part of the state, so
this is exact. The Lagrangian's measured value is an exponential average of the greedy call rate
(times the average episode length for `calls_per_episode`), or of the greedy calls' share of the
large LM's FLOPs at the rows' states (`compute`), kept in `CallAverages`. What is only
reported (`Window`, the statistics of a `train` record, and `Timings`, where the time goes) is
kept apart from the algorithm's state.

Checkpoints hold every member's state (replay included), the rows as seeds and actions, the
pending transition and the averages, so a run interrupted and resumed replays exactly the same
episodes and ends with the same metrics.

Devices and processes (`runtime`, `londi_jax.runtime`, docs/scaling.md): the member state is
split over the mesh's `members` axis and each LM batch over this process's devices. With several
processes each steps its own block of rows (`Placement.row_block`: its small- and large-LM calls,
actions and environments) and the per-row results every member step and record needs (`phi`,
`t`, rewards, ends of episodes) are gathered, so every process holds the same host state; the
primary process writes the metrics, and checkpoints are written by Orbax once for all. The
environments of a row run in this process, in worker processes or in Ray actors
(`envs.backend`), stepped together.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from londi_jax import envs
from londi_jax.envs.vector import call_all
from londi_jax.envs.workers import BACKENDS
from londi_jax.policies.policy import PolicyOutput
from londi_jax import runtime as runtime_lib
from londi_jax.switching import budget as budget_lib
from londi_jax.switching.config import member_seeds_and_costs
from londi_jax.training import evaluation as eval_lib
from londi_jax.training.branches import CONTINUATIONS, PairedTargets
from londi_jax.training import features as features_lib
from londi_jax.training.checkpoint import CheckpointStore, check_config, config_dict
from londi_jax.training.episodes import EnvPool
from londi_jax.training.lm import LMRunner, Scored, choose_actions, crn_uniform, load_runners
from londi_jax.training.members import TARGETS, make_members
from londi_jax.training.metrics import MetricsWriter
from londi_jax.training.progress import SCORE_SCALE
from londi_jax.training.rows import Row, TrainRows, env_kwargs, make_env_fn, replay_rows

MEASURE_DECAY = 0.99  # of the exponential averages behind the Lagrangian's measured value
PERIODIC_EVAL_SEED = 500_000  # periodic evaluations play `dev` seeds far from training's


REWARDS = ("env", "success", "score")
MEASURES = ("rate", "calls_per_episode", "compute")  # `switcher.lagrangian.measure`


def switcher_reward(kind: str, reward: float, done: bool, info: dict) -> float:
  """The reward the switcher learns from: the environment's own (`env`; BabyAI pays
  `1 - 0.9 t / T` on success, so it also prices speed), 1 on success and 0 otherwise (`success`,
  the rate the reports measure), or the score's increment over the most an episode can score
  (`score`: ScienceWorld's 0-100 score, so an episode's rewards sum to its final score in
  [0, 1]). Evaluation always reports success and the environment's return, and the final score
  where episodes have one."""
  if kind == "success":
    return float(done and bool(info.get("success")))
  if kind == "score":
    if "max_score" not in info:
      if info.get("worker_restarted"):
        return 0.0  # a step lost with its worker: it scored nothing
      raise ValueError("reward 'score' needs an environment whose step info has 'max_score' "
                       "(ScienceWorld); use 'success' or 'env'")
    return reward / float(info["max_score"])
  return reward


class Interrupted(RuntimeError):
  """Raised by `train(..., stop_after=n)` after step n, as if the process had been killed."""


def validate(config: ml_collections.ConfigDict) -> None:
  for level in config.levels:
    envs.check(level)  # an unknown id names the known ones before any environment starts
  if config.checkpoint_every % config.log_every or (
      config.eval_every and config.eval_every % config.log_every):
    raise ValueError("checkpoint_every and eval_every must be multiples of log_every, got "
                     f"{config.checkpoint_every}, {config.eval_every} and {config.log_every}")
  if config.reward not in REWARDS:
    raise ValueError(f"reward must be one of {REWARDS}, got {config.reward!r}")
  if config.switcher.target not in TARGETS:
    raise ValueError(f"switcher.target must be one of {TARGETS}, got {config.switcher.target!r}")
  if config.switcher.paired.continuation not in CONTINUATIONS:
    raise ValueError(f"switcher.paired.continuation must be one of {CONTINUATIONS}, got "
                     f"{config.switcher.paired.continuation!r}")
  if not 0.0 <= config.switcher.paired.continuation_rate <= 1.0:
    raise ValueError("switcher.paired.continuation_rate must be in [0, 1], got "
                     f"{config.switcher.paired.continuation_rate!r}")
  if config.switcher.flops_unit < 0:
    raise ValueError(f"switcher.flops_unit must be >= 0, got {config.switcher.flops_unit!r}")
  if config.switcher.flops_unit and config.switcher.target != "paired":
    raise ValueError("switcher.flops_unit > 0 (a price per FLOP) needs switcher.target=paired, "
                     f"got {config.switcher.target!r}")
  lagrangian = config.switcher.lagrangian
  if lagrangian.measure not in MEASURES:
    raise ValueError(f"switcher.lagrangian.measure must be one of {MEASURES}, got "
                     f"{lagrangian.measure!r}")
  if lagrangian.enabled and bool(config.switcher.flops_unit) != (lagrangian.measure == "compute"):
    raise ValueError("a Lagrangian beside a price per FLOP (switcher.flops_unit > 0) needs "
                     "switcher.lagrangian.measure=compute, and measure=compute needs that price "
                     f"(its multiplier is a price per FLOP); got flops_unit="
                     f"{config.switcher.flops_unit!r}, measure={lagrangian.measure!r}")
  stride = env_kwargs(config).get("variation_stride", 1)
  if stride not in (1, len(config.levels)):
    raise ValueError(f"env_kwargs.variation_stride must be 1 or the number of levels "
                     f"({len(config.levels)}: each level's episodes play distinct variations), "
                     f"got {stride!r}")
  if config.policies.action not in ("sampled", "greedy"):
    raise ValueError(f"policies.action must be sampled or greedy, got {config.policies.action!r}")
  if config.get("envs") is not None and config.envs.backend not in BACKENDS:
    raise ValueError(f"envs.backend must be one of {BACKENDS}, got {config.envs.backend!r}")


def switcher_objective(config: ml_collections.ConfigDict, costs: Sequence[float],
                       results: Sequence[dict]) -> float:
  """The switchers' own objective on an evaluation, the one the best checkpoint maximises: each
  member's mean episode reward (`config.reward`; a score on [0, 1]) minus `c` times its calls
  per episode, or with a price per FLOP (`switcher.flops_unit`) its large-LM FLOPs per episode
  over the unit (docs/method.md), averaged over members.

  Args:
    config: the run's config (`reward`, `switcher.flops_unit`).
    costs: each member's `c`.
    results: each member's `evaluation.run_method` result.
  """
  unit = float(config.switcher.flops_unit)
  values = []
  for c, r in zip(costs, results):
    gain = (r["success_rate"] if config.reward == "success" else
            r["mean_score"] / SCORE_SCALE if config.reward == "score" else r["mean_return"])
    spent = r["flops_by_model"]["large"] / unit if unit else r["large_calls"]
    values.append(gain - c * spent / r["num_episodes"])
  return float(np.mean(values))


def greedy_compute_share(greedy: np.ndarray, large_flops: np.ndarray) -> np.ndarray:
  """`[M]`: each member's share of the large LM's FLOPs that its greedy calls take, over its rows
  `sum_b g_b F_b / sum_b F_b` (the compute share of a Lagrangian with `measure = "compute"`).

  Args:
    greedy: `[M, B]` the greedy switches (0 or 1).
    large_flops: `[M, B]` the large LM's FLOPs `F_b` at each row's state.
  """
  weights = np.asarray(large_flops, np.float64)
  return (weights * greedy).sum(-1) / weights.sum(-1)


# -- the algorithm's host state ----------------------------------------------------------------


@dataclasses.dataclass
class Pending:
  """The transition the environments' step leaves for the next member step to complete.

  Attributes:
    reward: [R] float32, the switcher's reward of each row's latest step (`switcher_reward`).
    discount: [R] float32, 0 where that step ended the episode, else gamma.
  """

  reward: np.ndarray
  discount: np.ndarray

  @classmethod
  def initial(cls, num_rows: int) -> Pending:
    """Before the first step (the member step ignores it: no decision awaits a transition)."""
    return cls(np.zeros(num_rows, np.float32), np.zeros(num_rows, np.float32))

  def to_host(self) -> dict:
    return {"reward": self.reward.tolist(), "discount": self.discount.tolist()}

  @classmethod
  def from_host(cls, host: dict) -> Pending:
    return cls(np.asarray(host["reward"], np.float32), np.asarray(host["discount"], np.float32))


@dataclasses.dataclass
class CallAverages:
  """Exponential averages (decay `MEASURE_DECAY`) behind the Lagrangian's measured value.

  Attributes:
    rate: [M] float64, each member's greedy call rate per step.
    length: [M] float64, each member's episode length (nan until its first episode ends).
    compute: [M] float64, each member's greedy compute share per step: the large LM's FLOPs at
      the rows where the greedy rule calls over its FLOPs at all the rows (0 unless measured).
  """

  rate: np.ndarray
  length: np.ndarray
  compute: np.ndarray

  @classmethod
  def initial(cls, num_members: int) -> CallAverages:
    return cls(np.zeros(num_members), np.full(num_members, np.nan), np.zeros(num_members))

  def measured(self, kind: str) -> np.ndarray:
    """[M] float32: the call rate, calls per episode (`kind == "calls_per_episode"`: the rate
    times the average length) or the compute share (`kind == "compute"`)."""
    if kind == "compute":
      return self.compute.astype(np.float32)
    measured = self.rate.copy()
    if kind == "calls_per_episode":
      measured = measured * np.nan_to_num(self.length, nan=0.0)
    return measured.astype(np.float32)

  def add_step(self, greedy_rate: np.ndarray, compute_share: np.ndarray | None = None) -> None:
    """Averages in one step's greedy call rate `[M]` and, when given, compute share `[M]`."""
    self.rate = MEASURE_DECAY * self.rate + (1 - MEASURE_DECAY) * greedy_rate
    if compute_share is not None:
      self.compute = MEASURE_DECAY * self.compute + (1 - MEASURE_DECAY) * compute_share

  def add_episode(self, member: int, length: int) -> None:
    """Averages in the length of an episode of `member` (the first one sets the average)."""
    avg = self.length[member]
    self.length[member] = length if np.isnan(avg) else (
        MEASURE_DECAY * avg + (1 - MEASURE_DECAY) * length)

  def to_host(self) -> dict:
    return {"rate_avg": self.rate.tolist(),
            "length_avg": [None if np.isnan(x) else x for x in self.length],
            "compute_avg": self.compute.tolist()}

  @classmethod
  def from_host(cls, host: dict) -> CallAverages:
    rate = np.asarray(host["rate_avg"], np.float64)
    return cls(rate, np.array([np.nan if x is None else x for x in host["length_avg"]]),
               # checkpoints written before the compute share was measured
               np.asarray(host.get("compute_avg", np.zeros_like(rate)), np.float64))


class Episode(NamedTuple):
  """An episode that ended in the latest step."""

  row: int
  member: int
  success: bool
  episode_return: float
  length: int
  calls: int


# -- what is only reported -------------------------------------------------------------------


class Timings(collections.Counter):
  """Seconds of `act` by part: `small_lm` and `large_lm` (the LMs' device time), `compile` (LM
  compilations), `update` (the member step), `envs` and `total` (wall time); see bench/loop.py."""

  @contextlib.contextmanager
  def wall(self, part: str):
    """Adds the wall time of the block to `part`."""
    start = time.perf_counter()
    try:
      yield
    finally:
      self[part] += time.perf_counter() - start

  def add_lm(self, part: str, out: PolicyOutput) -> None:
    """Adds an LM call's device time to `part` and its compilation time to `compile`."""
    self[part] += out.device_time_s
    self["compile"] += out.compile_time_s


class Window:
  """The statistics of the steps since the latest `train` record, per member."""

  def __init__(self, num_members: int):
    self.steps = 0
    self.calls = np.zeros(num_members)  # sums over steps of the executed call rate
    self.greedy = np.zeros(num_members)  # and of the greedy one
    self.episodes: list[list[Episode]] = [[] for _ in range(num_members)]
    self.start = time.perf_counter()

  def add_step(self, call_rate: np.ndarray, greedy_rate: np.ndarray) -> None:
    self.steps += 1
    self.calls += call_rate
    self.greedy += greedy_rate

  def add_episode(self, episode: Episode) -> None:
    self.episodes[episode.member].append(episode)

  def steps_per_s(self) -> float:
    return self.steps / (time.perf_counter() - self.start)

  def member(self, k: int) -> dict[str, Any]:
    """Member `k`'s call rates and the success, return, length and calls of its episodes."""
    eps = self.episodes[k]

    def mean(field: str) -> float | None:
      return float(np.mean([getattr(e, field) for e in eps])) if eps else None

    return {"call_rate": float(self.calls[k] / self.steps),
            "greedy_call_rate": float(self.greedy[k] / self.steps),
            "episodes": len(eps), "success_rate": mean("success"),
            "mean_return": mean("episode_return"), "mean_length": mean("length"),
            "calls_per_episode": mean("calls")}


class Trainer:
  """Owns the policies, the rows and the member state of one run."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str,
               runners: tuple[LMRunner, LMRunner] | None = None,
               log: Callable[[str], None] | None = print):
    validate(config)
    runtime_lib.initialize(config.get("runtime"))
    self.config = config
    self.workdir = os.path.abspath(workdir)
    self.seeds, self.costs = member_seeds_and_costs(config)
    self.num_members, self.num_envs = len(self.costs), int(config.num_envs)
    num_rows = self.num_members * self.num_envs
    self.placement = runtime_lib.make_placement(config.get("runtime"), self.num_members)
    self.local = self.placement.row_block(num_rows)  # the rows this process steps
    if self.placement.process_count > 1 and config.switcher.target == "paired":
      raise ValueError("switcher.target = 'paired' runs in one process; set "
                       "runtime.distributed = False")
    self.log = (log or (lambda line: None)) if self.placement.is_primary else (lambda line: None)
    self.small, self.large = runners or load_runners(config, self.placement.lm_mesh)
    for runner in (self.small, self.large):
      runner.shard(self.placement.lm_mesh)
    if self.placement.is_primary:  # after the policies load, so a bad path can be fixed
      check_config(self.workdir, config)
    self.placement.barrier("config checked")
    self.feature_dim = features_lib.feature_dim(config, self.small.hidden_size)
    self.members, self.step_fn = make_members(config, self.feature_dim, self.placement)
    self.budget = int(config.switcher.budget)
    self.gamma = float(config.switcher.discount)
    self.rows = TrainRows(config.levels, num_rows, int(config.seed),
                          {"small": self.small.prompt_config, "large": self.large.prompt_config},
                          make_env=make_env_fn(config))
    self.store = CheckpointStore(self.workdir, keep=int(config.keep_checkpoints))
    self.metrics = MetricsWriter(os.path.join(self.workdir, "metrics.jsonl"))
    self.step = 0
    self.remaining = np.full(num_rows, self.budget, np.int64)  # [R] z
    self.pending = Pending.initial(num_rows)
    self.averages = CallAverages.initial(self.num_members)
    self.timings = Timings()
    self.window = Window(self.num_members)
    self._train_metrics = None  # the latest step that could update (see `_member_step`)
    self.pairs = None
    if config.switcher.target == "paired":
      self.pairs = PairedTargets(
          config, self.small, self.large,
          lambda r, done, info: switcher_reward(config.reward, r, done, info),
          self.num_members, self.num_envs)
    self._restore_or_start()

  # -- state --------------------------------------------------------------------------------

  def _meta(self) -> dict:
    return {"config": config_dict(self.config), "feature_dim": self.feature_dim,
            "member_seeds": self.seeds, "member_costs": self.costs,
            "policies": {"small": self.small.policy.meta, "large": self.large.policy.meta}}

  def _rows_snapshot(self) -> dict:
    """`TrainRows.snapshot` of every row, each from the process that steps it."""
    parts = self.placement.gather_objects({
        "episode_index": [self.rows.episode_index[r] for r in self.local],
        "rows": [self.rows.rows[r].snapshot() for r in self.local]})
    return {key: [x for part in parts for x in part[key]] for key in ("episode_index", "rows")}

  def _restore_rows(self, snap: dict) -> None:
    """`TrainRows.restore` of this process's rows (any process count wrote `snap`)."""
    self.rows.episode_index = [int(k) for k in snap["episode_index"]]
    replay_rows([self.rows.rows[r] for r in self.local],
                [snap["rows"][r] for r in self.local])

  def _write(self, record: dict) -> None:
    if self.placement.is_primary:
      self.metrics.write(record)

  def _host(self) -> dict:
    return {"step": self.step, "rows": self._rows_snapshot(),
            "remaining": self.remaining.tolist(), **self.pending.to_host(),
            **self.averages.to_host(), **(self.pairs.to_host() if self.pairs else {})}

  def _restore_or_start(self) -> None:
    if self.store.latest_step() is None:
      if self.placement.is_primary:
        self.metrics.truncate(0)  # records of a run killed before its first checkpoint
      for r in self.local:
        self.rows.start(r)
      return
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), self.members)
    self.members, host, _ = self.store.restore(abstract)
    self.step = int(host["step"])
    self._restore_rows(host["rows"])
    self.remaining = np.asarray(host["remaining"], np.int64)
    self.pending = Pending.from_host(host)
    self.averages = CallAverages.from_host(host)
    if self.pairs:
      self.pairs.from_host(host)
    if self.placement.is_primary:
      self.metrics.truncate(self.step)
    self.log(f"resumed from step {self.step} of {self.config.train_steps}")

  # -- one acting step -------------------------------------------------------------------------

  def act(self) -> None:
    """One acting step on every row: the five stages of the module docstring."""
    with self.timings.wall("total"):
      rows = [self.rows.rows[r] for r in self.local]  # this process's
      cands = [row.obs.valid_actions for row in rows]
      small = self._score_small(rows, cands)
      history = features_lib.history_view(self.config, self.small, rows, cands)
      if history is not None:
        self.timings.add_lm("small_lm", history.out)
      phi = features_lib.build_features(self.config, small.out,
                                        np.array([row.time_fraction for row in rows]),
                                        None if history is None else history.out, rows)
      g, greedy = self._member_step(rows, phi)  # [R] every row's
      large_flops = self._large_flops(rows, cands)  # at the states decided on, before stepping
      if self.pairs:  # one process: `rows` and `phi` are every row's
        self.pairs.collect(self.step, rows, phi, self.remaining)
      g_local = g[self.local.start:self.local.stop]
      called = np.flatnonzero(g_local)
      large = self._score_large(rows, cands, called)
      actions = self._choose_actions(rows, cands, small, large, called)
      with self.timings.wall("envs"):
        self.pending, finished = self._step_envs(rows, cands, actions, g_local)
      self.remaining = budget_lib.spend(self.remaining, g, self.budget)
      self.remaining[np.array([e.row for e in finished], np.int64)] = self.budget
      self._account(g, greedy, finished, large_flops)
      self.step += 1
    if self.pairs and self.pairs.ready():
      with self.timings.wall("branches"):
        self.members = self.pairs.play(self.members)

  def _score_small(self, rows: Sequence[Row], cands: Sequence[Sequence[str]]) -> Scored:
    """Stage 1: the small LM on every row (its output gives `phi(s)`)."""
    small = self.small([row.prompt("small") for row in rows], cands)
    self.timings.add_lm("small_lm", small.out)
    return small

  def _member_step(self, rows: Sequence[Row], phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stage 2: every member's step on `phi(s)` `[R, F]` (this process's rows' gathered with
    the others'), `z`, `t` and the pending transition; returns the executed and the greedy
    switches of every row, `[R]` each."""
    m, b = self.num_members, self.num_envs
    phi = self.placement.gather_rows(phi)
    t = self.placement.gather_rows(np.array([row.t for row in rows], np.int32))
    with self.timings.wall("update"):
      inputs = self.placement.put((
          phi.reshape(m, b, -1), self.remaining.reshape(m, b).astype(np.int32), t.reshape(m, b),
          self.pending.reward.reshape(m, b), self.pending.discount.reshape(m, b),
          self.averages.measured(self.config.switcher.lagrangian.measure)))
      self.members, g, greedy, metrics = self.step_fn(self.members, *inputs)
      g, greedy = np.asarray(g).reshape(-1), np.asarray(greedy).reshape(-1)  # [R]
    if self.step % int(self.config.switcher.train_every) == 0:
      self._train_metrics = metrics  # a step that could update: the one a record reports
    return g, greedy

  def _score_large(self, rows: Sequence[Row], cands: Sequence[Sequence[str]],
                   called: np.ndarray) -> Scored | None:
    """Stage 3: the large LM on the rows that call it (None when none does)."""
    if not called.size:
      return None
    large = self.large([rows[i].prompt("large") for i in called], [cands[i] for i in called])
    self.timings.add_lm("large_lm", large.out)
    return large

  def _choose_actions(self, rows: Sequence[Row], cands: Sequence[Sequence[str]], small: Scored,
                      large: Scored | None, called: np.ndarray) -> np.ndarray:
    """Stage 4: each row's candidate index `[R]`, from the LM it called, at the row's common
    random number."""
    mode = self.config.policies.action
    n_cands = np.array([len(c) for c in cands])
    u = crn_uniform(int(self.config.seed), np.array([row.seed for row in rows], np.int64),
                    np.array([row.t for row in rows], np.int64))
    actions = choose_actions(small.out.probs, n_cands, u, mode)
    if large is not None:
      actions[called] = choose_actions(large.out.probs, n_cands[called], u[called], mode)
    return actions

  def _step_envs(self, rows: Sequence[Row], cands: Sequence[Sequence[str]], actions: np.ndarray,
                 g: np.ndarray) -> tuple[Pending, list[Episode]]:
    """Stage 5: this process's rows take their actions (worker environments all at once);
    finished episodes restart. Returns every row's pending transition and the episodes that
    ended on any row."""
    chosen = [cands[i][actions[i]] for i in range(len(rows))]
    results = call_all([row.env for row in rows], "step", chosen)
    # [R_local, 6]: reward, discount, done, success, episode return, length; calls separately
    out = np.zeros((len(rows), 6), np.float64)
    calls = np.zeros(len(rows), np.int64)
    for i, row in enumerate(rows):
      r, done, info = row.step(chosen[i], int(g[i]), result=results[i])
      out[i, :3] = (switcher_reward(self.config.reward, r, done, info),
                    0.0 if done else self.gamma, done)
      if done:
        out[i, 3:] = (bool(info["success"]), row.episode_return, row.t)
        calls[i] = row.calls
        self.rows.next_episode(self.local[i])
    out, calls = self.placement.gather_rows(out), self.placement.gather_rows(calls)
    finished = [Episode(row=i, member=i // self.num_envs, success=bool(out[i, 3]),
                        episode_return=float(out[i, 4]), length=int(out[i, 5]),
                        calls=int(calls[i]))
                for i in np.flatnonzero(out[:, 2])]
    return Pending(out[:, 0].astype(np.float32), out[:, 1].astype(np.float32)), finished

  def _large_flops(self, rows: Sequence[Row], cands: Sequence[Sequence[str]]) -> np.ndarray | None:
    """Every row's large-LM FLOPs at its state `[R]`, called or not, when the Lagrangian measures
    the compute share (else None): counted from token lengths, the model does not run."""
    if self.config.switcher.lagrangian.measure != "compute":
      return None
    return self.placement.gather_rows(
        self.large.policy.row_flops([row.prompt("large") for row in rows], cands))

  def _account(self, g: np.ndarray, greedy: np.ndarray, finished: Sequence[Episode],
               large_flops: np.ndarray | None = None) -> None:
    """Folds the step into the call averages and the reported window; `large_flops` `[R]` weighs
    the greedy calls into each member's compute share."""
    m, b = self.num_members, self.num_envs
    greedy_rate = greedy.reshape(m, b).mean(-1)  # [M]
    compute_share = None
    if large_flops is not None:
      compute_share = greedy_compute_share(greedy.reshape(m, b), large_flops.reshape(m, b))
    for episode in finished:
      self.averages.add_episode(episode.member, episode.length)
      self.window.add_episode(episode)
    self.averages.add_step(greedy_rate, compute_share)
    self.window.add_step(g.reshape(m, b).mean(-1), greedy_rate)

  # -- logging, evaluation, checkpoints ------------------------------------------------------

  def _record(self) -> dict:
    train = self.placement.fetch(self._train_metrics)
    members = []
    for k in range(self.num_members):
      members.append({
          "cost": self.costs[k], "seed": self.seeds[k], **self.window.member(k),
          "measured_rate": float(self.averages.rate[k]),
          **({"measured_compute": float(self.averages.compute[k])}
             if self.config.switcher.lagrangian.measure == "compute" else {}),
          **{key: float(np.asarray(v)[k]) for key, v in train.items()}})
    pairs = {"pairs": self.pairs.pairs_played,
             "branch_env_steps": self.pairs.sim.env_steps} if self.pairs else {}
    return {"kind": "train", "step": self.step,
            "env_steps": self.step * self.num_members * self.num_envs, **pairs,
            "steps_per_s": self.window.steps_per_s(), "members": members}

  def _progress(self, rec: dict) -> str:
    parts = []
    for mem in rec["members"]:
      succ = "  -  " if mem["success_rate"] is None else f"{mem['success_rate']:.3f}"
      parts.append(f"c={mem['cost']:g}: success {succ} calls {mem['call_rate']:.3f} "
                   f"(greedy {mem['greedy_call_rate']:.3f}) lambda {mem['lagrange']:.3f} "
                   f"loss {mem['loss']:.4f}")
    eps = rec["members"][0]["epsilon"]
    return (f"step {rec['step']:>6d}/{self.config.train_steps}  {rec['steps_per_s']:.2f} steps/s"
            f"  eps {eps:.3f} | " + " | ".join(parts))

  def evaluate_members(self, episodes: int, seed: int, split: str) -> list[dict]:
    """Greedy evaluation of every member on the same episodes."""
    cfg = self.config
    num_envs = min(int(cfg.eval.num_envs), episodes)
    londi = eval_lib.make_londi_rule_builder(cfg, num_envs)
    params = self.placement.fetch(self.members.learner.q_params)
    out = []
    # With several processes each evaluates a block of the members.
    mine = np.array_split(np.arange(self.num_members), self.placement.process_count)[
        self.placement.process_index]
    with EnvPool(eval_lib.prompt_configs(self.small, self.large), make_env_fn(cfg)) as pool:
      for k in mine:
        q = jax.tree_util.tree_map(lambda x, k=k: jnp.asarray(x[k]), params)
        out.append(eval_lib.run_method(londi(q), self.small, self.large, cfg, episodes=episodes,
                                       seed=seed, num_envs=num_envs, split=split,
                                       budget=self.budget, pool=pool))
    return [r for part in self.placement.gather_objects(out) for r in part]

  def _periodic_eval(self) -> float:
    results = self.evaluate_members(int(self.config.eval_episodes),
                                    int(self.config.seed) + PERIODIC_EVAL_SEED, "dev")
    record = {"kind": "eval", "step": self.step, "members": [
        {"cost": c, "success_rate": r["success_rate"], "mean_return": r["mean_return"],
         **({"mean_score": r["mean_score"]} if "mean_score" in r else {}),
         "large_call_fraction": r["large_call_fraction"],
         "calls_per_episode": r["large_calls"] / r["num_episodes"]}
        for c, r in zip(self.costs, results)]}
    self._write(record)
    score = switcher_objective(self.config, self.costs, results)
    self.log(f"eval step {self.step}: " + " | ".join(
        f"c={m['cost']:g}: success {m['success_rate']:.3f}"
        + (f" score {m['mean_score']:.1f}" if "mean_score" in m else "")
        + f" calls {m['large_call_fraction']:.3f}" for m in record["members"]))
    return score

  def save(self, score: float | None = None) -> None:
    """Saves and waits: Orbax finalises an asynchronous save only on a later call from this
    thread, so without the wait a run killed between checkpoints would lose the latest one."""
    self.store.save(self.step, self.members, self._host(), self._meta(), score=score)
    self.store.wait()

  def run(self, stop_after: int | None = None) -> dict | None:
    """Trains to `config.train_steps`; returns the last train record.

    Args:
      stop_after: raise `Interrupted` once this step is done (and logged), without saving or
        waiting for pending saves, as a killed process would.
    """
    cfg = self.config
    total = int(cfg.train_steps)
    rec = None
    if self.step >= total:
      self.log(f"already trained to step {self.step}")
      self.store.wait()
      return None
    self.log(f"training {self.num_members} member(s) (costs {self.costs}) on "
             f"{self.num_members} x {self.num_envs} rows, phi dim {self.feature_dim}, "
             f"{total} steps")
    while self.step < total:
      self.act()
      if self.step % cfg.log_every == 0 or self.step == total:
        rec = self._record()
        self._write(rec)
        self.log(self._progress(rec))
        self.window = Window(self.num_members)
        score = None
        if cfg.eval_every and self.step % cfg.eval_every == 0:
          score = self._periodic_eval()
        if (score is not None or self.step % cfg.checkpoint_every == 0
            or self.step == total):
          self.save(score)
      if stop_after is not None and self.step == stop_after:
        raise Interrupted(f"stopped after step {self.step}")
    self.store.wait()
    return rec

  def close(self) -> None:
    self.store.wait()
    self.store.close()
    self.metrics.close()
    self.rows.close()
    if self.pairs:
      self.pairs.close()


def train(config: ml_collections.ConfigDict, workdir: str, log=print,
          stop_after: int | None = None, runners=None) -> dict | None:
  """Trains (or resumes) a run in `workdir`; see `Trainer.run`."""
  trainer = Trainer(config, workdir, runners=runners, log=log)
  try:
    return trainer.run(stop_after=stop_after)
  finally:
    if stop_after is None:
      trainer.close()
