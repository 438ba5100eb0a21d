"""Paired branches on the tabular diagnostic task, with common random numbers.

`TabularBranches` is a `switching.paired.BranchSimulator` over a `SwitchingMDP`: each branch
draws its primitive action by inverse CDF of the acting policy at a uniform, and its next state by
inverse CDF of `P[s, a]` at a second uniform; both uniforms depend only on the pair and the step,
so the two branches of a pair take the same action and reach the same state wherever the two
policies agree. It lets the paired estimator be checked against the exact values of
`switching.tabular`.
"""

from __future__ import annotations

import numpy as np

from londi_jax.diagnostic.task import SwitchingMDP


def _inverse_cdf(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
  """Index `i` with `cdf[i - 1] <= u < cdf[i]` per row of `probs` `[K, A]`, `u` `[K]`."""
  cdf = np.cumsum(probs, axis=-1)
  return np.minimum((cdf < (u * cdf[:, -1])[:, None]).sum(-1), probs.shape[-1] - 1)


class TabularBranches:
  """`N` branch pairs on `mdp`, started at `states`, continued by a fixed switching `rule`.

  Args:
    mdp: the diagnostic task.
    states: `[N]` decision-point states.
    rule: the continuation rule, `[S]` switches (or `[S, n + 1]`, indexed by remaining calls).
    horizon: steps of random numbers drawn per pair.
    seed: of the random numbers.
  """

  def __init__(self, mdp: SwitchingMDP, states: np.ndarray, rule: np.ndarray, horizon: int,
               seed: int):
    n = len(states)
    self.mdp = mdp
    self.rule = np.asarray(rule, np.int64)
    self.states = np.tile(np.asarray(states, np.int64), 2)  # [2N]
    self.uniforms = np.tile(np.random.default_rng(seed).random((n, horizon, 2)), (2, 1, 1))
    self.t = 0

  def continuation(self, live: np.ndarray, remaining: np.ndarray) -> np.ndarray:
    if self.rule.ndim == 1:
      return self.rule[self.states]
    return self.rule[self.states, np.clip(remaining, 0, self.rule.shape[1] - 1)]

  def step(self, switches: np.ndarray, live: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = self.uniforms[:, self.t]  # [2N, 2]
    actions = _inverse_cdf(self.mdp.policies[switches, self.states], u[:, 0])
    rewards = self.mdp.rewards[self.states, actions]
    self.states = _inverse_cdf(self.mdp.transitions[self.states, actions], u[:, 1])
    self.t += 1
    # The task never ends (the horizon cuts it); every call costs one unit of the price.
    return rewards, np.zeros(len(rewards), bool), switches.astype(np.float64)
