"""Counterfactual paired targets for the switcher (docs/method.md: paired targets).

At a decision point `s` with `z` calls left, two copies of the state are played on: the *call*
branch lets the large LM act for the decision's `hold` steps, the *keep* branch the small LM, and
both then follow the same continuation rule `pi` to the end of the episode (or a horizon). With
discounted reward sums `R_g` and discounted call counts `C_g` of branch `g`,

    y_g = R_g - (c + lambda) * C_g

is a Monte-Carlo sample of `Q^pi(s, g)`, the value of deciding `g` now and following `pi` after.
The branches draw common random numbers (the same uniform for the same episode and step), so they
coincide wherever the two LMs agree and `y_1 - y_0` has far less variance than either target: the
noise of a 0/1 outcome that drowns a bootstrapped TD target mostly cancels. The price enters only
when the targets are formed, so members with different costs learn from the same branches.

The learner fits `Q(s, 0)` to `y_0` and the gap `Q(s, 1) - Q(s, 0)` to the low-variance paired
difference `y_1 - y_0` (`paired_errors`, `make_paired_update`); the greedy switch calls where the
predicted gap, price included, is positive.

`play_branch_pairs` is the bookkeeping shared by every environment: it drives a `BranchSimulator`
(the tabular diagnostic's sampler, or text-environment rows with their LM policies) and respects
the hard budget in every branch: a branch spends its remaining calls like any step, and cannot
call at `z = 0`.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct

from londi_jax.gradients import gradient_step
from londi_jax.switching import budget as budget_lib
from londi_jax.switching.learner import (LearnerState, SwitchBatch, make_finish, make_optimizer,
                                         q_values)
from londi_jax.switching.loss import huber

KEEP, CALL = 0, 1


@dataclasses.dataclass(frozen=True)
class BranchOutcome:
  """What `N` branch pairs gave; column `g` is the branch that decided `g` first.

  Attributes:
    returns: `[N, 2]` discounted reward sums `R_g`.
    calls: `[N, 2]` the discounted price units `C_g` of the calls executed (budget permitting):
      one per call, or the call's large-LM FLOPs over `switcher.flops_unit`.
    steps: `[N, 2]` steps each branch played.
    callable: `[N]` whether the call branch could call at its first step (`z > 0` or no budget);
      where it could not, both branches are the keep branch and only `Q(s, 0)` has a target.
  """

  returns: np.ndarray
  calls: np.ndarray
  steps: np.ndarray
  callable: np.ndarray

  def targets(self, price: float | np.ndarray) -> np.ndarray:
    """`[N, 2]` Monte-Carlo targets `y_g = R_g - price * C_g`."""
    return self.returns - np.asarray(price)[..., None] * self.calls


class BranchSimulator(Protocol):
  """`2N` branches in lockstep: branch `b < N` is pair `b`'s keep branch, `N + b` its call branch.

  Both branches of a pair start from the same state and must draw the same random numbers at the
  same step of their episode, so that they differ only where their switches do.
  """

  def continuation(self, live: np.ndarray, remaining: np.ndarray) -> np.ndarray:
    """`[2N]` int switches of the continuation rule at the branches' current states."""

  def step(self, switches: np.ndarray, live: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps the live branches with `switches` `[2N]`; returns rewards, done and the price units
    of the step's calls (0 where it did not call; 1 per call when the price is per call), each
    `[2N]` (anything for branches that are not live)."""


def play_branch_pairs(sim: BranchSimulator, remaining: np.ndarray, *, hold: int, horizon: int,
                      gamma: float, budget: int) -> BranchOutcome:
  """Plays `N` keep/call branch pairs to their ends (or `horizon` steps).

  Args:
    sim: the branches, positioned at the pairs' decision points.
    remaining: `[N]` remaining large calls `z` at each decision point (ignored without a budget).
    hold: steps the first decision lasts (the call branch calls on each of them, budget
      permitting).
    horizon: most steps a branch plays.
    gamma: the switcher's discount.
    budget: the hard budget `n` (0: none).

  Returns:
    The pairs' `BranchOutcome`.
  """
  n = len(remaining)
  first = np.repeat(np.array([KEEP, CALL], np.int64), n)  # [2N]
  z = np.tile(np.asarray(remaining, np.int64), 2)  # [2N]
  live = np.ones(2 * n, bool)
  rewards, calls = np.zeros(2 * n), np.zeros(2 * n)
  steps = np.zeros(2 * n, np.int64)
  callable_ = budget_lib.allowed_switches(z[n:], budget)[:, CALL]
  discount = 1.0
  for t in range(horizon):
    if not live.any():
      break
    wanted = first if t < hold else np.asarray(sim.continuation(live, z), np.int64)
    switches = wanted * np.asarray(budget_lib.allowed_switches(z, budget)[:, CALL]) * live
    r, done, units = sim.step(switches, live)
    rewards += discount * np.where(live, r, 0.0)
    calls += discount * np.where(switches > 0, units, 0.0)
    steps += live
    z = np.asarray(budget_lib.spend(z, switches, budget))
    live &= ~np.asarray(done, bool)
    discount *= gamma
  pair = lambda x: np.stack([x[:n], x[n:]], axis=-1)  # noqa: E731  [2N] -> [N, 2]
  return BranchOutcome(returns=pair(rewards), calls=pair(calls), steps=pair(steps),
                       callable=np.asarray(callable_, bool))


@struct.dataclass
class PairedItem:
  """One branch pair as replay stores it (leaves gain a leading batch axis)."""

  features: jnp.ndarray  # [F] phi(s) at the decision point
  remaining: jnp.ndarray  # [] int32, remaining large calls z there
  returns: jnp.ndarray  # [2] R_0, R_1
  calls: jnp.ndarray  # [2] C_0, C_1
  callable: jnp.ndarray  # [] float32, 1 where the call branch could call


def example_paired_item(feature_dim: int) -> PairedItem:
  """A zero item with the shapes and dtypes replay stores."""
  return PairedItem(features=jnp.zeros((feature_dim,), jnp.float32),
                    remaining=jnp.zeros((), jnp.int32), returns=jnp.zeros((2,), jnp.float32),
                    calls=jnp.zeros((2,), jnp.float32), callable=jnp.zeros((), jnp.float32))


def paired_items(outcome: BranchOutcome, features: np.ndarray, remaining: np.ndarray
                 ) -> PairedItem:
  """The replay items `[N]` of `N` branch pairs decided at states with `features` `[N, F]`."""
  return PairedItem(features=np.asarray(features, np.float32),
                    remaining=np.asarray(remaining, np.int32),
                    returns=outcome.returns.astype(np.float32),
                    calls=outcome.calls.astype(np.float32),
                    callable=outcome.callable.astype(np.float32))


def paired_errors(q: jnp.ndarray, returns: jnp.ndarray, calls: jnp.ndarray,
                  callable_: jnp.ndarray, price: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The errors of the keep value and of the call-minus-keep gap against paired targets.

  Args:
    q: `Q(s, .)` `[N, 2]`.
    returns, calls: `[N, 2]` the pairs' `R_g` and `C_g`.
    callable_: `[N]` 1 where the call branch could call (else the gap has no target: 0 error).
    price: `c + lambda`, scalar.

  Returns:
    `(y_0 - Q(s, 0), ((y_1 - y_0) - (Q(s, 1) - Q(s, 0))) * callable)`, each `[N]`.
  """
  y = returns - price * calls  # [N, 2]
  base = y[:, KEEP] - q[:, KEEP]
  gap = ((y[:, CALL] - y[:, KEEP]) - (q[:, CALL] - q[:, KEEP])) * callable_
  return base, gap


def make_paired_update(config: ml_collections.ConfigDict):
  """Builds `update(state, batch) -> (state, metrics)` on a batch of `PairedItem`s: one gradient
  step on `huber(base) + paired.gap_weight * huber(gap)` (`paired_errors`, mean over the items
  with a call branch for the gap) with price `c + lambda`, then `learner.make_finish`'s target and
  multiplier steps. The learner state is the TD learner's, so evaluation, checkpoints and the
  budgets are shared."""
  optimizer = make_optimizer(config)
  finish = make_finish(config)
  delta = float(config.huber_delta)
  gap_weight = float(config.paired.gap_weight)

  def update(state: LearnerState, batch: SwitchBatch):
    item = batch.transitions
    price = state.cost + state.lagrange

    def loss_fn(params):
      q = q_values(config, params, item.features, item.remaining)  # [N, 2]
      base, gap = paired_errors(q, item.returns, item.calls, item.callable, price)
      gap_loss = jnp.sum(huber(gap, delta)) / jnp.maximum(jnp.sum(item.callable), 1.0)
      return jnp.mean(huber(base, delta)) + gap_weight * gap_loss, (base, gap, q)

    loss, (base, gap, q), q_params, opt_state = gradient_step(
        loss_fn, state.q_params, state.opt_state, optimizer)
    new_state = finish(state, q_params, opt_state, batch.constraint_value)
    metrics = {"loss": loss, "td_abs": jnp.mean(jnp.abs(base)), "gap_abs": jnp.mean(jnp.abs(gap)),
               "q_mean": jnp.mean(q), "q_gap": jnp.mean(q[:, CALL] - q[:, KEEP]),
               "lagrange": new_state.lagrange,
               "batch_call_rate": jnp.mean((q[:, CALL] > q[:, KEEP]).astype(jnp.float32))}
    return new_state, metrics

  return update
