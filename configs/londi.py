"""LONDI: a switcher trained over a small and a large LM policy (`launch.train`, `launch.main`).

    python -m launch.train --config configs/londi.py:babyai_text --workdir DIR
    python -m launch.train --config configs/londi.py:babyai_text:smoke --workdir DIR

Presets (after the family): `smoke` (tests, seconds), `default` (2 CPU cores, ~30 min with
`launch.main`), `paper` (a GPU and real checkpoint folders).
"""

import ml_collections

from londi_jax.runtime.config import runtime_config
from londi_jax.switching.config import switcher_config

LEVELS = ("babyai_text/BabyAI-GoToLocal-v0", "babyai_text/BabyAI-PickupLoc-v0")


def babyai_text(preset: str = "default") -> ml_collections.ConfigDict:
  """The BabyAI-Text family at a preset."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.levels = LEVELS  # row r (and evaluation episode k) plays levels[r % len(levels)]

  # Where the two LM policies come from: explicit folders (a saved policy, or a Hugging Face
  # checkpoint folder, prompted with the GLAM template), or a folder holding `small/` and
  # `large/` (the embedded defaults under artifacts/, or a `launch.pretrain` workdir).
  c.policies = ml_collections.ConfigDict()
  c.policies.dir = "artifacts/babyai_text"
  c.policies.small = ""
  c.policies.large = ""
  c.policies.action = "sampled"  # "sampled" from the chosen policy's distribution, or "greedy"
  c.policies.temperature = 1.0
  # Padded batch sizes of the LM calls (a call compiles once per size it meets); empty: powers
  # of two. The large LM runs on a varying number of switched rows, so fewer sizes mean fewer
  # compilations and more padding.
  c.policies.batch_buckets = ()
  c.policies.prompt_buckets = ()  # padded prompt lengths; longer prompts keep their last tokens

  # launch.main only: pre-train the policies first (`launch.pretrain` preset) instead of loading.
  c.pretrain = ml_collections.ConfigDict()
  c.pretrain.enabled = False
  c.pretrain.preset = "babyai_text"

  # phi(s) (docs/architecture.md: what the switcher sees); the budget fraction z / n enters the Q
  # network itself whenever `switcher.budget > 0`.
  c.features = ml_collections.ConfigDict()
  c.features.hidden = True  # the small LM's mean-pooled prompt state
  c.features.confidence = True  # max probability, entropy, top-2 margin of the small LM
  c.features.time = True  # t / T, T the environment's step limit
  # The small LM's view of the large LM's prompt (its history): one more small-LM pass a step.
  c.features.history = False

  # The switcher's reward: "env" (BabyAI's 1 - 0.9 t / T on success) or "success" (1 on success).
  c.reward = "success"
  c.cost = 0.02  # price c of a large call; members override it with `member_costs`
  c.members = 1  # switchers trained together (seeds seed, seed + 1, ...)
  c.member_costs = ()  # one cost per member; overrides `members` and `cost`
  c.num_envs = 32  # environment rows per member
  c.train_steps = 1500  # acting steps (each on members * num_envs rows)
  c.log_every = 100
  c.checkpoint_every = 500  # a multiple of log_every
  c.keep_checkpoints = 3
  # Periodic greedy evaluation of every member (a multiple of log_every; 0 = none); its score
  # (return minus the price of the calls, averaged over members) picks the best checkpoint.
  c.eval_every = 1000
  c.eval_episodes = 32  # episodes of each periodic evaluation, per member

  c.eval = ml_collections.ConfigDict()  # launch.evaluate
  c.eval.episodes = 300
  c.eval.seed = 0
  c.eval.num_envs = 64  # episodes in flight
  c.eval.checkpoint = "latest"  # or "best"
  # The confidence threshold and the time schedule are calibrated to each switcher's call rate on
  # `dev_episodes` dev episodes (never on test ones), with this many fixed-point rounds.
  c.eval.dev_episodes = 200
  c.eval.calibration_rounds = 1
  # Baselines matched to each member's call rate (training.evaluation.MEMBER_BASELINES).
  c.eval.baselines = ("random", "random_held", "confidence", "schedule")  # or "trigger" too
  # The SwiftSage-style trigger's grid, searched on dev episodes for the setting nearest the rate.
  c.eval.trigger = ml_collections.ConfigDict(dict(patience=(2, 4, 8), duration=(2, 4, 8)))

  # Devices and processes (docs/scaling.md); neither changes the results.
  c.runtime = runtime_config()  # mesh "auto" or "<members>x<data>", distributed, coordinator...

  # Where each row's environments run: "local" (this process), "process" (one worker process
  # each) or "ray" (one Ray actor each, on `ray_address`, or a local Ray when it is "").
  c.envs = ml_collections.ConfigDict()
  c.envs.backend = "local"
  c.envs.ray_address = ""
  c.envs.timeout_s = 60.0  # a worker whose step takes longer is restarted

  c.switcher = switcher_config()
  c.switcher.cost = c.get_ref("cost")
  # Paired targets (docs/method.md): on BabyAI-Text the bootstrapped learner ("td") stays level
  # with random switching, paired targets beat it (results/babyai_text/report.md).
  c.switcher.target = "paired"
  c.switcher.paired.pairs_per_step = 2  # per member and acting step: ~8,500 pairs in 1,500 steps
  c.switcher.hidden_sizes = (64, 64)
  c.switcher.replay_capacity = 10_000  # every pair of a default run fits
  c.switcher.share_replay = True  # every member learns from all members' transitions
  c.switcher.min_replay = 256
  c.switcher.batch_size = 256
  c.switcher.decay_updates = c.get_ref("train_steps")  # one update per acting step (k = U = 4)
  c.switcher.epsilon_start = 1.0
  c.switcher.epsilon_end = 0.05
  c.switcher.epsilon_decay_steps = 1000
  c.switcher.train_every = 4
  c.switcher.num_updates = 4
  # Episodes end within the level's step limit and phi holds t / T, so gamma = 1 is well posed.
  # One step of the large LM moves the success rate by well under a point, far below the noise of
  # a sparse success; a decision held for 8 steps moves it 8 times as much (switching.nstep).
  c.switcher.discount = 1.0
  c.switcher.hold = 8
  c.switcher.n_step = 2

  if preset == "smoke":
    c.switcher.target = "td"  # the cheaper learner; tests set "paired" where they need it
    c.policies.dir = ""
    c.policies.batch_buckets = (8, 64)
    c.policies.prompt_buckets = (128,)
    c.num_envs = 4
    c.train_steps = 40
    c.log_every = 10
    c.checkpoint_every = 20
    c.eval_every = 20
    c.eval_episodes = 4
    c.eval.episodes = 8
    c.eval.dev_episodes = 8
    c.eval.num_envs = 8
    c.switcher.hidden_sizes = (16,)
    c.switcher.replay_capacity = 1000
    c.switcher.min_replay = 32
    c.switcher.batch_size = 16
    c.switcher.epsilon_decay_steps = 20
    c.switcher.train_every = 2
    c.switcher.num_updates = 2
  elif preset == "paper":
    c.policies.dir = ""
    c.policies.small = "/path/to/small/policy"
    c.policies.large = "/path/to/large/policy"
    c.num_envs = 64
    c.train_steps = 20_000
    c.log_every = 200
    c.checkpoint_every = 2000
    c.eval_every = 2000
    c.eval_episodes = 128
    c.eval.episodes = 1000
    c.eval.num_envs = 128
    c.switcher.replay_capacity = 500_000
    c.switcher.min_replay = 10_000
    c.switcher.batch_size = 512
    c.switcher.epsilon_decay_steps = 10_000
  elif preset != "default":
    raise ValueError(f"unknown preset {preset!r} of configs/londi.py:babyai_text; known: "
                     "default, smoke, paper")
  return c


FAMILIES = {"babyai_text": babyai_text}


def get_config(arg: str = "babyai_text") -> ml_collections.ConfigDict:
  """`family[:preset]`, e.g. `babyai_text` or `babyai_text:smoke`."""
  family, _, preset = arg.partition(":")
  if family not in FAMILIES:
    raise ValueError(f"unknown family {family!r} of configs/londi.py; known: {sorted(FAMILIES)}")
  return FAMILIES[family](preset or "default")
