"""The switcher's learner: its state, and the jitted update built from a static config.

`make_update(config)` returns `update(state, batch) -> (state, metrics)`, a pure function to be
`jit`ted and, for several switchers at once, `vmap`ped over a leading member axis (members may
differ in seed and in cost `c`, which live in the state, not in the config).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from londi_jax.gradients import gradient_step
from londi_jax.switching.replay import ReplayState, replay_sample
from londi_jax.switching import budget as budget_lib
from londi_jax.switching.loss import batched_td_error, huber
from londi_jax.switching.network import SwitchQNetwork


@struct.dataclass
class Transition:
  """One switching transition `(phi, z, g, r, discount, phi', z')`; leaves gain a leading batch
  axis in replay and batches. An n-step transition (`switching.nstep`) carries the discounted sums
  of its `n` rewards and calls and the discount product."""

  features_tm1: jnp.ndarray  # [F]
  remaining_tm1: jnp.ndarray  # [] int32, remaining large calls z_tm1
  switch_tm1: jnp.ndarray  # [] int32, g_tm1
  reward_t: jnp.ndarray  # [] float32, environment reward (before the price of calls)
  discount_t: jnp.ndarray  # [] float32, gamma * (1 - terminal_t)
  features_t: jnp.ndarray  # [F]
  remaining_t: jnp.ndarray  # [] int32
  calls_tm1: jnp.ndarray  # [] float32, large calls (g_tm1; discounted sum over n-step's n steps)


@struct.dataclass
class SwitchBatch:
  """A batch of transitions and the measured constraint value (call rate or calls per episode of
  the current policy) that drives the Lagrange multiplier; ignored without a Lagrangian budget."""

  transitions: Transition
  constraint_value: jnp.ndarray


@struct.dataclass
class LearnerState:
  """Everything that changes while a switcher trains."""

  q_params: dict
  target_params: dict
  opt_state: optax.OptState
  lagrange: jnp.ndarray  # [] the multiplier lambda >= 0
  lagrange_opt_state: optax.OptState
  cost: jnp.ndarray  # [] the price c of one large-LM call, per member
  step: jnp.ndarray  # [] number of updates so far
  rng: jax.Array  # base key; per-update keys are fold_in(rng, step)


def example_transition(feature_dim: int) -> Transition:
  """A zero transition with the shapes and dtypes replay stores."""
  return Transition(
      features_tm1=jnp.zeros((feature_dim,), jnp.float32),
      remaining_tm1=jnp.zeros((), jnp.int32), switch_tm1=jnp.zeros((), jnp.int32),
      reward_t=jnp.zeros((), jnp.float32), discount_t=jnp.zeros((), jnp.float32),
      features_t=jnp.zeros((feature_dim,), jnp.float32), remaining_t=jnp.zeros((), jnp.int32),
      calls_tm1=jnp.zeros((), jnp.float32))


def make_network(config: ml_collections.ConfigDict) -> SwitchQNetwork:
  return SwitchQNetwork(hidden_sizes=tuple(config.hidden_sizes), use_budget=config.budget > 0)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with global-norm clipping; the rate decays linearly to `learning_rate_end` over
  `decay_updates` updates when that is positive."""
  learning_rate = config.learning_rate
  if config.decay_updates > 0:
    learning_rate = optax.linear_schedule(config.learning_rate, config.learning_rate_end,
                                          config.decay_updates)
  return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(learning_rate))


def q_values(config: ml_collections.ConfigDict, params, features: jnp.ndarray,
             remaining: jnp.ndarray) -> jnp.ndarray:
  """`Q(s, .)` `[..., 2]` for features `[..., F]` and remaining calls `[...]`."""
  fraction = budget_lib.budget_fraction(remaining, config.budget)
  return make_network(config).apply({"params": params}, features, fraction)


def init_learner(config: ml_collections.ConfigDict, key: jax.Array, feature_dim: int,
                 cost: float | jnp.ndarray | None = None) -> LearnerState:
  """A fresh learner; `cost` defaults to `config.cost`."""
  init_key, rng = jax.random.split(key)
  params = make_network(config).init(
      init_key, jnp.zeros((1, feature_dim), jnp.float32), jnp.ones((1,), jnp.float32))["params"]
  lagrange = jnp.asarray(config.lagrangian.init if config.lagrangian.enabled else 0.0, jnp.float32)
  return LearnerState(
      # A copy, so the two never share a buffer that a donating step would free twice.
      q_params=params, target_params=jax.tree_util.tree_map(jnp.copy, params),
      opt_state=make_optimizer(config).init(params), lagrange=lagrange,
      lagrange_opt_state=budget_lib.lagrange_optimizer(config.lagrangian.learning_rate).init(
          lagrange),
      cost=jnp.asarray(config.cost if cost is None else cost, jnp.float32),
      step=jnp.zeros((), jnp.int32), rng=rng)


def make_finish(config: ml_collections.ConfigDict):
  """Builds `finish(state, q_params, opt_state, constraint_value) -> state`, what every update does
  after its gradient step: the target network follows Polyak averaging (`tau`) or a periodic copy
  (`target_period`), and the multiplier takes one projected dual-ascent step when the Lagrangian
  budget is on."""
  lagrange_opt = budget_lib.lagrange_optimizer(config.lagrangian.learning_rate)
  use_lagrangian = bool(config.lagrangian.enabled)
  target_update = config.target_update
  if target_update not in ("polyak", "periodic"):
    raise ValueError(f"switcher.target_update must be 'polyak' or 'periodic', got {target_update!r}")

  def finish(state: LearnerState, q_params, opt_state, constraint_value) -> LearnerState:
    step = state.step + 1
    if target_update == "polyak":
      target_params = optax.incremental_update(q_params, state.target_params, config.tau)
    else:
      target_params = optax.periodic_update(q_params, state.target_params, step,
                                            config.target_period)
    lagrange, lagrange_opt_state = state.lagrange, state.lagrange_opt_state
    if use_lagrangian:
      lagrange, lagrange_opt_state = budget_lib.lagrange_step(
          lagrange, lagrange_opt_state, constraint_value, config.lagrangian.target, lagrange_opt)
    return state.replace(q_params=q_params, target_params=target_params, opt_state=opt_state,
                         lagrange=lagrange, lagrange_opt_state=lagrange_opt_state, step=step)

  return finish


def make_update(config: ml_collections.ConfigDict):
  """Builds `update(state, batch) -> (state, metrics)`: one step of deep impulse-control Q-learning.

  The loss is the Huber loss of the double-Q TD error of `switching.loss` with price
  `c + lambda`; then `make_finish`'s target-network and multiplier steps.
  """
  network = make_network(config)
  optimizer = make_optimizer(config)
  finish = make_finish(config)
  hard_budget = int(config.budget)
  double_q = bool(config.double_q)
  delta = float(config.huber_delta)

  def apply(params, features, remaining):
    return network.apply({"params": params}, features,
                         budget_lib.budget_fraction(remaining, hard_budget))

  def update(state: LearnerState, batch: SwitchBatch):
    tr = batch.transitions
    price = state.cost + state.lagrange
    allowed_t = budget_lib.allowed_switches(tr.remaining_t, hard_budget)  # [N, 2]
    q_t_value = apply(state.target_params, tr.features_t, tr.remaining_t)  # [N, 2]

    def loss_fn(params):
      q_tm1 = apply(params, tr.features_tm1, tr.remaining_tm1)  # [N, 2]
      q_t_selector = (jax.lax.stop_gradient(apply(params, tr.features_t, tr.remaining_t))
                      if double_q else q_t_value)
      td = batched_td_error(q_tm1, tr.switch_tm1, tr.reward_t, price, tr.discount_t, q_t_value,
                            q_t_selector, allowed_t, calls_tm1=tr.calls_tm1)
      return jnp.mean(huber(td, delta)), (td, q_tm1)

    loss, (td, q_tm1), q_params, opt_state = gradient_step(
        loss_fn, state.q_params, state.opt_state, optimizer)
    new_state = finish(state, q_params, opt_state, batch.constraint_value)
    metrics = {
        "loss": loss, "td_abs": jnp.mean(jnp.abs(td)), "q_mean": jnp.mean(q_tm1),
        "q_gap": jnp.mean(q_tm1[:, 1] - q_tm1[:, 0]), "lagrange": new_state.lagrange,
        "batch_call_rate": jnp.mean(tr.switch_tm1.astype(jnp.float32)),
    }
    return new_state, metrics

  return update


def make_train_many(config: ml_collections.ConfigDict, num_updates: int, update=None):
  """Builds `train_many(state, replay, constraint_value, ready=True) -> (state, metrics)`:
  `num_updates` updates in one `lax.scan`, each on a fresh uniform sample of `config.batch_size`
  transitions (sampling key `fold_in(state.rng, state.step)`), metrics averaged over the updates.
  A traced `ready` flag runs them under `lax.cond`: when false the state comes back unchanged with
  zero metrics (acting loops train only every `k` steps, once replay holds `min_replay`).
  `update` defaults to `make_update(config)`; any update over the replay's item type works."""
  update = update or make_update(config)
  batch_size = int(config.batch_size)

  def run(state: LearnerState, replay: ReplayState, constraint_value: jnp.ndarray):
    def body(state, _):
      key = jax.random.fold_in(state.rng, state.step)
      batch = SwitchBatch(transitions=replay_sample(replay, key, batch_size),
                          constraint_value=jnp.asarray(constraint_value, jnp.float32))
      return update(state, batch)

    state, metrics = jax.lax.scan(body, state, None, length=num_updates)
    return state, jax.tree_util.tree_map(jnp.mean, metrics)

  def skip(state, replay, constraint_value):
    metrics = jax.eval_shape(run, state, replay, constraint_value)[1]
    return state, jax.tree_util.tree_map(lambda m: jnp.zeros(m.shape, m.dtype), metrics)

  def train_many(state: LearnerState, replay: ReplayState, constraint_value: jnp.ndarray,
                 ready: jnp.ndarray | bool = True):
    if ready is True:
      return run(state, replay, constraint_value)
    return jax.lax.cond(ready, run, skip, state, replay, constraint_value)

  return train_many
