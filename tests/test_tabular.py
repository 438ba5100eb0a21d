"""`solve_tabular` and `evaluate_switching_rule` against brute-force enumeration of every
deterministic switching rule, evaluated on an explicitly built (augmented) Markov chain."""

import itertools

import numpy as np
import pytest

from londi_jax.switching import evaluate_switching_rule, solve_tabular


def _random_problem(seed, num_states):
  rng = np.random.default_rng(seed)
  p = rng.dirichlet(np.full(num_states, 0.5), size=(2, num_states))
  r = rng.uniform(0, 1, size=(2, num_states))
  r[1] += rng.uniform(0, 0.3, size=num_states)  # the large policy is better on average
  return p, r


def _chain_value(p, r, cost, gamma, rule, budget):
  """Value of a rule on the chain over `(s, z)`, built as one matrix, independent of the solver."""
  num_states = p.shape[1]
  levels = 1 if budget is None else budget + 1
  index = lambda s, z: s * levels + z
  size = num_states * levels
  trans = np.zeros((size, size))
  reward = np.zeros(size)
  for s in range(num_states):
    for z in range(levels):
      g = rule[s] if budget is None else (rule[s][z] if z > 0 else 0)
      z_next = z if budget is None else z - g
      reward[index(s, z)] = r[g, s] - cost[s] * g
      for s2 in range(num_states):
        trans[index(s, z), index(s2, z_next)] += p[g, s, s2]
  v = np.linalg.solve(np.eye(size) - gamma * trans, reward)
  return v.reshape(num_states, levels)


def _brute_force(p, r, cost, gamma, budget):
  num_states = p.shape[1]
  cost = np.broadcast_to(np.asarray(cost, float), (num_states,))
  if budget is None:
    rules = [np.array(bits) for bits in itertools.product([0, 1], repeat=num_states)]
  else:
    rules = [np.array(bits).reshape(num_states, budget)
             for bits in itertools.product([0, 1], repeat=num_states * budget)]
    rules = [np.concatenate([np.zeros((num_states, 1), int), b], axis=1) for b in rules]
  values = [_chain_value(p, r, cost, gamma, rule, budget) for rule in rules]
  v_star = np.max(values, axis=0)  # an optimal rule dominates every other in every state
  if budget is None:
    v_star = v_star[:, 0]
    return np.stack([r[0] + gamma * p[0] @ v_star,
                     r[1] - cost + gamma * p[1] @ v_star], -1), rules, values
  q = np.empty((num_states, budget + 1, 2))
  q[:, :, 0] = r[0][:, None] + gamma * p[0] @ v_star
  q[:, 0, 1] = -np.inf
  q[:, 1:, 1] = (r[1] - cost)[:, None] + gamma * p[1] @ v_star[:, :-1]
  return q, rules, values


@pytest.mark.parametrize("seed, num_states, cost, gamma", [
    (0, 4, 0.05, 0.9), (1, 5, 0.2, 0.95), (2, 3, [0.0, 0.3, 0.1], 0.5), (3, 4, 0.0, 0.99)])
def test_solve_tabular_matches_brute_force(seed, num_states, cost, gamma):
  p, r = _random_problem(seed, num_states)
  expected, _, _ = _brute_force(p, r, cost, gamma, None)
  np.testing.assert_allclose(solve_tabular(p, r, cost, gamma), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed, num_states, budget, cost", [
    (0, 3, 2, 0.05), (1, 2, 3, 0.1), (2, 3, 1, [0.2, 0.0, 0.05]), (4, 4, 2, 0.0)])
def test_solve_tabular_with_budget_matches_brute_force(seed, num_states, budget, cost):
  p, r = _random_problem(seed, num_states)
  expected, _, _ = _brute_force(p, r, cost, 0.9, budget)
  q = solve_tabular(p, r, cost, 0.9, budget=budget)
  assert q.shape == (num_states, budget + 1, 2)
  assert np.isneginf(q[:, 0, 1]).all()
  np.testing.assert_allclose(q, expected, rtol=1e-9, atol=1e-9)


def test_budget_values_grow_with_calls_and_approach_the_unbudgeted_optimum():
  p, r = _random_problem(5, 4)
  q_free = solve_tabular(p, r, 0.05, 0.8)
  v = solve_tabular(p, r, 0.05, 0.8, budget=60).max(-1)  # [S, 61]
  assert (np.diff(v, axis=1) >= -1e-12).all()
  np.testing.assert_allclose(v[:, -1], q_free.max(-1), atol=1e-4)


@pytest.mark.parametrize("budget", [None, 2])
def test_evaluate_switching_rule_matches_the_explicit_chain(budget):
  p, r = _random_problem(6, 3)
  cost = np.full(3, 0.1)
  _, rules, values = _brute_force(p, r, cost, 0.9, budget)
  for rule, value in zip(rules, values):
    got = evaluate_switching_rule(p, r, cost, 0.9, rule, budget=budget)
    np.testing.assert_allclose(got, value[:, 0] if budget is None else value, atol=1e-9)


def test_bad_inputs_are_named():
  p, r = _random_problem(0, 3)
  with pytest.raises(ValueError, match="p must have shape"):
    solve_tabular(p[0], r, 0.1, 0.9)
  with pytest.raises(ValueError, match="r must have shape"):
    solve_tabular(p, r[:, :2], 0.1, 0.9)
  with pytest.raises(ValueError, match="gamma"):
    solve_tabular(p, r, 0.1, 1.0)
  with pytest.raises(ValueError, match="probability"):
    solve_tabular(p * 2, r, 0.1, 0.9)
