"""Throughput of the switcher's update: jitted against eager, and 8 vmapped members against 8
sequential learners, measured side by side in one run.

    python -m bench.update [--batch 256 --features 64 --members 8 --seconds 3]

Prints updates per second for each mode and the ratios.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from londi_jax.switching import SwitchBatch, Transition, init_learner, make_update, switcher_config


def _batch(rng, n, features, budget):
  z = rng.integers(1, budget + 1, n)
  g = rng.integers(0, 2, n)
  return SwitchBatch(
      transitions=Transition(
          features_tm1=jnp.asarray(rng.normal(size=(n, features)), jnp.float32),
          remaining_tm1=jnp.asarray(z, jnp.int32), switch_tm1=jnp.asarray(g, jnp.int32),
          reward_t=jnp.asarray(rng.uniform(size=n), jnp.float32),
          discount_t=jnp.full((n,), 0.99, jnp.float32),
          features_t=jnp.asarray(rng.normal(size=(n, features)), jnp.float32),
          remaining_t=jnp.asarray(z - g, jnp.int32), calls_tm1=jnp.asarray(g, jnp.float32)),
      constraint_value=jnp.asarray(0.3, jnp.float32))


def _rate(step, state, seconds, min_calls=3):
  """Calls `state = step(state)` for about `seconds`; returns calls per second."""
  state = step(state)  # warm-up and compilation
  jax.block_until_ready(state)
  calls, start = 0, time.perf_counter()
  while calls < min_calls or time.perf_counter() - start < seconds:
    state = step(state)
    calls += 1
  jax.block_until_ready(state)
  return calls / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--features", type=int, default=64)
  parser.add_argument("--members", type=int, default=8)
  parser.add_argument("--seconds", type=float, default=3.0)
  args = parser.parse_args()

  config = switcher_config()
  config.budget = 5
  config.lagrangian.enabled = True
  rng = np.random.default_rng(0)
  batch = _batch(rng, args.batch, args.features, config.budget)
  update = make_update(config)
  key = jax.random.PRNGKey(0)
  state = init_learner(config, key, args.features)

  jitted = jax.jit(update, donate_argnums=0)
  with jax.disable_jit():
    eager_rate = _rate(lambda s: update(s, batch)[0], state, args.seconds)
  jit_rate = _rate(lambda s: jitted(s, batch)[0], init_learner(config, key, args.features),
                   args.seconds)

  m = args.members
  keys = jax.random.split(key, m)
  costs = [0.2 * i / max(m - 1, 1) for i in range(m)]
  stacked_batch = jax.tree_util.tree_map(lambda x: jnp.stack([x] * m), batch)
  vmapped = jax.jit(jax.vmap(update), donate_argnums=0)
  states = jax.vmap(lambda k, c: init_learner(config, k, args.features, c))(
      keys, jnp.asarray(costs))
  vmap_rate = m * _rate(lambda s: vmapped(s, stacked_batch)[0], states, args.seconds)
  separate = [init_learner(config, keys[i], args.features, costs[i]) for i in range(m)]
  seq_rate = m * _rate(lambda ss: [jitted(s, batch)[0] for s in ss], separate, args.seconds)

  print(f"switcher update, batch {args.batch}, {args.features} features, "
        f"hidden {tuple(config.hidden_sizes)}, device {jax.devices()[0].platform}")
  print(f"  eager                 {eager_rate:10.1f} updates/s")
  print(f"  jitted                {jit_rate:10.1f} updates/s   ({jit_rate / eager_rate:.0f}x eager)")
  print(f"  {m} members, vmapped   {vmap_rate:10.1f} member-updates/s")
  print(f"  {m} learners, one by one {seq_rate:8.1f} member-updates/s   "
        f"(vmapped {vmap_rate / seq_rate:.2f}x sequential)")


if __name__ == "__main__":
  main()
