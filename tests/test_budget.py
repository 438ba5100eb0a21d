"""Hard budget masks, the Lagrange multiplier step, and acting under the mask."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from londi_jax.switching import (allowed_switches, budget_fraction, epsilon_greedy_switch,
                                 greedy_switch, linear_epsilon, spend)
from londi_jax.switching.budget import lagrange_optimizer, lagrange_step


def test_hard_budget_mask_and_spending():
  z = jnp.array([0, 1, 3])
  np.testing.assert_array_equal(allowed_switches(z, 3), [[True, False], [True, True],
                                                         [True, True]])
  np.testing.assert_array_equal(spend(z, jnp.array([0, 1, 1]), 3), [0, 0, 2])
  np.testing.assert_allclose(budget_fraction(z, 3), [0.0, 1 / 3, 1.0])


def test_no_budget_allows_everything_and_spends_nothing():
  z = jnp.array([0, 5])
  np.testing.assert_array_equal(allowed_switches(z, 0), [[True, True], [True, True]])
  np.testing.assert_array_equal(spend(z, jnp.array([1, 1]), 0), z)
  np.testing.assert_array_equal(budget_fraction(z, 0), [1.0, 1.0])


def test_multiplier_rises_above_target_falls_below_and_stays_nonnegative():
  opt = lagrange_optimizer(0.1)
  lam = jnp.asarray(0.0)
  state = opt.init(lam)
  lam, state = lagrange_step(lam, state, jnp.asarray(0.5), 0.2, opt)
  assert float(lam) == pytest.approx(0.03)  # 0 + 0.1 * (0.5 - 0.2)
  lam, state = lagrange_step(lam, state, jnp.asarray(0.0), 0.2, opt)
  assert float(lam) == pytest.approx(0.01)  # 0.03 + 0.1 * (0 - 0.2)
  lam, state = lagrange_step(lam, state, jnp.asarray(0.0), 0.2, opt)
  assert float(lam) == 0.0  # 0.01 - 0.02 projected onto lambda >= 0


def test_greedy_respects_the_mask():
  q = jnp.array([[0.0, 1.0], [0.0, 1.0], [2.0, 1.0]])
  allowed = jnp.array([[True, True], [True, False], [True, True]])
  np.testing.assert_array_equal(greedy_switch(q, allowed), [1, 0, 0])


def test_epsilon_greedy_never_takes_a_masked_switch_and_explores_uniformly():
  q = jnp.zeros((4000, 2)).at[:, 0].set(1.0)  # greedy keeps the small model
  allowed = jnp.ones((4000, 2), bool).at[:2000, 1].set(False)
  g = np.asarray(epsilon_greedy_switch(q, allowed, jnp.asarray(1.0), jax.random.PRNGKey(0)))
  assert (g[:2000] == 0).all()
  assert abs(g[2000:].mean() - 0.5) < 0.05  # uniform over both allowed switches
  g0 = epsilon_greedy_switch(q, allowed, jnp.asarray(0.0), jax.random.PRNGKey(1))
  np.testing.assert_array_equal(g0, greedy_switch(q, allowed))


def test_linear_epsilon():
  assert float(linear_epsilon(jnp.asarray(0), 1.0, 0.1, 100)) == pytest.approx(1.0)
  assert float(linear_epsilon(jnp.asarray(50), 1.0, 0.1, 100)) == pytest.approx(0.55)
  assert float(linear_epsilon(jnp.asarray(500), 1.0, 0.1, 100)) == pytest.approx(0.1)
