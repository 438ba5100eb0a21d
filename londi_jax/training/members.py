"""Switchers trained together: per-member state and the jitted step, `vmap`ped over members.

One call of `step` per acting step does, for every member at once: complete the previous step's
transition with this step's `phi(s_t)` and `z_t` and write it to replay, run `U` updates in one
`lax.scan` when `k` steps have passed and replay holds `min_replay` transitions, and choose this
step's switches epsilon-greedily (and greedily, for the measured call rate) under the hard-budget
mask. Members differ in seed and in cost `c` (both live in the state, so one compilation serves
them all); each has its own `B` environment rows because its switches change its trajectories.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import struct

from londi_jax.replay import ReplayState, replay_add, replay_init
from londi_jax.switching import budget as budget_lib
from londi_jax.switching.acting import epsilon_greedy_switch, greedy_switch, linear_epsilon
from londi_jax.switching.config import member_seeds_and_costs
from londi_jax.switching.learner import (LearnerState, Transition, example_transition,
                                         init_learner, make_train_many, q_values)


@struct.dataclass
class Pending:
  """The first half of each row's latest transition, `(phi_tm1, z_tm1, g_tm1)`."""

  features: jnp.ndarray  # [B, F]
  remaining: jnp.ndarray  # [B] int32
  switch: jnp.ndarray  # [B] int32


@struct.dataclass
class MemberState:
  """Everything of one switcher that changes while it trains (checkpointed whole)."""

  learner: LearnerState
  replay: ReplayState
  pending: Pending
  has_pending: jnp.ndarray  # [] bool
  steps: jnp.ndarray  # [] int32, acting steps so far
  act_key: jax.Array  # per-step keys are fold_in(act_key, steps)


def make_member_fns(config: ml_collections.ConfigDict, feature_dim: int):
  """Builds `init(seed, cost) -> MemberState` and
  `step(member, phi [B, F], remaining [B], reward [B], discount [B], measured [])
  -> (member, switches [B], greedy [B], metrics)` for one member (to be `vmap`ped and `jit`ted).

  `reward` and `discount` belong to the previous step's transition (ignored at the first step);
  `measured` is the member's current call rate (or calls per episode) for the Lagrangian.
  """
  sw = config.switcher
  budget = int(sw.budget)
  num_rows = int(config.num_envs)
  train_many = make_train_many(sw, int(sw.num_updates))
  min_replay, train_every = int(sw.min_replay), int(sw.train_every)

  def init(seed, cost):
    learner_key, act_key = jax.random.split(jax.random.PRNGKey(seed))
    return MemberState(
        learner=init_learner(sw, learner_key, feature_dim, cost),
        replay=replay_init(example_transition(feature_dim), int(sw.replay_capacity)),
        pending=Pending(features=jnp.zeros((num_rows, feature_dim), jnp.float32),  # [B, F]
                        remaining=jnp.zeros((num_rows,), jnp.int32),
                        switch=jnp.zeros((num_rows,), jnp.int32)),
        has_pending=jnp.zeros((), bool), steps=jnp.zeros((), jnp.int32), act_key=act_key)

  def step(member: MemberState, phi, remaining, reward, discount, measured):
    p = member.pending
    replay = replay_add(member.replay, Transition(
        features_tm1=p.features, remaining_tm1=p.remaining, switch_tm1=p.switch,
        reward_t=reward, discount_t=discount, features_t=phi, remaining_t=remaining),
        member.has_pending)
    ready = member.has_pending & (replay.size >= min_replay) & (member.steps % train_every == 0)
    learner, train_metrics = train_many(member.learner, replay, measured, ready)
    q = q_values(sw, learner.q_params, phi, remaining)  # [B, 2]
    allowed = budget_lib.allowed_switches(remaining, budget)  # [B, 2]
    epsilon = linear_epsilon(member.steps, sw.epsilon_start, sw.epsilon_end,
                             sw.epsilon_decay_steps)
    key = jax.random.fold_in(member.act_key, member.steps)
    switches = epsilon_greedy_switch(q, allowed, epsilon, key)
    greedy = greedy_switch(q, allowed)
    metrics = dict(train_metrics, epsilon=epsilon, trained=ready.astype(jnp.float32),
                   lagrange=learner.lagrange, replay_size=replay.size)
    member = MemberState(
        learner=learner, replay=replay,
        pending=Pending(features=phi, remaining=remaining, switch=switches),
        has_pending=jnp.ones((), bool), steps=member.steps + 1, act_key=member.act_key)
    return member, switches, greedy, metrics

  return init, step


def make_members(config: ml_collections.ConfigDict, feature_dim: int):
  """Builds `(members, step)`: the initial state of every member, stacked on a leading axis,
  and the jitted, member-`vmap`ped step that donates the state it replaces."""
  init, step = make_member_fns(config, feature_dim)
  seeds, costs = member_seeds_and_costs(config)
  members = jax.jit(jax.vmap(init))(jnp.asarray(seeds, jnp.int32), jnp.asarray(costs, jnp.float32))
  return members, jax.jit(jax.vmap(step), donate_argnums=0)


def make_greedy_fn(config: ml_collections.ConfigDict):
  """`greedy(q_params [M, ...], phi [M, B, F], remaining [M, B]) -> switches [M, B]`: the
  evaluation rule (no exploration), under the hard-budget mask."""
  sw = config.switcher
  budget = int(sw.budget)

  def greedy(params, phi, remaining):
    q = q_values(sw, params, phi, remaining)
    return greedy_switch(q, budget_lib.allowed_switches(remaining, budget))

  return jax.jit(jax.vmap(greedy))


def stack_rows(values: Sequence, num_members: int):
  """Splits a flat `[M * B, ...]` host array into `[M, B, ...]`."""
  return values.reshape((num_members, -1) + values.shape[1:])
