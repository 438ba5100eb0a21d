"""A tabular diagnostic task for the switcher: a random finite MDP with two fixed stochastic
policies, the large one better in some states (docs/method.md: the exact solver).

The MDP has primitive actions with transitions `P[s, a, s']` and rewards `R[s, a]`. The large
policy puts most of its mass on a good action (one step of lookahead on the uniform policy's
values); the small policy matches it in "easy" states and acts uniformly in "hard" ones. Marginalised
over each policy's actions this gives the two-action switching MDP `(p[g], r[g])` that
`solve_tabular` solves exactly, while the learner only sees sampled transitions.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class SwitchingMDP:
  """A finite MDP with a small and a large policy; all arrays float64 numpy."""

  transitions: np.ndarray  # [S, A, S]
  rewards: np.ndarray  # [S, A]
  policies: np.ndarray  # [2, S, A]: pi_small, pi_large
  start: np.ndarray  # [S]
  hard: np.ndarray  # [S] bool: states where the policies differ

  @property
  def num_states(self) -> int:
    return self.rewards.shape[0]

  def marginals(self) -> tuple[np.ndarray, np.ndarray]:
    """`(p, r)`: `p[g, s, s'] = sum_a pi_g(a|s) P[s, a, s']`, `r[g, s] = sum_a pi_g(a|s) R[s, a]`."""
    p = np.einsum("gsa,sat->gst", self.policies, self.transitions)
    r = np.einsum("gsa,sa->gs", self.policies, self.rewards)
    return p, r


def random_switching_mdp(seed: int, num_states: int, num_actions: int = 3,
                         hard_fraction: float = 0.4, large_focus: float = 0.9,
                         gamma: float = 0.9, concentration: float = 0.3) -> SwitchingMDP:
  """Draws a diagnostic MDP.

  Args:
    seed: numpy seed; the same seed gives the same MDP.
    num_states: `S`.
    num_actions: primitive actions per state.
    hard_fraction: fraction of states where the small policy acts uniformly.
    large_focus: the large policy's probability of its good action.
    gamma: discount used to pick the good action by one-step lookahead.
    concentration: Dirichlet concentration of each `P[s, a]` (small is sparse).
  """
  rng = np.random.default_rng(seed)
  transitions = rng.dirichlet(np.full(num_states, concentration), size=(num_states, num_actions))
  rewards = rng.uniform(0.0, 1.0, size=(num_states, num_actions))
  uniform = np.full((num_states, num_actions), 1.0 / num_actions)
  p_uniform = np.einsum("sa,sat->st", uniform, transitions)
  v_uniform = np.linalg.solve(np.eye(num_states) - gamma * p_uniform, (uniform * rewards).sum(-1))
  good = np.argmax(rewards + gamma * transitions @ v_uniform, axis=-1)  # [S]
  large = np.full((num_states, num_actions), (1.0 - large_focus) / (num_actions - 1))
  large[np.arange(num_states), good] = large_focus
  hard = rng.random(num_states) < hard_fraction
  small = np.where(hard[:, None], uniform, large)
  return SwitchingMDP(transitions=transitions, rewards=rewards,
                      policies=np.stack([small, large]),
                      start=np.full(num_states, 1.0 / num_states), hard=hard)


def make_sampler(mdp: SwitchingMDP):
  """Builds `sample(key, states, switches) -> (rewards, next_states)` for batches `[B]`: the policy
  `g` picks a primitive action, the MDP draws the next state."""
  log_policies = jnp.log(jnp.asarray(mdp.policies, jnp.float32))  # [2, S, A]
  log_transitions = jnp.log(jnp.asarray(mdp.transitions, jnp.float32))  # [S, A, S]
  rewards = jnp.asarray(mdp.rewards, jnp.float32)  # [S, A]

  def sample(key: jax.Array, states: jnp.ndarray, switches: jnp.ndarray):
    action_key, next_key = jax.random.split(key)
    actions = jax.random.categorical(action_key, log_policies[switches, states])  # [B]
    next_states = jax.random.categorical(next_key, log_transitions[states, actions])  # [B]
    return rewards[states, actions], next_states.astype(jnp.int32)

  return sample
