"""The jitted replay buffer: wrap-around, fill count, sampling only filled slots, donation."""

import jax
import jax.numpy as jnp
import numpy as np

from londi_jax.switching.replay import replay_add, replay_init, replay_sample


def _items(start, n):
  return {"x": jnp.arange(start, start + n, dtype=jnp.float32)[:, None] * jnp.ones((1, 2)),
          "i": jnp.arange(start, start + n, dtype=jnp.int32)}


def test_add_wraps_around_and_counts():
  buf = replay_init({"x": jnp.zeros(2), "i": jnp.zeros((), jnp.int32)}, capacity=5)
  buf = replay_add(buf, _items(0, 3))
  assert int(buf.size) == 3 and int(buf.index) == 3
  buf = replay_add(buf, _items(3, 4))  # items 3..6 go to slots 3, 4, 0, 1
  assert int(buf.size) == 5 and int(buf.index) == 2
  np.testing.assert_array_equal(buf.data["i"], [5, 6, 2, 3, 4])
  np.testing.assert_array_equal(buf.data["x"][:, 1], [5, 6, 2, 3, 4])


def test_sample_draws_only_filled_slots():
  buf = replay_init({"x": jnp.zeros(2), "i": jnp.zeros((), jnp.int32)}, capacity=100)
  buf = replay_add(buf, _items(1, 7))  # slots 0..6 hold 1..7, the rest are empty zeros
  sample = replay_sample(buf, jax.random.PRNGKey(0), 2000)
  values = np.asarray(sample["i"])
  assert values.min() >= 1 and values.max() <= 7
  assert set(values.tolist()) == set(range(1, 8))
  np.testing.assert_array_equal(sample["x"][:, 0], values)


def test_jitted_add_with_donation_in_a_loop():
  add = jax.jit(replay_add, donate_argnums=0)
  buf = replay_init({"x": jnp.zeros(2), "i": jnp.zeros((), jnp.int32)}, capacity=8)
  for k in range(5):
    buf = add(buf, _items(3 * k, 3))
  assert add._cache_size() == 1
  # 15 items in 8 slots: the last 8 (7..14) remain, item j at slot j % 8.
  np.testing.assert_array_equal(np.sort(np.asarray(buf.data["i"])), np.arange(7, 15))
  np.testing.assert_array_equal(buf.data["i"][np.arange(7, 15) % 8], np.arange(7, 15))


def test_add_with_write_false_changes_nothing():
  buf = replay_init({"x": jnp.zeros(2), "i": jnp.zeros((), jnp.int32)}, capacity=4)
  buf = replay_add(buf, _items(1, 2))
  same = replay_add(buf, _items(10, 3), write=jnp.asarray(False))
  assert int(same.size) == 2 and int(same.index) == 2
  np.testing.assert_array_equal(same.data["i"], [1, 2, 0, 0])
  np.testing.assert_array_equal(same.data["x"], buf.data["x"])


def test_add_with_a_mask_per_item_packs_the_kept_items_in_order():
  state = replay_init({"x": jnp.zeros((), jnp.float32)}, capacity=4)
  state = replay_add(state, {"x": jnp.asarray([1.0, 2.0, 3.0])}, jnp.asarray([True, False, True]))
  assert int(state.size) == 2 and int(state.index) == 2
  state = replay_add(state, {"x": jnp.asarray([4.0, 5.0, 6.0])}, jnp.asarray([True, True, True]))
  assert int(state.size) == 4 and int(state.index) == 1  # wrapped: 6 overwrote slot 0
  np.testing.assert_array_equal(state.data["x"], [6.0, 3.0, 4.0, 5.0])
