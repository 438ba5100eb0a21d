"""The switcher's config: one `ml_collections.ConfigDict` shared by every experiment family."""

from __future__ import annotations

import ml_collections


def switcher_config() -> ml_collections.ConfigDict:
  """Default hyperparameters of the switcher (network, update, budgets, exploration)."""
  c = ml_collections.ConfigDict()
  c.cost = 0.05  # price c of one large-LM call, in reward units
  # 0: every call costs `cost`. > 0: a call costs `cost * F(s) / flops_unit`, with F(s) the large
  # LM's FLOPs at the state (paired targets only: docs/method.md, a price per FLOP).
  c.flops_unit = 0.0
  c.discount = 0.99  # gamma
  c.hold = 1  # launch.train: a switch decision holds for this many steps of its episode
  # "td": bootstrapped impulse-control targets (the paper's learner); "paired": Monte-Carlo targets
  # from counterfactual branch pairs with common random numbers (switching.paired).
  c.target = "td"
  c.paired = ml_collections.ConfigDict()
  c.paired.gap_weight = 1.0  # weight of the call-minus-keep gap's loss beside the keep value's
  # After the first decision: "small" (small LM only), "random" (held random switching at
  # `continuation_rate`) or "greedy" (the member's own switcher).
  c.paired.continuation = "small"
  c.paired.continuation_rate = 0.5
  c.paired.pairs_per_step = 1  # decision points branched per acting step, per member
  c.paired.batch = 32  # pairs played together (one batch of 2 x batch rows per branch step)
  c.paired.horizon = 0  # most steps a branch plays (0: to the episode's end)
  c.n_step = 1  # n of the n-step target (switching.nstep; launch.train, the diagnostic is 1-step)
  c.budget = 0  # hard budget n of large calls per episode (LONDI-B); 0 = none
  c.hidden_sizes = (64, 64)
  c.learning_rate = 1e-3
  c.learning_rate_end = 1e-5
  c.decay_updates = 0  # linear decay of the learning rate over this many updates; 0 = constant
  c.max_grad_norm = 10.0
  c.batch_size = 256
  c.huber_delta = 1.0
  c.double_q = True
  c.target_update = "polyak"  # or "periodic"
  c.tau = 0.01  # Polyak rate
  c.target_period = 200  # updates between copies when periodic
  c.lagrangian = ml_collections.ConfigDict()
  c.lagrangian.enabled = False
  # "rate": mean g per step; "calls_per_episode"; "compute": the greedy calls' share of the large
  # LM's FLOPs at the rows' states (with a price per FLOP, `flops_unit > 0`, only).
  c.lagrangian.measure = "rate"
  c.lagrangian.target = 0.2  # rho: a rate, calls per episode or a compute share
  c.lagrangian.learning_rate = 0.01
  c.lagrangian.init = 0.0
  c.epsilon_start = 1.0
  c.epsilon_end = 0.05
  c.epsilon_decay_steps = 2000  # acting steps
  c.replay_capacity = 50_000
  c.share_replay = False  # launch.train: every member learns from all members' transitions
  c.min_replay = 1000  # transitions before updates start
  c.train_every = 1  # k: acting steps between training calls
  c.num_updates = 1  # U: jitted updates per training call, run in one lax.scan
  return c


def member_seeds_and_costs(config: ml_collections.ConfigDict) -> tuple[list[int], list[float]]:
  """Member `m` of a run trains with seed `seed + m` and cost `member_costs[m]` (default: `cost`,
  `members` times). Reads the top-level `seed`, `cost`, `members` and `member_costs` fields."""
  costs = [float(c) for c in config.member_costs] or [float(config.cost)] * int(config.members)
  return [int(config.seed) + m for m in range(len(costs))], costs
