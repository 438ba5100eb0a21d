"""The host-side training loop of docs/architecture.md: one acting step (`launch.train`).

Each acting step, for `M` members with `B` environment rows each (`R = M * B` rows):

    prompts (small) -> small LM on all R rows -> phi(s) [M, B, F]
    -> jitted member step (replay write, U updates every k steps, epsilon-greedy switch) -> g [M, B]
    -> large LM on the rows with g = 1 (padded to a batch bucket) -> actions -> environments

A row decides every `switcher.hold` steps of its episode, and each decision's transition is
written `switcher.n_step` decisions late, by the step that sees the bootstrap state
(`switching.nstep`). An episode's end (success, failure or the step limit) is terminal for the
switcher (discount 0); with the time fraction in `phi` the step limit is part of the state, so
this is exact. The Lagrangian's measured value is an exponential average of the greedy call rate
(times the average episode length for `calls_per_episode`).

Checkpoints hold every member's state (replay included) and the rows as seeds and actions, so a
run interrupted and resumed replays exactly the same episodes and ends with the same metrics.
"""

from __future__ import annotations

import collections
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from londi_jax.switching.config import member_seeds_and_costs
from londi_jax.training import evaluation as eval_lib
from londi_jax.training import features as features_lib
from londi_jax.training.checkpoint import CheckpointStore, check_config, config_dict
from londi_jax.training.lm import LMRunner, choose_actions, crn_uniform, load_runners
from londi_jax.training.members import make_members
from londi_jax.training.metrics import MetricsWriter
from londi_jax.training.rows import TrainRows

MEASURE_DECAY = 0.99  # of the exponential average of the greedy call rate
PERIODIC_EVAL_SEED = 500_000  # periodic evaluations play `dev` seeds far from training's


REWARDS = ("env", "success")


def switcher_reward(kind: str, reward: float, done: bool, info: dict) -> float:
  """The reward the switcher learns from: the environment's own (`env`; BabyAI pays
  `1 - 0.9 t / T` on success, so it also prices speed), or 1 on success and 0 otherwise
  (`success`, the rate the reports measure). Evaluation always reports both."""
  if kind == "success":
    return float(done and bool(info.get("success")))
  return reward


class Interrupted(RuntimeError):
  """Raised by `train(..., stop_after=n)` after step n, as if the process had been killed."""


def validate(config: ml_collections.ConfigDict) -> None:
  if config.checkpoint_every % config.log_every or (
      config.eval_every and config.eval_every % config.log_every):
    raise ValueError("checkpoint_every and eval_every must be multiples of log_every, got "
                     f"{config.checkpoint_every}, {config.eval_every} and {config.log_every}")
  if config.reward not in REWARDS:
    raise ValueError(f"reward must be one of {REWARDS}, got {config.reward!r}")
  if config.policies.action not in ("sampled", "greedy"):
    raise ValueError(f"policies.action must be sampled or greedy, got {config.policies.action!r}")


class Trainer:
  """Owns the policies, the rows and the member state of one run."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str,
               runners: tuple[LMRunner, LMRunner] | None = None,
               log: Callable[[str], None] | None = print):
    validate(config)
    self.config = config
    self.workdir = os.path.abspath(workdir)
    self.log = log or (lambda line: None)
    self.small, self.large = runners or load_runners(config)
    check_config(self.workdir, config)  # after the policies load, so a bad path can be fixed
    self.seeds, self.costs = member_seeds_and_costs(config)
    self.num_members, self.num_envs = len(self.costs), int(config.num_envs)
    self.feature_dim = features_lib.feature_dim(config, self.small.hidden_size)
    self.members, self.step_fn = make_members(config, self.feature_dim)
    self.budget = int(config.switcher.budget)
    self.gamma = float(config.switcher.discount)
    num_rows = self.num_members * self.num_envs
    self.rows = TrainRows(config.levels, num_rows, int(config.seed),
                          {"small": self.small.prompt_config, "large": self.large.prompt_config})
    self.store = CheckpointStore(self.workdir, keep=int(config.keep_checkpoints))
    self.metrics = MetricsWriter(os.path.join(self.workdir, "metrics.jsonl"))
    self.step = 0
    self.remaining = np.full(num_rows, self.budget, np.int64)  # [R]
    self.reward = np.zeros(num_rows, np.float32)  # [R] of the pending transitions
    self.discount = np.zeros(num_rows, np.float32)  # [R]
    self.rate_avg = np.zeros(self.num_members)  # [M] average greedy call rate
    self.length_avg = np.full(self.num_members, np.nan)  # [M] average episode length
    # Wall time of `act` by part (seconds): the LMs' device time, the member step (switcher,
    # replay, updates), the environments, LM compilations, and the total; see bench/loop.py.
    self.timings = collections.Counter()
    self._window_reset()
    self._restore_or_start()

  # -- state --------------------------------------------------------------------------------

  def _meta(self) -> dict:
    return {"config": config_dict(self.config), "feature_dim": self.feature_dim,
            "member_seeds": self.seeds, "member_costs": self.costs,
            "policies": {"small": self.small.policy.meta, "large": self.large.policy.meta}}

  def _host(self) -> dict:
    return {"step": self.step, "rows": self.rows.snapshot(),
            "remaining": self.remaining.tolist(), "reward": self.reward.tolist(),
            "discount": self.discount.tolist(), "rate_avg": self.rate_avg.tolist(),
            "length_avg": [None if np.isnan(x) else x for x in self.length_avg]}

  def _restore_or_start(self) -> None:
    if self.store.latest_step() is None:
      self.metrics.truncate(0)  # records of a run killed before its first checkpoint
      self.rows.reset()
      return
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), self.members)
    self.members, host, _ = self.store.restore(abstract)
    self.step = int(host["step"])
    self.rows.restore(host["rows"])
    self.remaining = np.asarray(host["remaining"], np.int64)
    self.reward = np.asarray(host["reward"], np.float32)
    self.discount = np.asarray(host["discount"], np.float32)
    self.rate_avg = np.asarray(host["rate_avg"], np.float64)
    self.length_avg = np.array([np.nan if x is None else x for x in host["length_avg"]])
    self.metrics.truncate(self.step)
    self.log(f"resumed from step {self.step} of {self.config.train_steps}")

  def _window_reset(self) -> None:
    m = self.num_members
    self.window = {"steps": 0, "calls": np.zeros(m), "greedy": np.zeros(m),
                   "episodes": [[] for _ in range(m)], "start": time.perf_counter()}

  # -- one acting step -------------------------------------------------------------------------

  def act(self) -> None:
    """One acting step on every row (see the module docstring)."""
    cfg, rows = self.config, self.rows.rows
    m, b = self.num_members, self.num_envs
    clock = self.timings
    start = time.perf_counter()
    cands = [row.obs.valid_actions for row in rows]
    n_cands = np.array([len(c) for c in cands])
    s = self.small([row.prompt("small") for row in rows], cands)
    clock["small_lm"] += s.out.device_time_s
    clock["compile"] += s.out.compile_time_s
    phi = features_lib.build_features(cfg, s.out, np.array([row.time_fraction for row in rows]))
    measured = self.rate_avg.copy()
    if cfg.switcher.lagrangian.measure == "calls_per_episode":
      measured = measured * np.nan_to_num(self.length_avg, nan=0.0)
    tick = time.perf_counter()
    self.members, g, greedy, self._step_metrics = self.step_fn(
        self.members, phi.reshape(m, b, -1), self.remaining.reshape(m, b).astype(np.int32),
        np.array([row.t for row in rows], np.int32).reshape(m, b), self.reward.reshape(m, b),
        self.discount.reshape(m, b), measured.astype(np.float32))
    g, greedy = np.asarray(g).reshape(-1), np.asarray(greedy).reshape(-1)  # [R]
    clock["update"] += time.perf_counter() - tick
    ep_seeds = np.array([row.seed for row in rows], np.int64)
    t = np.array([row.t for row in rows], np.int64)
    u = crn_uniform(int(cfg.seed), ep_seeds, t)
    actions = choose_actions(s.out.probs, n_cands, u, cfg.policies.action)
    called = np.flatnonzero(g)
    if called.size:
      lo = self.large([rows[i].prompt("large") for i in called], [cands[i] for i in called])
      actions[called] = choose_actions(lo.out.probs, n_cands[called], u[called],
                                       cfg.policies.action)
      clock["large_lm"] += lo.out.device_time_s
      clock["compile"] += lo.out.compile_time_s
    tick = time.perf_counter()
    for i, row in enumerate(rows):
      reward, done, info = row.step(cands[i][actions[i]], int(g[i]))
      self.reward[i] = switcher_reward(cfg.reward, reward, done, info)
      self.discount[i] = 0.0 if done else self.gamma
      if self.budget > 0:
        self.remaining[i] -= int(g[i])
      if done:
        member = i // b
        self.window["episodes"][member].append(
            (bool(info["success"]), row.episode_return, row.t, row.calls))
        avg = self.length_avg[member]
        self.length_avg[member] = row.t if np.isnan(avg) else (
            MEASURE_DECAY * avg + (1 - MEASURE_DECAY) * row.t)
        self.rows.next_episode(i)
        self.remaining[i] = self.budget
    clock["envs"] += time.perf_counter() - tick
    greedy_rate = greedy.reshape(m, b).mean(-1)
    self.rate_avg = MEASURE_DECAY * self.rate_avg + (1 - MEASURE_DECAY) * greedy_rate
    self.window["steps"] += 1
    self.window["calls"] += g.reshape(m, b).mean(-1)
    self.window["greedy"] += greedy_rate
    self.step += 1
    if (self.step - 1) % int(cfg.switcher.train_every) == 0:
      self._train_metrics = self._step_metrics
    clock["total"] += time.perf_counter() - start

  # -- logging, evaluation, checkpoints ------------------------------------------------------

  def _record(self) -> dict:
    w = self.window
    elapsed = time.perf_counter() - w["start"]
    train = jax.device_get(self._train_metrics)
    members = []
    for k in range(self.num_members):
      eps = w["episodes"][k]
      members.append({
          "cost": self.costs[k], "seed": self.seeds[k],
          "call_rate": float(w["calls"][k] / w["steps"]),
          "greedy_call_rate": float(w["greedy"][k] / w["steps"]),
          "episodes": len(eps),
          "success_rate": float(np.mean([e[0] for e in eps])) if eps else None,
          "mean_return": float(np.mean([e[1] for e in eps])) if eps else None,
          "mean_length": float(np.mean([e[2] for e in eps])) if eps else None,
          "calls_per_episode": float(np.mean([e[3] for e in eps])) if eps else None,
          "measured_rate": float(self.rate_avg[k]),
          **{key: float(np.asarray(v)[k]) for key, v in train.items()}})
    return {"kind": "train", "step": self.step,
            "env_steps": self.step * self.num_members * self.num_envs,
            "steps_per_s": w["steps"] / elapsed, "members": members}

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
    params = jax.device_get(self.members.learner.q_params)
    out = []
    for k in range(self.num_members):
      q = jax.tree_util.tree_map(lambda x: jnp.asarray(x[k]), params)
      out.append(eval_lib.run_method(londi(q), self.small, self.large, cfg, episodes=episodes,
                                     seed=seed, num_envs=num_envs, split=split,
                                     budget=self.budget))
    return out

  def _periodic_eval(self) -> float:
    results = self.evaluate_members(int(self.config.eval_episodes),
                                    int(self.config.seed) + PERIODIC_EVAL_SEED, "dev")
    record = {"kind": "eval", "step": self.step, "members": [
        {"cost": c, "success_rate": r["success_rate"], "mean_return": r["mean_return"],
         "large_call_fraction": r["large_call_fraction"],
         "calls_per_episode": r["large_calls"] / r["num_episodes"]}
        for c, r in zip(self.costs, results)]}
    self.metrics.write(record)
    # The switcher's own objective, its reward minus the price of its calls, averaged over members.
    gain = "success_rate" if self.config.reward == "success" else "mean_return"
    score = float(np.mean([m[gain] - m["cost"] * m["calls_per_episode"]
                           for m in record["members"]]))
    self.log(f"eval step {self.step}: " + " | ".join(
        f"c={m['cost']:g}: success {m['success_rate']:.3f} calls {m['large_call_fraction']:.3f}"
        for m in record["members"]))
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
        self.metrics.write(rec)
        self.log(self._progress(rec))
        self._window_reset()
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
    self.rows.close()


def train(config: ml_collections.ConfigDict, workdir: str, log=print,
          stop_after: int | None = None, runners=None) -> dict | None:
  """Trains (or resumes) a run in `workdir`; see `Trainer.run`."""
  trainer = Trainer(config, workdir, runners=runners, log=log)
  try:
    return trainer.run(stop_after=stop_after)
  finally:
    if stop_after is None:
      trainer.close()
