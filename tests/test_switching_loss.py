"""The impulse-control target and loss against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from londi_jax.switching import batched_td_error, huber, impulse_control_td_error


def _td(q_tm1, g, r, price, discount, q_val, q_sel, allowed=(True, True)):
  return float(impulse_control_td_error(
      jnp.asarray(q_tm1), jnp.asarray(g), jnp.asarray(r), jnp.asarray(price),
      jnp.asarray(discount), jnp.asarray(q_val), jnp.asarray(q_sel), jnp.asarray(allowed)))


def test_double_q_target_uses_online_selection_and_target_value():
  # The online net prefers g'=0, so the target net's Q(s', 0) = 3 is bootstrapped:
  # target = 0.5 - 0.1 * 1 + 0.9 * 3 = 3.1; td = 3.1 - Q(s, 1) = 3.1 - 2 = 1.1.
  assert _td([1.0, 2.0], 1, 0.5, 0.1, 0.9, [3.0, 4.0], [5.0, 1.0]) == pytest.approx(1.1)


def test_price_is_not_charged_when_keeping_the_small_model():
  # target = 0.5 - 0 + 0.9 * 4 = 4.1 (online prefers g'=1); td = 4.1 - Q(s, 0) = 3.1.
  assert _td([1.0, 2.0], 0, 0.5, 0.1, 0.9, [3.0, 4.0], [0.0, 1.0]) == pytest.approx(3.1)


def test_budget_mask_forbids_bootstrapping_from_a_call():
  # The online net prefers g'=1 but no calls remain: bootstrap from Q_target(s', 0) = 3.
  # target = 0.5 - 0.1 + 0.9 * 3 = 3.1; td = 3.1 - 2 = 1.1.
  assert _td([1.0, 2.0], 1, 0.5, 0.1, 0.9, [3.0, 4.0], [0.0, 1.0], (True, False)) == (
      pytest.approx(1.1))


def test_terminal_transition_does_not_bootstrap():
  # discount 0: target = r - price = 0.4; td = 0.4 - 2 = -1.6.
  assert _td([1.0, 2.0], 1, 0.5, 0.1, 0.0, [3.0, 4.0], [5.0, 1.0]) == pytest.approx(-1.6)


def test_batched_twin_equals_vmapped_single_transition():
  rng = np.random.default_rng(0)
  n = 64
  args = (rng.normal(size=(n, 2)), rng.integers(0, 2, n), rng.normal(size=n),
          rng.uniform(0, 0.2, n), rng.uniform(0, 1, n), rng.normal(size=(n, 2)),
          rng.normal(size=(n, 2)), rng.random((n, 2)) < 0.8)
  args = [jnp.asarray(a, jnp.float32) if a.dtype.kind == "f" else jnp.asarray(a) for a in args]
  args[7] = args[7].at[:, 0].set(True)  # keeping the small model is always allowed
  np.testing.assert_allclose(batched_td_error(*args),
                             jax.vmap(impulse_control_td_error)(*args), rtol=1e-6)


def test_target_carries_no_gradient():
  grad = jax.grad(lambda q_t: impulse_control_td_error(
      jnp.array([1.0, 2.0]), jnp.asarray(1), jnp.asarray(0.5), jnp.asarray(0.1),
      jnp.asarray(0.9), q_t, q_t, jnp.array([True, True])))(jnp.array([3.0, 4.0]))
  np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("x, delta, expected", [
    (0.5, 1.0, 0.125),  # quadratic: 0.5**2 / 2
    (-0.5, 1.0, 0.125),
    (3.0, 1.0, 2.5),  # linear: 1 * (3 - 0.5)
    (-3.0, 2.0, 4.0),  # linear: 2 * (3 - 1)
])
def test_huber(x, delta, expected):
  assert float(huber(jnp.asarray(x), delta)) == pytest.approx(expected)


def test_price_is_charged_on_the_executed_calls_not_on_the_decision():
  # Two n-step transitions (switching.nstep) with gamma = 0.5 and price c + lambda = 0.2; the
  # online net prefers g' = 0, so both bootstrap from Q_target(s', 0) = 2.
  # Row 0 (n = 1): a call (g = 1) held for three steps, the last masked by the hard budget;
  #   rewards 1, 2, 4: R = 1 + 0.5 * 2 + 0.25 * 4 = 3,  C = 1 + 0.5 * 1 + 0.25 * 0 = 1.5,
  #   P = 0.5^3 = 0.125: target = 3 - 0.2 * 1.5 + 0.125 * 2 = 2.95,  td = 2.95 - Q(s, 1) = 1.95
  #   (priced on the decision g = 1: 3 - 0.2 + 0.25 = 3.05, td 2.05).
  # Row 1 (n = 2, one step per decision): g = 0, then a call; rewards 2, 2: R = 2 + 0.5 * 2 = 3,
  #   C = 0 + 0.5 * 1 = 0.5, P = 0.25: target = 3 - 0.2 * 0.5 + 0.25 * 2 = 3.4,
  #   td = 3.4 - Q(s, 0) = 3.4 - 4 = -0.6  (priced on the decision g = 0: 3.5, td -0.5).
  td = batched_td_error(
      q_tm1=jnp.array([[0.0, 1.0], [4.0, 0.0]]), g_tm1=jnp.array([1, 0]),
      r_t=jnp.array([3.0, 3.0]), price_tm1=jnp.asarray(0.2), discount_t=jnp.array([0.125, 0.25]),
      q_t_value=jnp.array([[2.0, 7.0], [2.0, 7.0]]),
      q_t_selector=jnp.array([[1.0, 0.0], [1.0, 0.0]]), allowed_t=jnp.ones((2, 2), bool),
      calls_tm1=jnp.array([1.5, 0.5]))
  np.testing.assert_allclose(td, [1.95, -0.6], rtol=1e-6)
