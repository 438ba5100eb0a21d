"""n-step switching transitions over held decisions, from a sliding window per row.

The switcher decides at a row's *decision steps* (every step, or every `m`-th step of an episode
when `switcher.hold = m`: a call then lasts `m` steps, so one decision moves the return by `m`
actions' worth and stands out of the noise of a sparse reward sooner). A decision `j` taken at
step `k_j` and held until the next decision gathers

    R_j = sum_i D_i r_{k_j + i},  C_j = sum_i D_i g_j,  E_j = prod_i discount_{k_j + i}

over its steps `i` (`D_0 = 1`, `D_{i+1} = D_i * discount_{k_j + i}`, `discount = gamma * (1 -
terminal)`). The n-step target (the n-step form of the
impulse-control target of docs/method.md, as in Rainbow's multi-step DQN, over decisions) of decision `j` is

    sum_{l<n} P_l (R_{j+l} - (c + lambda) C_{j+l})  +  P_n max_g' Q(s_{j+n}, g'),
    P_0 = 1,  P_{l+1} = P_l * E_{j+l}.

A terminal step zeroes every later term, so a row's window runs straight across episode
boundaries: each decision is completed `n` decisions later, by the state of that moment, whatever
episode the row is in by then. A transition carries the discounted reward and call sums and
`P_n`; the price is applied in the update, since `c + lambda` changes while training. With `n = 1`
and a decision every step this is the one-step transition `(r_k, g_k, discount_k)`.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct

from londi_jax.switching.learner import Transition


@struct.dataclass
class NStepWindow:
  """The last `n` decisions of `B` rows, oldest first: the first half of each transition and
  what its held steps have gathered so far."""

  features: jnp.ndarray  # [n, B, F]
  remaining: jnp.ndarray  # [n, B] int32
  switch: jnp.ndarray  # [n, B] int32
  reward: jnp.ndarray  # [n, B] float32, R_j so far
  calls: jnp.ndarray  # [n, B] float32, C_j so far
  discount: jnp.ndarray  # [n, B] float32, the discount product of the decision's steps so far
  filled: jnp.ndarray  # [B] int32, decisions pushed so far, capped at n
  executed: jnp.ndarray  # [B] int32, the switch carried out on the latest step

  @property
  def n(self) -> int:
    return self.switch.shape[0]


def nstep_init(n: int, num_rows: int, feature_dim: int) -> NStepWindow:
  """An empty window of `n >= 1` decisions over `num_rows` rows."""
  if n < 1:
    raise ValueError(f"switcher.n_step must be >= 1, got {n}")
  zeros = lambda *shape, dtype=jnp.float32: jnp.zeros(shape, dtype)
  return NStepWindow(features=zeros(n, num_rows, feature_dim),
                     remaining=zeros(n, num_rows, dtype=jnp.int32),
                     switch=zeros(n, num_rows, dtype=jnp.int32), reward=zeros(n, num_rows),
                     calls=zeros(n, num_rows), discount=zeros(n, num_rows),
                     filled=zeros(num_rows, dtype=jnp.int32),
                     executed=zeros(num_rows, dtype=jnp.int32))


def held_switch(window: NStepWindow) -> jnp.ndarray:
  """`[B]` the switch of each row's latest decision."""
  return window.switch[-1]


def nstep_push(window: NStepWindow, reward, discount, features, remaining, switch, decide=None,
               executed=None):
  """Adds the previous step (its `reward` and `discount` `[B]`, taken under each row's latest
  decision) to that decision, then, on the rows that `decide` (`[B]` bool; all rows when None),
  emits the transition of the oldest decision bootstrapped from this step's `features` `[B, F]`
  and `remaining` `[B]` and appends the new decision `(features, remaining, switch)`.
  `executed` `[B]` is the switch this step carries out (default `switch`; less where a hard
  budget masks a held call): the calls a decision pays for are the executed ones.

  Returns:
    `(window, transition, valid)`: the transition's leaves have a leading `[B]` axis; `valid`
    `[B]` marks the rows that decide and whose window held `n` decisions.
  """
  n = window.n
  if decide is None:
    decide = jnp.ones(switch.shape, bool)
  started = window.filled > 0  # [B] rows with a decision to add the previous step to
  gathered = jnp.where(started, window.discount[-1], 0.0)
  last_reward = window.reward[-1] + gathered * reward
  last_calls = window.calls[-1] + gathered * window.executed.astype(jnp.float32)
  last_discount = gathered * discount
  rewards = window.reward.at[-1].set(last_reward)
  calls = window.calls.at[-1].set(last_calls)
  discounts = window.discount.at[-1].set(last_discount)

  total_reward = jnp.zeros_like(reward)
  total_calls = jnp.zeros_like(reward)
  carried = jnp.ones_like(discount)  # P_l
  for l in range(n):
    total_reward = total_reward + carried * rewards[l]
    total_calls = total_calls + carried * calls[l]
    carried = carried * discounts[l]
  transition = Transition(
      features_tm1=window.features[0], remaining_tm1=window.remaining[0],
      switch_tm1=window.switch[0], reward_t=total_reward, discount_t=carried,
      features_t=features, remaining_t=remaining, calls_tm1=total_calls)
  valid = decide & (window.filled >= n)

  def shift(old, new):
    """Appends `new` `[B, ...]` on the deciding rows; the others keep `old` `[n, B, ...]`."""
    shifted = jnp.concatenate([old[1:], new[None].astype(old.dtype)], axis=0)
    mask = decide.reshape((1, -1) + (1,) * (old.ndim - 2))
    return jnp.where(mask, shifted, old)

  window = NStepWindow(
      features=shift(window.features, features), remaining=shift(window.remaining, remaining),
      switch=shift(window.switch, switch), reward=shift(rewards, jnp.zeros_like(reward)),
      calls=shift(calls, jnp.zeros_like(reward)),
      discount=shift(discounts, jnp.ones_like(discount)),
      filled=jnp.where(decide, jnp.minimum(window.filled + 1, n), window.filled),
      executed=jnp.asarray(switch if executed is None else executed, jnp.int32))
  return window, transition, valid
