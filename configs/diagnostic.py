"""The tabular diagnostic: the switcher learned from samples against the exact solution.

    python -m launch.diagnose --config configs/diagnostic.py[:smoke] [--config.num_states=23 ...]
"""

import ml_collections

from londi_jax.runtime.config import runtime_config
from londi_jax.switching.config import switcher_config


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_states = 20
  c.num_actions = 3
  c.hard_fraction = 0.4
  c.gamma = 0.9
  c.cost = 0.05
  c.budget = 0  # hard budget n; 0 = none
  c.members = 1  # switchers trained together (seeds seed, seed + 1, ...)
  c.member_costs = ()  # one cost per member, overriding `members` and `cost`
  c.num_envs = 128
  c.episode_length = 50
  c.exploring_starts = True  # with a budget, start training episodes at a random z
  c.train_steps = 12000  # acting steps (each on num_envs environments)
  c.log_every = 1000
  c.eval_episodes = 1000
  c.tie_tolerance = 1e-6
  c.runtime = runtime_config()  # devices and processes (docs/scaling.md)

  c.switcher = switcher_config()
  c.switcher.cost = c.get_ref("cost")
  c.switcher.budget = c.get_ref("budget")
  c.switcher.discount = c.get_ref("gamma")
  c.switcher.hidden_sizes = (128, 128)
  c.switcher.replay_capacity = 500_000
  c.switcher.min_replay = 5000
  c.switcher.epsilon_decay_steps = 2000
  c.switcher.epsilon_end = 0.2
  c.switcher.batch_size = 512
  c.switcher.num_updates = 2
  # The rate decays over the whole run, so late updates average out sampling noise.
  c.switcher.decay_updates = c.get_ref("train_steps") * c.switcher.get_ref("num_updates")

  if preset == "smoke":
    c.num_states = 6
    c.num_envs = 16
    c.train_steps = 200
    c.log_every = 100
    c.eval_episodes = 50
    c.switcher.hidden_sizes = (32,)
    c.switcher.replay_capacity = 4096
    c.switcher.min_replay = 256
    c.switcher.batch_size = 64
  elif preset != "default":
    raise ValueError(f"unknown preset {preset!r} of configs/diagnostic.py; known: default, smoke")
  return c
