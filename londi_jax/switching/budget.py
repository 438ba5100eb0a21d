"""Budgets on large-LM calls (docs/method.md: budgets).

Hard budget (LONDI-B): the state carries the remaining calls `z` (`z_0 = n`, `z_{t+1} = z_t - g_t`)
and `g = 1` is masked out at `z = 0`, so the budget holds in every episode by construction
(LICRA, Sec. 6; Saute RL). Lagrangian budget: the switcher pays `c + lambda` per call, and
`lambda >= 0` follows projected gradient ascent on `measured - target`.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax


def allowed_switches(remaining: jnp.ndarray, budget: int) -> jnp.ndarray:
  """Which switches are allowed: `[..., 2]` booleans; `g = 1` only while `z > 0` (or no budget).

  Args:
    remaining: remaining large-LM calls `z`, integer array `[...]`.
    budget: the hard budget `n` per episode; 0 means no hard budget.
  """
  small = jnp.ones(remaining.shape, bool)
  large = remaining > 0 if budget > 0 else jnp.ones(remaining.shape, bool)
  return jnp.stack([small, large], axis=-1)


def budget_fraction(remaining: jnp.ndarray, budget: int) -> jnp.ndarray:
  """The switcher's budget feature `z / n` (1 when there is no hard budget)."""
  if budget <= 0:
    return jnp.ones(remaining.shape, jnp.float32)
  return remaining.astype(jnp.float32) / budget


def spend(remaining: jnp.ndarray, switch: jnp.ndarray, budget: int) -> jnp.ndarray:
  """`z_{t+1} = z_t - g_t` under a hard budget; unchanged without one."""
  if budget <= 0:
    return remaining
  return remaining - switch.astype(remaining.dtype)


def lagrange_optimizer(learning_rate: float) -> optax.GradientTransformation:
  """Plain gradient steps for the multiplier: `lambda <- lambda + lr * (measured - target)`."""
  return optax.sgd(learning_rate)


def lagrange_step(lagrange: jnp.ndarray, opt_state: optax.OptState, measured: jnp.ndarray,
                  target: float, optimizer: optax.GradientTransformation):
  """One projected dual-ascent step on `lambda * (measured - target)`.

  The multiplier rises while the measured call rate (or calls per episode) exceeds its target and
  falls while it is below, and is projected onto `lambda >= 0`, so it returns to exactly 0 once the
  constraint is slack.

  Returns:
    `(lambda', opt_state')`.
  """
  grad = -(measured - target)  # descent on -lambda * (measured - target) is ascent on the dual.
  updates, opt_state = optimizer.update(grad, opt_state, lagrange)
  return jnp.maximum(optax.apply_updates(lagrange, updates), 0.0), opt_state
