"""Choosing the switch: epsilon-greedy while training, greedy for evaluation; both respect the
budget mask, so a masked switch is never taken."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from londi_jax.switching import budget as budget_lib


def greedy_switch(q: jnp.ndarray, allowed: jnp.ndarray) -> jnp.ndarray:
  """`argmax` of `Q(s, .)` over the allowed switches: `[..., 2]` -> `[...]` int32."""
  return jnp.argmax(jnp.where(allowed, q, -jnp.inf), axis=-1).astype(jnp.int32)


def greedy_under_budget(q: jnp.ndarray, remaining: jnp.ndarray, budget: int) -> jnp.ndarray:
  """The greedy switch under the hard-budget mask: `argmax_g Q(s, z, g)` over the switches
  `budget.allowed_switches` allows (`g = 1` only while `z > 0`, or always when `budget` is 0).

  Args:
    q: `Q(s, z, .)` `[..., 2]`.
    remaining: remaining large calls `z` `[...]`.
    budget: the hard budget `n` per episode; 0 means none.

  Returns:
    `[...]` int32 switches.
  """
  return greedy_switch(q, budget_lib.allowed_switches(remaining, budget))


def epsilon_greedy_switch(q: jnp.ndarray, allowed: jnp.ndarray, epsilon: jnp.ndarray,
                          key: jax.Array) -> jnp.ndarray:
  """With probability `epsilon` a uniformly random allowed switch, otherwise the greedy one."""
  explore_key, choice_key = jax.random.split(key)
  explore = jax.random.uniform(explore_key, q.shape[:-1]) < epsilon
  # A random score for each allowed switch; masked switches can never win.
  noise = jnp.where(allowed, jax.random.uniform(choice_key, q.shape), -1.0)
  random_switch = jnp.argmax(noise, axis=-1).astype(jnp.int32)
  return jnp.where(explore, random_switch, greedy_switch(q, allowed))


def linear_epsilon(step: jnp.ndarray, start: float, end: float, decay_steps: int) -> jnp.ndarray:
  """Epsilon decaying linearly from `start` to `end` over `decay_steps` acting steps."""
  frac = jnp.clip(step / max(decay_steps, 1), 0.0, 1.0)
  return start + frac * (end - start)
