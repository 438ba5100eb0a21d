"""Paired branch targets against exact values on the tabular diagnostic task."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from londi_jax.diagnostic.branches import TabularBranches
from londi_jax.diagnostic.task import random_switching_mdp
from londi_jax.switching.config import switcher_config
from londi_jax.switching.learner import SwitchBatch, init_learner, q_values
from londi_jax.switching.paired import (CALL, KEEP, PairedItem, make_paired_update, paired_errors,
                                        play_branch_pairs)

GAMMA, PRICE, HORIZON = 0.9, 0.05, 40


def _exact_q(mdp, rule, hold, horizon, price, gamma):
  """`[S, 2]` finite-horizon values of deciding `g` for `hold` steps, then following `rule`,
  by backward recursion on the marginal two-action MDP (no sampling)."""
  p, r = mdp.marginals()
  s = np.arange(mdp.num_states)
  v = [np.zeros(mdp.num_states)]  # v[k]: the rule's value with k steps left
  for _ in range(horizon):
    v.append(r[rule, s] - price * rule + gamma * (p[rule, s] * v[-1][None]).sum(-1))
  q = np.zeros((mdp.num_states, 2))
  for g in (KEEP, CALL):
    w = v[horizon - hold]
    for _ in range(hold):
      w = r[g] - price * g + gamma * p[g] @ w
    q[:, g] = w
  return q


@pytest.mark.parametrize("hold", [1, 3])
def test_paired_targets_converge_to_the_exact_q_of_the_continuation_rule(hold):
  mdp = random_switching_mdp(3, num_states=6, gamma=GAMMA)
  rule = np.random.default_rng(0).integers(0, 2, mdp.num_states)
  per_state = 3000
  states = np.repeat(np.arange(mdp.num_states), per_state)
  sim = TabularBranches(mdp, states, rule, HORIZON, seed=1)
  out = play_branch_pairs(sim, np.zeros(len(states), np.int64), hold=hold, horizon=HORIZON,
                          gamma=GAMMA, budget=0)
  y = out.targets(PRICE).reshape(mdp.num_states, per_state, 2)
  exact = _exact_q(mdp, rule, hold, HORIZON, PRICE, GAMMA)
  gap = y[..., CALL] - y[..., KEEP]
  se = gap.std(-1, ddof=1) / np.sqrt(per_state)
  np.testing.assert_array_less(np.abs(gap.mean(-1) - (exact[:, CALL] - exact[:, KEEP])),
                               4 * se + 1e-9)
  for g in (KEEP, CALL):
    se_g = y[..., g].std(-1, ddof=1) / np.sqrt(per_state)
    np.testing.assert_array_less(np.abs(y[..., g].mean(-1) - exact[:, g]), 4 * se_g + 1e-9)
  # Common random numbers: the paired gap varies far less than the gap of independent branches.
  independent = y[..., CALL] - np.roll(y[..., KEEP], 1, axis=-1)
  assert gap.var(-1).mean() < 0.8 * independent.var(-1).mean()
  # Where the two policies coincide (easy states), the one-step gap is exactly the price.
  easy = ~mdp.hard
  if hold == 1 and easy.any():
    np.testing.assert_allclose(gap[easy], -PRICE, atol=1e-12)


class _Recording(TabularBranches):
  """Records each step's states and actions-to-be of every branch."""

  def step(self, switches, live):
    self.trace.append((self.states.copy(), switches.copy()))
    return super().step(switches, live)


def test_branches_are_identical_until_the_first_step_the_policies_act_differently():
  mdp = random_switching_mdp(5, num_states=8, gamma=GAMMA)
  n = 400
  states = np.random.default_rng(2).integers(0, mdp.num_states, n)
  sim = _Recording(mdp, states, np.zeros(mdp.num_states, np.int64), 12, seed=3)
  sim.trace = []
  play_branch_pairs(sim, np.zeros(n, np.int64), hold=4, horizon=12, gamma=GAMMA, budget=0)
  diverged = np.zeros(n, bool)
  for t, (s, g) in enumerate(sim.trace):
    same_state = s[:n] == s[n:]
    np.testing.assert_array_equal(same_state | diverged, np.ones(n, bool))
    u = sim.uniforms[:n, t, 0]
    act = lambda probs: (np.cumsum(probs, -1) < u[:, None]).sum(-1)  # noqa: E731
    a_keep = act(mdp.policies[g[:n], s[:n]])
    a_call = act(mdp.policies[g[n:], s[n:]])
    diverged |= a_keep != a_call
  assert 0 < diverged.mean() < 1  # some pairs split, some never do


def test_every_branch_keeps_the_hard_budget():
  mdp = random_switching_mdp(1, num_states=5, gamma=GAMMA)
  budget, n = 2, 300
  remaining = np.arange(n) % (budget + 1)  # z in {0, 1, 2}
  always_call = np.ones((mdp.num_states, budget + 1), np.int64)
  sim = TabularBranches(mdp, np.arange(n) % mdp.num_states, always_call, 10, seed=4)
  out = play_branch_pairs(sim, remaining, hold=3, horizon=10, gamma=1.0, budget=budget)
  # With gamma = 1 the call counts are the numbers of calls made: at most z, and exactly z here,
  # since both branches' continuation always calls.
  np.testing.assert_array_equal(out.calls[:, KEEP], remaining)
  np.testing.assert_array_equal(out.calls[:, CALL], remaining)
  np.testing.assert_array_equal(out.callable, remaining > 0)
  # At z = 0 neither branch can call: the pair is two copies of the keep branch.
  zero = remaining == 0
  np.testing.assert_array_equal(out.returns[zero, KEEP], out.returns[zero, CALL])


def test_paired_errors_by_hand():
  q = jnp.array([[0.2, 0.5], [0.0, 0.0]])
  returns = jnp.array([[1.0, 1.0], [0.0, 1.0]])
  calls = jnp.array([[0.0, 3.0], [0.0, 1.0]])
  base, gap = paired_errors(q, returns, calls, jnp.array([1.0, 0.0]), 0.1)
  # Row 0: y_0 = 1, y_1 = 1 - 0.1 * 3 = 0.7; base 1 - 0.2 = 0.8; gap (0.7 - 1) - (0.5 - 0.2) = -0.6.
  # Row 1: y_0 = 0, base 0; its call branch could not call, so its gap has no target.
  np.testing.assert_allclose(base, [0.8, 0.0], atol=1e-6)
  np.testing.assert_allclose(gap, [-0.6, 0.0], atol=1e-6)


def test_paired_update_recovers_the_gap_under_common_noise():
  """Two states whose call gains are +0.3 and -0.2 before the price, under a common 0/1 noise
  ten times larger than the gains' spread: the learned gap matches each state's mean paired gap."""
  config = switcher_config()
  config.hidden_sizes = (16,)
  config.learning_rate = 3e-3
  config.cost = 0.05
  rng = np.random.default_rng(0)
  n = 4096
  state = rng.integers(0, 2, n)
  noise = rng.integers(0, 2, n) * 3.0  # the shared part of both branches' returns
  gain = np.where(state == 0, 0.3, -0.2)
  items = PairedItem(features=np.eye(2, dtype=np.float32)[state],
                     remaining=np.zeros(n, np.int32),
                     returns=np.stack([noise, noise + gain], -1).astype(np.float32),
                     calls=np.stack([np.zeros(n), np.ones(n)], -1).astype(np.float32),
                     callable=np.ones(n, np.float32))
  learner = init_learner(config, jax.random.key(0), 2)
  update = jax.jit(make_paired_update(config))
  for k in range(400):
    idx = rng.integers(0, n, 256)
    batch = SwitchBatch(transitions=jax.tree_util.tree_map(lambda x: x[idx], items),
                        constraint_value=jnp.zeros(()))
    learner, _ = update(learner, batch)
  q = q_values(config, learner.q_params, jnp.eye(2), jnp.zeros(2, jnp.int32))
  np.testing.assert_allclose(q[:, 1] - q[:, 0], [0.3 - 0.05, -0.2 - 0.05], atol=0.03)
