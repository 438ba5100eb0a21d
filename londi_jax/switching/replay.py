"""A uniform replay buffer of fixed shape, written for `jit`.

The buffer is a pytree of arrays `[capacity, ...]` with a write index and a fill count; `add`
writes a batch of items at once (wrapping around) and `sample` draws uniformly among the filled
slots. Under `vmap` each member keeps its own buffer. Callers jit the step that replaces a buffer
with `donate_argnums` so the update happens in place.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ReplayState:
  """Storage `[capacity, ...]` for every leaf of the item pytree, the next write slot, the fill."""

  data: object
  index: jnp.ndarray
  size: jnp.ndarray

  @property
  def capacity(self) -> int:
    return jax.tree_util.tree_leaves(self.data)[0].shape[0]


def replay_init(example_item, capacity: int) -> ReplayState:
  """An empty buffer for items shaped like `example_item` (a pytree of arrays without batch axis)."""
  data = jax.tree_util.tree_map(
      lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example_item)
  return ReplayState(data=data, index=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def replay_add(state: ReplayState, items, write: jnp.ndarray | bool = True) -> ReplayState:
  """Writes a batch of items (leaves `[B, ...]`, `B <= capacity`) at the write index, wrapping.

  `write` (a scalar, or `[B]` per item) selects the items to keep; they fill consecutive slots in
  batch order. Items not written go to an out-of-range slot and are dropped, so a jitted caller
  updates the buffer in place either way (no copy of the whole buffer, as a `where` or `cond` over
  it would make).
  """
  capacity = state.capacity
  batch = jax.tree_util.tree_leaves(items)[0].shape[0]
  mask = jnp.broadcast_to(jnp.asarray(write, bool), (batch,))  # [B]
  offsets = jnp.cumsum(mask) - 1
  slots = jnp.where(mask, (state.index + offsets) % capacity, capacity)  # [B]
  data = jax.tree_util.tree_map(lambda buf, x: buf.at[slots].set(x, mode="drop"), state.data,
                                items)
  added = jnp.sum(mask, dtype=jnp.int32)
  return ReplayState(data=data, index=(state.index + added) % capacity,
                     size=jnp.minimum(state.size + added, capacity))


def replay_sample(state: ReplayState, key: jax.Array, batch_size: int):
  """Draws `batch_size` items uniformly, with replacement, among the filled slots."""
  slots = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1))  # [N]
  return jax.tree_util.tree_map(lambda buf: buf[slots], state.data)
