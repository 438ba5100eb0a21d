"""The jitted update: its loss and step against an independent reference, vmapped members equal to
separate learners, and no recompilation in steady state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from londi_jax.switching.replay import replay_add, replay_init
from londi_jax.switching import (SwitchBatch, Transition, example_transition, init_learner,
                                 make_train_many, make_update, switcher_config)

FEATURES = 5


def _config(budget=2, **overrides):
  c = switcher_config()
  c.hidden_sizes = (8,)
  c.budget = budget
  c.discount = 0.9
  c.batch_size = 16
  for k, v in overrides.items():
    c[k] = v
  return c


def _batch(seed, n=16, budget=2, constraint=0.3):
  rng = np.random.default_rng(seed)
  z_tm1 = rng.integers(1 if budget else 0, budget + 1, n)
  g = rng.integers(0, 2, n)
  return SwitchBatch(
      transitions=Transition(
          features_tm1=jnp.asarray(rng.normal(size=(n, FEATURES)), jnp.float32),
          remaining_tm1=jnp.asarray(z_tm1, jnp.int32), switch_tm1=jnp.asarray(g, jnp.int32),
          reward_t=jnp.asarray(rng.uniform(size=n), jnp.float32),
          discount_t=jnp.asarray(0.9 * (rng.random(n) > 0.2), jnp.float32),
          features_t=jnp.asarray(rng.normal(size=(n, FEATURES)), jnp.float32),
          remaining_t=jnp.asarray(z_tm1 - g if budget else z_tm1, jnp.int32),
          # Executed calls of held decisions differ from the decision (a budget can stop a call).
          calls_tm1=jnp.asarray(g * rng.uniform(0.5, 1.5, n), jnp.float32)),
      constraint_value=jnp.asarray(constraint, jnp.float32))


def _reference_q(params, features, remaining, budget):
  x = jnp.concatenate([features, (remaining / budget)[:, None]], -1)
  h = jax.nn.relu(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
  return h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]


def _reference_loss(params, target_params, tr, price, budget, delta=1.0):
  n = tr.switch_tm1.shape[0]
  q_tm1 = _reference_q(params, tr.features_tm1, tr.remaining_tm1, budget)
  q_sel = _reference_q(params, tr.features_t, tr.remaining_t, budget)
  q_sel = jnp.where(tr.remaining_t[:, None] > 0, q_sel, jnp.array([0.0, -jnp.inf]))
  g_next = np.asarray(jnp.argmax(jax.lax.stop_gradient(q_sel), -1))
  q_val = np.asarray(_reference_q(target_params, tr.features_t, tr.remaining_t, budget))
  target = (np.asarray(tr.reward_t) - price * np.asarray(tr.calls_tm1)
            + np.asarray(tr.discount_t) * q_val[np.arange(n), g_next])
  err = jnp.asarray(target) - q_tm1[jnp.arange(n), tr.switch_tm1]
  a = jnp.abs(err)
  return jnp.mean(jnp.where(a <= delta, 0.5 * err**2, delta * (a - 0.5 * delta)))


def test_update_loss_and_adam_step_match_an_independent_reference():
  config = _config(learning_rate=1e-2, tau=0.1)
  state = init_learner(config, jax.random.PRNGKey(0), FEATURES, cost=0.07)
  state = state.replace(lagrange=jnp.asarray(0.03))  # price = c + lambda = 0.1
  # A different target network, so selection (online) and evaluation (target) differ.
  target = jax.tree_util.tree_map(lambda x: x + 0.1, state.q_params)
  state = state.replace(target_params=target)
  batch = _batch(1)
  new_state, metrics = jax.jit(make_update(config))(state, batch)

  loss, grads = jax.value_and_grad(_reference_loss)(state.q_params, target, batch.transitions,
                                                    0.1, 2)
  assert float(metrics["loss"]) == pytest.approx(float(loss), rel=1e-5)
  # Adam's first step is lr * g / (|g| + eps) (bias corrections cancel); the norm is under the clip.
  expected = jax.tree_util.tree_map(lambda p, g: p - 1e-2 * g / (jnp.abs(g) + 1e-8),
                                    state.q_params, grads)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
                         new_state.q_params, expected)
  polyak = jax.tree_util.tree_map(lambda q, t: 0.1 * q + 0.9 * t, new_state.q_params, target)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                         new_state.target_params, polyak)
  assert int(new_state.step) == 1
  assert float(new_state.lagrange) == pytest.approx(0.03)  # unchanged: Lagrangian disabled


def test_periodic_target_copies_every_period():
  config = _config(target_update="periodic", target_period=3)
  update = jax.jit(make_update(config))
  state = init_learner(config, jax.random.PRNGKey(0), FEATURES)
  initial = state.target_params
  for k in range(1, 7):
    state, _ = update(state, _batch(k))
    same = jax.tree_util.tree_all(jax.tree_util.tree_map(
        lambda a, b: bool(jnp.array_equal(a, b)), state.target_params, state.q_params))
    assert same == (k % 3 == 0)
    if k < 3:
      jax.tree_util.tree_map(np.testing.assert_array_equal, state.target_params, initial)


def test_lagrange_multiplier_steps_inside_the_update():
  config = _config()
  config.lagrangian.enabled = True
  config.lagrangian.target = 0.25
  config.lagrangian.learning_rate = 0.5
  update = jax.jit(make_update(config))
  state = init_learner(config, jax.random.PRNGKey(0), FEATURES)
  state, _ = update(state, _batch(0, constraint=0.75))
  assert float(state.lagrange) == 0.25  # 0 + 0.5 * (0.75 - 0.25)
  state, _ = update(state, _batch(1, constraint=0.0))
  assert float(state.lagrange) == 0.125  # 0.25 + 0.5 * (0 - 0.25)
  state, _ = update(state, _batch(2, constraint=0.0))
  assert float(state.lagrange) == 0.0


def test_vmapped_members_equal_separate_learners():
  config = _config()
  costs, seeds = [0.0, 0.05, 0.3], [3, 4, 5]
  update = make_update(config)
  separate = []
  for seed, cost in zip(seeds, costs):
    state = init_learner(config, jax.random.PRNGKey(seed), FEATURES, cost)
    for k in range(5):
      state, _ = jax.jit(update)(state, _batch(10 * seed + k))
    separate.append(state)
  stacked = jax.vmap(lambda s, c: init_learner(config, jax.random.PRNGKey(s), FEATURES, c))(
      jnp.asarray(seeds), jnp.asarray(costs))
  vupdate = jax.jit(jax.vmap(update))
  for k in range(5):
    batch = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs),
                                   *[_batch(10 * s + k) for s in seeds])
    stacked, _ = vupdate(stacked, batch)
  for m, state in enumerate(separate):
    member = jax.tree_util.tree_map(lambda x: x[m], stacked)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                           member.q_params, state.q_params)
  # Different costs really lead to different learners.
  assert not np.allclose(stacked.q_params["Dense_1"]["bias"][0],
                         stacked.q_params["Dense_1"]["bias"][2])


def test_no_recompilation_in_steady_state():
  config = _config(budget=0)
  update = jax.jit(make_update(config), donate_argnums=0)
  state = init_learner(config, jax.random.PRNGKey(0), FEATURES)
  for k in range(40):
    state, metrics = update(state, _batch(k, budget=0))
  assert update._cache_size() == 1

  train_many = jax.jit(make_train_many(config, num_updates=4), donate_argnums=0)
  replay = replay_init(example_transition(FEATURES), capacity=64)
  for k in range(20):
    replay = replay_add(replay, _batch(100 + k, budget=0).transitions)
    state, metrics = train_many(state, replay, jnp.asarray(0.1 * (k % 3)))
  assert train_many._cache_size() == 1
  assert int(state.step) == 40 + 20 * 4
  assert np.isfinite(float(metrics["loss"]))
