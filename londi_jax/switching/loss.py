"""The impulse-control target and loss (docs/method.md; LICRA, arXiv 2205.15953, Thm. 2).

For a transition `(s_tm1, g_tm1, r_t, s_t)` the target is

    r_t - (c + lambda) * g_tm1 + discount_t * Q_target(s_t, argmax_{g allowed at s_t} Q_online(s_t, g))

where `discount_t` is `gamma` (0 at a terminal state) and the allowed switches come from the hard
budget. The single-transition form follows rlax's `double_q_learning`; the batched twin computes the
same thing without `vmap`, and also takes the n-step form of `switching.nstep`.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def _masked_argmax(q: jnp.ndarray, allowed: jnp.ndarray) -> jnp.ndarray:
  return jnp.argmax(jnp.where(allowed, q, -jnp.inf), axis=-1)


def impulse_control_td_error(q_tm1: jnp.ndarray, g_tm1: jnp.ndarray, r_t: jnp.ndarray,
                             price_tm1: jnp.ndarray, discount_t: jnp.ndarray,
                             q_t_value: jnp.ndarray, q_t_selector: jnp.ndarray,
                             allowed_t: jnp.ndarray) -> jnp.ndarray:
  """The double-Q TD error of one switching transition.

  Args:
    q_tm1: `Q_online(s_tm1, .)`, shape `[2]`.
    g_tm1: the switch taken at `s_tm1` (0 small, 1 large), scalar int.
    r_t: the environment reward, scalar.
    price_tm1: the price of a large call, `c + lambda`, scalar.
    discount_t: `gamma * (1 - terminal_t)`, scalar.
    q_t_value: `Q_target(s_t, .)`, shape `[2]`.
    q_t_selector: `Q_online(s_t, .)`, shape `[2]`, used to pick the next switch.
    allowed_t: switches allowed at `s_t` by the hard budget, bool `[2]`.

  Returns:
    `target - Q(s_tm1, g_tm1)`, with the target's gradient stopped.
  """
  chex.assert_rank([q_tm1, g_tm1, r_t, price_tm1, discount_t, q_t_value, q_t_selector, allowed_t],
                   [1, 0, 0, 0, 0, 1, 1, 1])
  g_t = _masked_argmax(q_t_selector, allowed_t)
  target = r_t - price_tm1 * g_tm1 + discount_t * q_t_value[g_t]
  return jax.lax.stop_gradient(target) - q_tm1[g_tm1]


def batched_td_error(q_tm1: jnp.ndarray, g_tm1: jnp.ndarray, r_t: jnp.ndarray,
                     price_tm1: jnp.ndarray, discount_t: jnp.ndarray, q_t_value: jnp.ndarray,
                     q_t_selector: jnp.ndarray, allowed_t: jnp.ndarray,
                     calls_tm1: jnp.ndarray | None = None) -> jnp.ndarray:
  """`impulse_control_td_error` over a batch: `[N, 2]` Q arrays, `[N]` scalars -> `[N]`.

  For an n-step transition (`switching.nstep`) `r_t` and `calls_tm1` are the discounted sums of
  the `n` rewards and large calls and `discount_t` the discount product; the price is charged on
  `calls_tm1` (`g_tm1` when it is None, the one-step case).
  """
  chex.assert_rank([q_tm1, g_tm1, r_t, discount_t, q_t_value, q_t_selector, allowed_t],
                   [2, 1, 1, 1, 2, 2, 2])
  g_t = _masked_argmax(q_t_selector, allowed_t)
  next_value = jnp.take_along_axis(q_t_value, g_t[:, None], axis=-1)[:, 0]
  calls = g_tm1 if calls_tm1 is None else calls_tm1
  target = r_t - price_tm1 * calls + discount_t * next_value
  taken = jnp.take_along_axis(q_tm1, g_tm1[:, None], axis=-1)[:, 0]
  return jax.lax.stop_gradient(target) - taken


def huber(x: jnp.ndarray, delta: float) -> jnp.ndarray:
  """The Huber loss: `x^2 / 2` for `|x| <= delta`, `delta * (|x| - delta / 2)` beyond."""
  abs_x = jnp.abs(x)
  quadratic = jnp.minimum(abs_x, delta)
  return 0.5 * quadratic**2 + delta * (abs_x - quadratic)
