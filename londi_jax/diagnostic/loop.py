"""Training and checking the switcher on the tabular diagnostic task.

The switcher learns from sampled transitions with the same network, replay, update and
exploration the real training uses; its greedy switching rule is then compared with the exact
solution of `solve_tabular` (docs/method.md: the exact solver). Several members (seeds and
costs) train at once under `vmap`.

Its member state and step are its own rather than `training.members`', for two reasons. The
diagnostic's step owns its environment, a jitted sampler of the MDP, so `run_chunk` scans
`log_every` acting steps on device in one `lax.scan`; the training step is handed `phi(s)`, the
rewards and the discounts of host text environments one acting step at a time. And the targets
differ: here each step stores its one-step transition at once, with the true next state even where
an episode is cut at `episode_length` (the task has no end; the cuts only restart episodes for
coverage, with a random remaining budget under `exploring_starts`, so the transition bootstraps
through the cut), whereas the training step completes a decision's n-step transition on a later
call from the `phi(s)` the host hands in, which after an episode's end belongs to the next episode.
Both are built from the same parts: `q_values`, `init_learner`, `make_train_many`, the replay, the
budget mask and `switching.acting`.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct

from londi_jax.runtime import Placement, initialize, make_placement
from londi_jax.switching.replay import ReplayState, replay_add, replay_init
from londi_jax.switching import budget as budget_lib
from londi_jax.switching.acting import (epsilon_greedy_switch, greedy_under_budget,
                                        linear_epsilon)
from londi_jax.switching.config import member_seeds_and_costs
from londi_jax.switching.learner import (LearnerState, Transition, example_transition,
                                         init_learner, make_train_many, q_values)
from londi_jax.switching.tabular import evaluate_switching_rule, solve_tabular
from londi_jax.diagnostic.task import SwitchingMDP, make_sampler, random_switching_mdp


@struct.dataclass
class ActorState:
  """The batch of diagnostic environments the switcher acts in."""

  states: jnp.ndarray  # [B] int32
  remaining: jnp.ndarray  # [B] int32, remaining large calls z
  t: jnp.ndarray  # [B] int32, steps into the episode
  key: jax.Array
  steps: jnp.ndarray  # [] acting steps so far


@struct.dataclass
class MemberState:
  """One diagnostic switcher and its own batch of MDP episodes (not `training.members.MemberState`,
  whose environments live on the host; see the module docstring)."""

  learner: LearnerState
  replay: ReplayState
  actor: ActorState


def make_mdp(config: ml_collections.ConfigDict) -> SwitchingMDP:
  return random_switching_mdp(config.seed, config.num_states, config.num_actions,
                              config.hard_fraction, gamma=config.gamma)


def _reset(key, config, num_states, shape, budget):
  state_key, budget_key = jax.random.split(key)
  states = jax.random.randint(state_key, shape, 0, num_states)
  if budget > 0 and config.exploring_starts:
    remaining = jax.random.randint(budget_key, shape, 0, budget + 1)
  else:
    remaining = jnp.full(shape, budget, jnp.int32)
  return states.astype(jnp.int32), remaining.astype(jnp.int32)


def make_member_fns(config: ml_collections.ConfigDict, mdp: SwitchingMDP):
  """Builds `(init(seed, cost) -> MemberState, run_chunk(MemberState) -> (MemberState, metrics))`
  for one member; `run_chunk` scans `config.log_every` acting steps, each followed by `U`
  updates every `k` steps once replay holds `min_replay` transitions."""
  sw = config.switcher
  if int(sw.n_step) != 1 or int(sw.hold) != 1 or sw.share_replay:
    raise ValueError("the diagnostic trains one-step targets on per-step decisions with a replay "
                     f"per member; got switcher.n_step={sw.n_step}, hold={sw.hold}, "
                     f"share_replay={sw.share_replay}")
  budget = int(sw.budget)
  num_states = mdp.num_states
  num_envs = int(config.num_envs)
  sample = make_sampler(mdp)
  train_many = make_train_many(sw, int(sw.num_updates))
  features = lambda s: jax.nn.one_hot(s, num_states)

  def init(seed, cost):
    learner_key, actor_key = jax.random.split(jax.random.PRNGKey(seed))
    reset_key, actor_key = jax.random.split(actor_key)
    states, remaining = _reset(reset_key, config, num_states, (num_envs,), budget)
    return MemberState(
        learner=init_learner(sw, learner_key, num_states, cost),
        replay=replay_init(example_transition(num_states), int(sw.replay_capacity)),
        actor=ActorState(states=states, remaining=remaining, t=jnp.zeros(num_envs, jnp.int32),
                         key=actor_key, steps=jnp.zeros((), jnp.int32)))

  def act_step(member: MemberState, _):
    learner, replay, actor = member.learner, member.replay, member.actor
    act_key, env_key, reset_key = jax.random.split(jax.random.fold_in(actor.key, actor.steps), 3)
    phi = features(actor.states)  # [B, S]
    q = q_values(sw, learner.q_params, phi, actor.remaining)  # [B, 2]
    allowed = budget_lib.allowed_switches(actor.remaining, budget)
    epsilon = linear_epsilon(actor.steps, sw.epsilon_start, sw.epsilon_end,
                             sw.epsilon_decay_steps)
    switches = epsilon_greedy_switch(q, allowed, epsilon, act_key)
    greedy = greedy_under_budget(q, actor.remaining, budget)
    rewards, next_states = sample(env_key, actor.states, switches)
    next_remaining = budget_lib.spend(actor.remaining, switches, budget)
    replay = replay_add(replay, Transition(
        features_tm1=phi, remaining_tm1=actor.remaining, switch_tm1=switches, reward_t=rewards,
        discount_t=jnp.full((num_envs,), config.gamma, jnp.float32),
        features_t=features(next_states), remaining_t=next_remaining,
        calls_tm1=switches.astype(jnp.float32)))
    # Episodes are cut at `episode_length` for coverage only; the task is infinite-horizon, so
    # the stored transition bootstraps through the cut.
    t = actor.t + 1
    done = t >= config.episode_length
    reset_states, reset_remaining = _reset(reset_key, config, num_states, (num_envs,), budget)
    actor = actor.replace(
        states=jnp.where(done, reset_states, next_states),
        remaining=jnp.where(done, reset_remaining, next_remaining),
        t=jnp.where(done, 0, t), steps=actor.steps + 1)
    measured = jnp.mean(greedy.astype(jnp.float32))
    if sw.lagrangian.measure == "calls_per_episode":
      measured = measured * config.episode_length
    ready = (replay.size >= sw.min_replay) & (actor.steps % sw.train_every == 0)
    learner, train_metrics = train_many(learner, replay, measured, ready)
    metrics = dict(train_metrics, call_rate=jnp.mean(switches.astype(jnp.float32)),
                   greedy_call_rate=jnp.mean(greedy.astype(jnp.float32)), epsilon=epsilon,
                   reward=jnp.mean(rewards), trained=ready.astype(jnp.float32))
    return MemberState(learner=learner, replay=replay, actor=actor), metrics

  def run_chunk(member: MemberState):
    member, metrics = jax.lax.scan(act_step, member, None, length=int(config.log_every))
    return member, jax.tree_util.tree_map(lambda x: x[-1], metrics)

  return init, run_chunk


def train_members(config: ml_collections.ConfigDict, mdp: SwitchingMDP, seeds: Sequence[int],
                  costs: Sequence[float], log: Callable[[str], None] | None = print,
                  placement: Placement | None = None):
  """Trains one switcher per `(seed, cost)` pair together, `vmap`ped over a member axis.

  Args:
    placement: where the members live: split over its mesh's `members` axis (each device runs
      its own members' chunks, replay included), the metrics replicated. None: the default
      device.

  Returns:
    The final `MemberState` with a leading member axis.
  """
  init, run_chunk = make_member_fns(config, mdp)
  members = jax.vmap(init)(jnp.asarray(seeds, jnp.int32), jnp.asarray(costs, jnp.float32))
  if placement is None:
    run = jax.jit(jax.vmap(run_chunk), donate_argnums=0)
  else:
    members = placement.put(members, placement.members)
    run = jax.jit(jax.vmap(run_chunk), donate_argnums=0, in_shardings=placement.members,
                  out_shardings=(placement.members, placement.replicated))
  num_chunks = -(-int(config.train_steps) // int(config.log_every))
  start = time.perf_counter()
  for chunk in range(num_chunks):
    members, metrics = run(members)
    if log is not None:
      m = jax.tree_util.tree_map(lambda x: np.asarray(x).mean(), metrics)
      steps = (chunk + 1) * int(config.log_every)
      log(f"step {steps:>6d}/{num_chunks * int(config.log_every)}  eps {m['epsilon']:.3f}  "
          f"loss {m['loss']:.4f}  call_rate {m['call_rate']:.3f}  "
          f"greedy {m['greedy_call_rate']:.3f}  lambda {m['lagrange']:.4f}  "
          f"({steps / (time.perf_counter() - start):.0f} steps/s)")
  return members


def greedy_rule(config: ml_collections.ConfigDict, q_params, num_states: int) -> np.ndarray:
  """The learned greedy switch at every state `[S]`, or at every `(s, z)` `[S, n + 1]` under a
  budget."""
  sw = config.switcher
  budget = int(sw.budget)
  levels = jnp.arange(max(budget, 0) + 1, dtype=jnp.int32)  # [Z]
  states = jnp.arange(num_states)
  phi = jnp.broadcast_to(jax.nn.one_hot(states, num_states)[:, None],
                         (num_states, levels.size, num_states))  # [S, Z, S]
  remaining = jnp.broadcast_to(levels[None], (num_states, levels.size))  # [S, Z]
  q = q_values(sw, q_params, phi, remaining)
  rule = np.asarray(greedy_under_budget(q, remaining, budget))
  return rule if budget > 0 else rule[:, 0]


def rollout_calls(config: ml_collections.ConfigDict, mdp: SwitchingMDP, q_params,
                  key: jax.Array, cost: float) -> tuple[np.ndarray, np.ndarray]:
  """Greedy evaluation episodes from the start distribution with the full budget; returns are
  net of `cost` per large call.

  Returns:
    `(calls, returns)`, each `[eval_episodes]`: large calls and discounted return per episode.
  """
  sw = config.switcher
  budget = int(sw.budget)
  num_states = mdp.num_states
  episodes = int(config.eval_episodes)
  sample = make_sampler(mdp)

  @jax.jit
  def run(key):
    start_key, key = jax.random.split(key)
    states = jax.random.categorical(start_key, jnp.log(jnp.asarray(mdp.start)), shape=(episodes,))
    remaining = jnp.full((episodes,), budget, jnp.int32)

    def step(carry, t):
      states, remaining, calls, returns = carry
      q = q_values(sw, q_params, jax.nn.one_hot(states, num_states), remaining)
      g = greedy_under_budget(q, remaining, budget)
      rewards, next_states = sample(jax.random.fold_in(key, t), states, g)
      returns = returns + config.gamma**t * (rewards - cost * g)
      return (next_states, budget_lib.spend(remaining, g, budget), calls + g, returns), None

    init = (states.astype(jnp.int32), remaining, jnp.zeros(episodes, jnp.int32),
            jnp.zeros(episodes, jnp.float32))
    (_, _, calls, returns), _ = jax.lax.scan(step, init, jnp.arange(config.episode_length))
    return calls, returns

  calls, returns = run(key)
  return np.asarray(calls), np.asarray(returns)


def evaluate_member(config: ml_collections.ConfigDict, mdp: SwitchingMDP, learner: LearnerState,
                    key: jax.Array) -> dict:
  """Compares one trained switcher with the exact solution at its price `c + lambda`.

  `switch_agreement` counts the decision points (every state; every `(s, z)` with `z >= 1` under a
  budget) where the learned greedy switch is optimal for the exact `Q*` (a switch whose exact
  value is within `config.tie_tolerance` of the best counts as optimal). `value_gap` is
  `(V*(mu) - V^learned(mu)) / |V*(mu)|` at the start distribution `mu` with the full budget,
  both computed exactly.
  """
  budget = int(config.switcher.budget)
  p, r = mdp.marginals()
  price = float(learner.cost) + float(learner.lagrange)
  budget_arg = budget if budget > 0 else None
  q_star = solve_tabular(p, r, price, config.gamma, budget=budget_arg)
  rule = greedy_rule(config, learner.q_params, mdp.num_states)
  chosen = np.take_along_axis(q_star, rule[..., None], axis=-1)[..., 0]
  optimal = chosen >= q_star.max(-1) - config.tie_tolerance
  decisions = optimal[:, 1:] if budget > 0 else optimal
  v_star = q_star.max(-1)
  v_learned = evaluate_switching_rule(p, r, price, config.gamma, rule, budget=budget_arg)
  if budget > 0:
    v_star, v_learned = v_star[:, budget], v_learned[:, budget]
  exact, learned = float(mdp.start @ v_star), float(mdp.start @ v_learned)
  calls, returns = rollout_calls(config, mdp, learner.q_params, key, float(learner.cost))
  exact_rule = np.argmax(q_star, -1)
  exact_decisions = exact_rule[:, 1:] if budget > 0 else exact_rule
  return {
      "switch_agreement": float(decisions.mean()),
      "value_gap": (exact - learned) / abs(exact),
      "budget_violations": int((calls > budget).sum()) if budget > 0 else 0,
      "exact_value": exact, "learned_value": learned,
      "exact_call_fraction": float(exact_decisions.mean()),
      "learned_call_fraction": float((rule[:, 1:] if budget > 0 else rule).mean()),
      "eval_call_rate": float(calls.mean() / config.episode_length),
      "max_calls_per_episode": int(calls.max()), "eval_return": float(returns.mean()),
      "price": price, "lagrange": float(learner.lagrange),
      "num_decisions": int(decisions.size),
  }


def run_diagnostic(config: ml_collections.ConfigDict, log=print) -> dict:
  """Trains the configured members on the diagnostic MDP and evaluates each against the truth.

  The members are split over the devices of `config.runtime` (`londi_jax.runtime`; with
  `runtime.distributed`, over every process's), and every process evaluates them all.
  """
  runtime = config.get("runtime")
  initialize(runtime)
  mdp = make_mdp(config)
  seeds, costs = member_seeds_and_costs(config)
  placement = make_placement(runtime, len(seeds))
  members = train_members(config, mdp, seeds, costs, log=log, placement=placement)
  learners = placement.fetch(members.learner)
  results = []
  for m, seed in enumerate(seeds):
    learner = jax.tree_util.tree_map(lambda x: x[m], learners)
    results.append(dict(evaluate_member(config, mdp, learner, jax.random.PRNGKey(seed + 10_000)),
                        seed=seed, cost=costs[m]))
  if len(results) == 1:
    return results[0]
  summary = {k: float(np.mean([r[k] for r in results])) for k in ("switch_agreement", "value_gap")}
  summary["budget_violations"] = int(sum(r["budget_violations"] for r in results))
  summary["members"] = results
  return summary
