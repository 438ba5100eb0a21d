"""Switchers trained together: per-member state and the jitted step, `vmap`ped over members.

One call of `step` per acting step does, for every member at once: choose this step's switches
epsilon-greedily (and greedily, for the measured call rate) under the hard-budget mask on the rows
that decide now (every `switcher.hold` steps of their episode; the others keep their latest
decision), complete the n-step transition of the decision `n` decisions back (`switcher.n_step`,
`switching.nstep`) with this step's `phi(s_t)` and `z_t` and write it to replay, and run `U`
updates in one `lax.scan` every `k` steps once replay holds `min_replay` transitions. Members
differ in seed and in cost `c` (both live in the state, so one compilation serves them all); each
has its own `B` environment rows because its switches change its trajectories.

With `switcher.share_replay` every member writes the transitions of all `M` members to its own
replay (an `all_gather` over the member axis): the price `c` enters only the loss, so each member's
off-policy Q-learning can use every member's experience, `M` times the data at no extra acting.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import struct

from londi_jax.runtime.mesh import Placement
from londi_jax.switching.replay import ReplayState, replay_add, replay_init
from londi_jax.switching import budget as budget_lib
from londi_jax.switching.acting import (epsilon_greedy_switch, greedy_under_budget,
                                        linear_epsilon)
from londi_jax.switching.config import member_seeds_and_costs
from londi_jax.switching.learner import (LearnerState, example_transition, init_learner,
                                         make_train_many, q_values)
from londi_jax.switching.nstep import NStepWindow, held_switch, nstep_init, nstep_push
from londi_jax.switching.paired import example_paired_item, make_paired_update

TARGETS = ("td", "paired")


@struct.dataclass
class MemberState:
  """Everything of one switcher that changes while it trains (checkpointed whole)."""

  learner: LearnerState
  replay: ReplayState  # of `Transition`s (`switcher.target = "td"`) or `PairedItem`s ("paired")
  window: NStepWindow  # the last n decisions of each row, awaiting their n-step transitions
  steps: jnp.ndarray  # [] int32, acting steps so far
  act_key: jax.Array  # per-step keys are fold_in(act_key, steps)


MEMBER_AXIS = "members"  # the vmapped axis the shared replay gathers over


def make_member_fns(config: ml_collections.ConfigDict, feature_dim: int):
  """Builds `init(seed, cost) -> MemberState` and
  `step(member, phi [B, F], remaining [B], t [B], reward [B], discount [B], measured [])
  -> (member, switches [B], greedy [B], metrics)` for one member (to be `vmap`ped and `jit`ted).

  `t` is each row's step in its episode (a row decides when `t % switcher.hold == 0` and holds
  its switch in between); `reward` and `discount` belong to the previous step (ignored at the
  first step); `measured` is the member's current call rate (or calls per episode) for the
  Lagrangian.

  With `switcher.target = "paired"` replay holds branch pairs (`switching.paired`), which the
  loop adds with `make_add_pairs`; the step then writes no TD transition (its window only keeps
  the held decisions) and its updates are `make_paired_update`'s.
  """
  sw = config.switcher
  budget = int(sw.budget)
  num_rows = int(config.num_envs)
  if sw.target not in TARGETS:
    raise ValueError(f"switcher.target must be one of {TARGETS}, got {sw.target!r}")
  paired = sw.target == "paired"
  train_many = make_train_many(sw, int(sw.num_updates),
                               make_paired_update(sw) if paired else None)
  min_replay, train_every = int(sw.min_replay), int(sw.train_every)
  share = bool(sw.share_replay)
  hold = int(sw.hold)
  if hold < 1:
    raise ValueError(f"switcher.hold must be >= 1, got {hold}")

  def init(seed, cost):
    learner_key, act_key = jax.random.split(jax.random.PRNGKey(seed))
    return MemberState(
        learner=init_learner(sw, learner_key, feature_dim, cost),
        replay=replay_init((example_paired_item if paired else example_transition)(feature_dim),
                           int(sw.replay_capacity)),
        window=nstep_init(int(sw.n_step), num_rows, feature_dim),
        steps=jnp.zeros((), jnp.int32), act_key=act_key)

  def step(member: MemberState, phi, remaining, t, reward, discount, measured):
    q = q_values(sw, member.learner.q_params, phi, remaining)  # [B, 2]
    allowed = budget_lib.allowed_switches(remaining, budget)  # [B, 2]
    epsilon = linear_epsilon(member.steps, sw.epsilon_start, sw.epsilon_end,
                             sw.epsilon_decay_steps)
    key = jax.random.fold_in(member.act_key, member.steps)
    decide = t % hold == 0  # [B] each row decides every `hold` steps of its episode
    held = held_switch(member.window) * allowed[:, 1]  # a held call stops when the budget does
    decisions = epsilon_greedy_switch(q, allowed, epsilon, key)  # kept only where `decide`
    switches = jnp.where(decide, decisions, held)
    greedy = jnp.where(decide, greedy_under_budget(q, remaining, budget), held)
    window, transition, valid = nstep_push(member.window, reward, discount, phi, remaining,
                                           decisions, decide, executed=switches)
    replay = member.replay
    if not paired:
      if share:  # [M, B, ...] -> [M * B, ...]
        transition, valid = jax.tree_util.tree_map(
            lambda x: x.reshape((-1,) + x.shape[2:]),
            jax.lax.all_gather((transition, valid), MEMBER_AXIS))
      replay = replay_add(replay, transition, valid)
    ready = (replay.size >= max(min_replay, 1)) & (member.steps % train_every == 0)
    learner, train_metrics = train_many(member.learner, replay, measured, ready)
    metrics = dict(train_metrics, epsilon=epsilon, trained=ready.astype(jnp.float32),
                   lagrange=learner.lagrange, replay_size=replay.size)
    member = MemberState(
        learner=learner, replay=replay, window=window, steps=member.steps + 1,
        act_key=member.act_key)
    return member, switches, greedy, metrics

  return init, step


def make_members(config: ml_collections.ConfigDict, feature_dim: int,
                 placement: Placement | None = None):
  """Builds `(members, step)`: the initial state of every member, stacked on a leading axis,
  and the jitted, member-`vmap`ped step that donates the state it replaces.

  With a `placement` the state is split over its mesh's `members` axis (each device holds and
  trains its own members, replay included), the step takes its `[M, ...]` inputs split the same
  way (`placement.put`) and returns the switches and metrics replicated, so every process reads
  all of them. Without one, everything stays on the default device.
  """
  init, step = make_member_fns(config, feature_dim)
  seeds, costs = member_seeds_and_costs(config)
  members = jax.jit(jax.vmap(init))(jnp.asarray(seeds, jnp.int32), jnp.asarray(costs, jnp.float32))
  vstep = jax.vmap(step, axis_name=MEMBER_AXIS)
  if placement is None:
    return members, jax.jit(vstep, donate_argnums=0)
  split, replicated = placement.members, placement.replicated
  # Every process computed the same initial state; each keeps the members of its devices.
  members = placement.put(members, split)
  return members, jax.jit(vstep, donate_argnums=0, in_shardings=(split,) * 7,
                          out_shardings=(split, replicated, replicated, replicated))



def make_add_pairs():
  """Builds the jitted, member-`vmap`ped `add(members, items [M, P, ...], valid [M, P])`: writes
  branch pairs to each member's replay where `valid` (a pair played for one member, or for all),
  donating the state it replaces."""

  def add(member: MemberState, items, valid):
    return member.replace(replay=replay_add(member.replay, items, valid))

  return jax.jit(jax.vmap(add), donate_argnums=0)
