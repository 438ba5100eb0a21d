"""Branch pairs on text-environment rows: the `switching.paired.BranchSimulator` of training.

A training row's state is its episode seed and its actions (`Row.snapshot`), so a decision point is
re-created exactly by `Row.replay`, twice: the keep branch and the call branch. Both then act as
the training loop does, the small LM where the switch is 0 and the large LM where it is 1, with
actions drawn from the loop's common random numbers (`lm.crn_uniform` of the episode seed and the
step), so the two branches coincide until the first step where the two LMs choose differently.
After the first decision the continuation rule acts: `small` keeps the small LM (the pair then
measures one call block against small-only, a rollout improvement of small-only), `random` is held
random switching at `paired.continuation_rate` (a rollout improvement of that coin: the rule to
beat at its rate), `greedy` follows a switcher's greedy rule with its own held decisions
(approximate policy iteration).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from londi_jax.switching.acting import greedy_under_budget
from londi_jax.switching.learner import q_values
from londi_jax.switching.paired import BranchOutcome, paired_items, play_branch_pairs
from londi_jax.training import features as features_lib
from londi_jax.training.lm import LMRunner, choose_actions, crn_uniform, held_coins
from londi_jax.training.members import make_add_pairs
from londi_jax.training.rows import Row, make_env_fn, replay_rows

CONTINUATIONS = ("small", "random", "greedy")
# Continuations that depend on no switcher: every member learns from every pair.
SHARED_CONTINUATIONS = ("small", "random")
CONTINUATION_STREAM = 11  # crn stream of the random continuation's coins (actions use stream 0)
# greedy(phi [K, F], remaining [K], pair [K]) -> switches [K]: the switcher of each branch's pair.
GreedyFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


class RowBranches:
  """`N` branch pairs over a pool of rows (`2N` at most, reused across calls).

  Args:
    small, large: the two LM policies.
    config: the run's config (`seed`, `policies.action`, `switcher.hold`, `switcher.flops_unit`,
      `features`, `switcher.paired.continuation_rate`).
    reward: `(reward, done, info) -> float`, the switcher's reward of a step.
    continuation: `small`, `random` or `greedy`.
    greedy: the switchers' greedy rule, for the `greedy` continuation.
  """

  def __init__(self, small: LMRunner, large: LMRunner, config: ml_collections.ConfigDict,
               reward: Callable[[float, bool, dict], float], continuation: str = "small",
               greedy: GreedyFn | None = None):
    if continuation not in CONTINUATIONS:
      raise ValueError(f"switcher.paired.continuation must be one of {CONTINUATIONS}, got "
                       f"{continuation!r}")
    if continuation == "greedy" and greedy is None:
      raise ValueError("the greedy continuation needs the switchers' greedy rule")
    self.small, self.large, self.config = small, large, config
    self.reward, self.continuation_kind, self.greedy = reward, continuation, greedy
    self.hold = int(config.switcher.hold)
    self.flops_unit = float(config.switcher.flops_unit)
    self._prompt_configs = {"small": small.prompt_config, "large": large.prompt_config}
    self._make_env = make_env_fn(config)  # the run's backend and env_kwargs
    self._pool: list[Row] = []
    self.rows: list[Row] = []
    self.pair = np.zeros(0, np.int64)
    self.env_steps = 0

  def play(self, snapshots: Sequence[Mapping[str, Any]], remaining: np.ndarray,
           pair_ids: np.ndarray | None = None, horizon: int = 0) -> BranchOutcome:
    """Plays a keep/call pair from each `Row.snapshot` (its decision point).

    Args:
      snapshots: `N` row snapshots taken at decision points (`t % hold == 0`).
      remaining: `[N]` remaining large calls there.
      pair_ids: `[N]` which switcher each pair belongs to (for the greedy continuation).
      horizon: most steps per branch; 0 plays to the episodes' ends.
    """
    n = len(snapshots)
    self.rows = self._assign_rows([snap["env_id"] for snap in snapshots] * 2)
    replay_rows(self.rows, list(snapshots) * 2)
    self.pair = np.tile(np.arange(n) if pair_ids is None else np.asarray(pair_ids), 2)
    self._held = np.zeros(2 * n, np.int64)
    self._small_cache = None
    limit = horizon or max(row.env.step_limit - row.t for row in self.rows)
    sw = self.config.switcher
    return play_branch_pairs(self, np.asarray(remaining), hold=self.hold, horizon=limit,
                             gamma=float(sw.discount), budget=int(sw.budget))

  def _assign_rows(self, env_ids: Sequence[str]) -> list[Row]:
    """A pool row per branch, one whose environment is open on the branch's id where one is
    free: each pool row keeps one environment open, so the pool holds `2N` at most and a row
    changes environment only when the pairs' mix of ids does."""
    free = list(self._pool)
    rows: list[Row | None] = [None] * len(env_ids)
    for i, env_id in enumerate(env_ids):
      match = next((row for row in free if row.has_env(env_id)), None)
      if match is not None:
        free.remove(match)
        rows[i] = match
    for i in range(len(env_ids)):
      if rows[i] is None:
        if not free:
          self._pool.append(Row(self._prompt_configs, self._make_env, max_envs=1))
          free.append(self._pool[-1])
        rows[i] = free.pop(0)
    return rows

  def close(self) -> None:
    for row in self._pool:
      row.close()

  # -- BranchSimulator -------------------------------------------------------------------------

  def continuation(self, live: np.ndarray, remaining: np.ndarray) -> np.ndarray:
    if self.continuation_kind == "small":
      return np.zeros(len(self.rows), np.int64)
    if self.continuation_kind == "random":
      # A coin per episode and decision step, so both branches of a pair draw the same coins.
      return held_coins(int(self.config.seed), np.array([row.seed for row in self.rows], np.int64),
                        np.array([row.t for row in self.rows]), self.hold,
                        float(self.config.switcher.paired.continuation_rate), CONTINUATION_STREAM)
    idx = np.flatnonzero(live)
    out = self._small_cache = self._score_small(idx)
    rows = [self.rows[i] for i in idx]
    history = features_lib.history_view(self.config, self.small, rows,
                                        [row.obs.valid_actions for row in rows])
    phi = features_lib.build_features(self.config, out,
                                      np.array([row.time_fraction for row in rows]),
                                      None if history is None else history.out, rows)
    t = np.array([self.rows[i].t for i in idx])
    decide = t % self.hold == 0
    g = np.asarray(self.greedy(phi, remaining[idx], self.pair[idx]), np.int64)
    self._held[idx] = np.where(decide, g, self._held[idx])
    return self._held.copy()

  def step(self, switches: np.ndarray, live: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = np.flatnonzero(live)
    rows = [self.rows[i] for i in idx]
    g = switches[idx]
    cands = [row.obs.valid_actions for row in rows]
    n_cands = np.array([len(c) for c in cands])
    u = crn_uniform(int(self.config.seed), np.array([row.seed for row in rows], np.int64),
                    np.array([row.t for row in rows], np.int64))
    mode = self.config.policies.action
    actions = np.zeros(len(rows), np.int64)
    keep = np.flatnonzero(g == 0)
    if keep.size:
      if self._small_cache is not None:  # the greedy continuation scored every live row
        probs = self._small_cache.probs[keep]
      else:
        probs = self._score_small(idx[keep]).probs
      actions[keep] = choose_actions(probs, n_cands[keep], u[keep], mode)
    call = np.flatnonzero(g == 1)
    units = np.zeros(len(self.rows))
    if call.size:
      scored = self.large([rows[j].prompt("large") for j in call], [cands[j] for j in call])
      actions[call] = choose_actions(scored.out.probs, n_cands[call], u[call], mode)
      units[idx[call]] = scored.row_flops / self.flops_unit if self.flops_unit else 1.0
    rewards = np.zeros(len(self.rows))
    done = np.zeros(len(self.rows), bool)
    for j, (i, row) in enumerate(zip(idx, rows)):
      r, d, info = row.step(cands[j][actions[j]], int(g[j]))
      rewards[i], done[i] = self.reward(r, d, info), d
    self.env_steps += len(rows)
    self._small_cache = None
    return rewards, done, units

  def _score_small(self, idx: np.ndarray):
    rows = [self.rows[i] for i in idx]
    return self.small([row.prompt("small") for row in rows],
                      [row.obs.valid_actions for row in rows]).out


class PairedTargets:
  """The training loop's side of paired targets (`switcher.target = "paired"`).

  Each acting step it picks up to `paired.pairs_per_step` decision points per member among the
  rows that decide now (at random, from `(seed, step)`), and once `paired.batch` are waiting it
  plays their pairs and writes them to replay: to every member when the continuation is `small`
  or `random` (the pair does not depend on any switcher, and the price enters only the loss), else
  to the member whose rows it came from. The waiting points are part of the checkpoint.

  Args:
    config: the run's config.
    small, large: the two LM policies.
    reward: the switcher's reward of a step, `(reward, done, info) -> float`.
    num_members, num_envs: `M` members with `B` rows each.
  """

  def __init__(self, config: ml_collections.ConfigDict, small: LMRunner, large: LMRunner,
               reward: Callable[[float, bool, dict], float], num_members: int, num_envs: int):
    sw = config.switcher
    self.config, self.num_members, self.num_envs = config, num_members, num_envs
    self.hold, self.budget = int(sw.hold), int(sw.budget)
    self.batch = int(sw.paired.batch)
    self.per_step = int(sw.paired.pairs_per_step)
    self.horizon = int(sw.paired.horizon)
    self.shared = sw.paired.continuation in SHARED_CONTINUATIONS
    self.points: list[dict[str, Any]] = []
    self.pairs_played = 0
    self._add = make_add_pairs()
    self._q_all = jax.jit(jax.vmap(lambda p, x, z: q_values(sw, p, x, z), in_axes=(0, None, None)))
    self._params = None

    def greedy(phi, remaining, pair_ids):
      k, rows = len(phi), 2 * self.batch  # padded to every branch row: one compilation
      phi_pad = np.zeros((rows, phi.shape[1]), np.float32)
      phi_pad[:k] = phi
      z_pad = np.zeros(rows, np.int32)
      z_pad[:k] = remaining
      q = np.asarray(self._q_all(self._params, phi_pad, z_pad))[:, :k]  # [M, K, 2]
      q = q[np.asarray(pair_ids), np.arange(k)]
      return np.asarray(greedy_under_budget(q, remaining, self.budget))

    self.sim = RowBranches(small, large, config, reward, sw.paired.continuation,
                           greedy=greedy)

  def collect(self, step: int, rows: Sequence[Row], phi: np.ndarray,
              remaining: np.ndarray) -> None:
    """Keeps decision points of this step: rows `[R]` before they act, their `phi` and `z`."""
    rng = np.random.default_rng([int(self.config.seed), step])
    t = np.array([row.t for row in rows])
    for m in range(self.num_members):
      rows_m = np.arange(m * self.num_envs, (m + 1) * self.num_envs)
      deciding = rows_m[t[rows_m] % self.hold == 0]
      for i in rng.permutation(deciding)[:self.per_step]:
        self.points.append({"member": m, "row": rows[i].snapshot(),
                            "phi": phi[i].tolist(), "remaining": int(remaining[i])})

  def ready(self) -> bool:
    return len(self.points) >= self.batch

  def play(self, members):
    """Plays the oldest `paired.batch` waiting pairs and returns `members` with them in replay."""
    points, self.points = self.points[:self.batch], self.points[self.batch:]
    member = np.array([p["member"] for p in points])
    remaining = np.array([p["remaining"] for p in points])
    self._params = members.learner.q_params
    outcome = self.sim.play([p["row"] for p in points], remaining, pair_ids=member,
                            horizon=self.horizon)
    items = paired_items(outcome, np.array([p["phi"] for p in points], np.float32), remaining)
    valid = (np.ones((self.num_members, self.batch), bool) if self.shared
             else member[None] == np.arange(self.num_members)[:, None])  # [M, P]
    stacked = jax.tree_util.tree_map(
        lambda v: np.broadcast_to(v, (self.num_members,) + v.shape), items)  # [M, P, ...]
    self.pairs_played += len(points)
    return self._add(members, stacked, valid)

  def to_host(self) -> dict:
    return {"branch_points": self.points, "pairs_played": self.pairs_played,
            "branch_env_steps": self.sim.env_steps}

  def from_host(self, host: Mapping[str, Any]) -> None:
    self.points = list(host.get("branch_points", []))
    self.pairs_played = int(host.get("pairs_played", 0))
    self.sim.env_steps = int(host.get("branch_env_steps", 0))

  def close(self) -> None:
    self.sim.close()

