"""The exact solution of the switching problem on a finite MDP (docs/method.md: exact solver).

With both LM policies fixed, switching is a two-action MDP: `p[g]` is the state-transition matrix
and `r[g]` the expected one-step reward when policy `g` acts (0 small, 1 large). Its optimal
`Q*` solves

    Q(s, 0) = r[0, s]           + gamma * sum_s' p[0, s, s'] V(s')
    Q(s, 1) = r[1, s] - cost[s] + gamma * sum_s' p[1, s, s'] V(s'),   V = max_g Q,

and under a hard budget of `n` calls the state is augmented with the remaining calls `z`, a call
moving from `z` to `z - 1` and being impossible at `z = 0`. Solved exactly, in float64, by policy
iteration (a finite number of linear solves; Howard 1960), which ends on the optimal policy.
"""

from __future__ import annotations

import numpy as np


def _check(p: np.ndarray, r: np.ndarray, cost, gamma: float):
  p = np.asarray(p, np.float64)
  r = np.asarray(r, np.float64)
  if p.ndim != 3 or p.shape[0] != 2 or p.shape[1] != p.shape[2]:
    raise ValueError(f"p must have shape [2, S, S], got {p.shape}")
  num_states = p.shape[1]
  if r.shape != (2, num_states):
    raise ValueError(f"r must have shape [2, {num_states}], got {r.shape}")
  if not np.allclose(p.sum(-1), 1.0, atol=1e-8) or (p < 0).any():
    raise ValueError("each row of p[g] must be a probability distribution")
  if not 0.0 <= gamma < 1.0:
    raise ValueError(f"gamma must lie in [0, 1), got {gamma}")
  cost = np.broadcast_to(np.asarray(cost, np.float64), (num_states,))
  return p, r, cost


def _q_from_values(p, r, cost, gamma, v_keep, v_call):
  """`[S, 2]`: keep the small LM continuing with values `v_keep`, call with `v_call`."""
  return np.stack([r[0] + gamma * p[0] @ v_keep, r[1] - cost + gamma * p[1] @ v_call], axis=-1)


def _policy_iteration(p, r, cost, gamma, v_call: np.ndarray | None) -> np.ndarray:
  """Optimal `Q` `[S, 2]` at one budget level. `v_call` is the value after a call (the level below),
  or None without a budget (calling stays at the same level)."""
  num_states = p.shape[1]
  eye = np.eye(num_states)
  policy = np.zeros(num_states, np.int64)
  while True:
    rows = np.arange(num_states)
    if v_call is None:
      p_pi = p[policy, rows]  # [S, S]
      r_pi = r[policy, rows] - cost * policy
      v = np.linalg.solve(eye - gamma * p_pi, r_pi)
      q = _q_from_values(p, r, cost, gamma, v, v)
    else:
      # Keeping continues at this level; calling hands over to the known value of the level below.
      keep = policy == 0
      a = eye - gamma * p[0] * keep[:, None]
      b = np.where(keep, r[0], r[1] - cost + gamma * p[1] @ v_call)
      v = np.linalg.solve(a, b)
      q = _q_from_values(p, r, cost, gamma, v, v_call)
    # Switch only on a strict improvement, so the iteration cannot cycle between ties.
    improved = np.where(q[rows, 1 - policy] > q[rows, policy] + 1e-12, 1 - policy, policy)
    if np.array_equal(improved, policy):
      return q
    policy = improved


def solve_tabular(p, r, cost, gamma: float, budget: int | None = None) -> np.ndarray:
  """The optimal switching Q function of a two-policy finite MDP.

  Args:
    p: `[2, S, S]` transition matrices, `p[g, s, s']`, when policy `g` acts (0 small, 1 large).
    r: `[2, S]` expected one-step rewards of each policy.
    cost: price of one large-LM call, a scalar or `[S]`.
    gamma: discount in `[0, 1)`; the horizon is infinite.
    budget: hard budget `n` of large calls; None for none.

  Returns:
    `q` `[S, 2]` without a budget; `[S, n + 1, 2]` with one, indexed by the remaining calls `z`,
    where `q[:, 0, 1] = -inf`. `q[..., 1]` includes `-cost`.
  """
  p, r, cost = _check(p, r, cost, gamma)
  if budget is None:
    return _policy_iteration(p, r, cost, gamma, None)
  if budget < 0:
    raise ValueError(f"budget must be >= 0, got {budget}")
  num_states = p.shape[1]
  q = np.empty((num_states, budget + 1, 2))
  v_small_only = np.linalg.solve(np.eye(num_states) - gamma * p[0], r[0])
  q[:, 0, 0] = r[0] + gamma * p[0] @ v_small_only
  q[:, 0, 1] = -np.inf
  for z in range(1, budget + 1):
    q[:, z] = _policy_iteration(p, r, cost, gamma, q[:, z - 1].max(-1))
  return q


def evaluate_switching_rule(p, r, cost, gamma: float, rule: np.ndarray,
                            budget: int | None = None) -> np.ndarray:
  """The exact value of a deterministic switching rule.

  Args:
    rule: `[S]` switches, or `[S, n + 1]` indexed by remaining calls with a budget (a call at
      `z = 0` is not allowed and is treated as keeping the small LM).

  Returns:
    `v` `[S]`, or `[S, n + 1]` with a budget.
  """
  p, r, cost = _check(p, r, cost, gamma)
  num_states = p.shape[1]
  rule = np.asarray(rule, np.int64)
  rows = np.arange(num_states)
  if budget is None:
    p_pi = p[rule, rows]
    return np.linalg.solve(np.eye(num_states) - gamma * p_pi, r[rule, rows] - cost * rule)
  v = np.empty((num_states, budget + 1))
  for z in range(budget + 1):
    g = rule[:, z] if z > 0 else np.zeros(num_states, np.int64)
    keep = g == 0
    a = np.eye(num_states) - gamma * p[0] * keep[:, None]
    b = r[0].copy()
    if z > 0:
      b = np.where(keep, r[0], r[1] - cost + gamma * p[1] @ v[:, z - 1])
    v[:, z] = np.linalg.solve(a, b)
  return v
