"""LONDI: a switcher trained over a small and a large LM policy (`launch.train`, `launch.main`).

    python -m launch.train --config configs/londi.py:babyai_text --workdir DIR
    python -m launch.train --config configs/londi.py:babyai_text:smoke --workdir DIR
    python -m launch.train --config configs/londi.py:scienceworld --workdir DIR

Families: `babyai_text` (presets `smoke`: tests, seconds; `default`: 2 CPU cores, ~30 min with
`launch.main`; `paper`: a GPU and real checkpoint folders) and `scienceworld` (presets `smoke` and
`default`). The ScienceWorld family is the BabyAI-Text config of the same preset with:

- `levels`: `SCIENCEWORLD_TASKS`; rows and evaluation slots keep one task each, so each holds one
  JVM (docs/environments.md: one JVM per slot);
- `env_kwargs`: the keyword arguments of every `envs.make` of the run (training, periodic and final
  evaluation, calibration): the step limit, the simplification and `variation_stride`, the number
  of levels, so that each task's episodes play distinct variations (`docs/environments.md`; a
  run saved before the field reads as 1, the mapping it was made with);
- `reward = "score"` (the score's increment over 100), and evaluations report the mean score;
- `envs.backend = "process"` (a worker process per row, restarted with its JVM if it dies);
- `eval.baselines` with the SwiftSage-style `trigger`;
- `switcher.target = "td"`: a paired target replays its episode in two more environments per pair
  (JVMs) and plays both branches to the end, dozens of slow ScienceWorld steps per pair; set
  `"paired"` where the cores allow it.
"""

import ml_collections

from configs import pretrain as pretrain_config

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
  # The switcher's memory of its episode: phi at the last two decision points and the mean of all
  # earlier ones (a fixed recurrence over phi; no LM pass).
  c.features.memory = False
  # The episode's progress (no LM pass): score so far, steps since it rose, a rejected action,
  # the task's focus, the small LM's probability on a first focus (`training.progress`).
  c.features.progress = False

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
  # The SwiftSage-style trigger's grid, searched on dev episodes for the setting nearest the rate;
  # `rearm`: a stall triggers again only after `patience` more steps of the small LM.
  c.eval.trigger = ml_collections.ConfigDict(dict(patience=(2, 4, 8), duration=(2, 4, 8),
                                                  rearm=False))

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


# The tasks of the ScienceWorld family, those its embedded policies were cloned on (why these:
# configs/pretrain.py); episode `k` of an evaluation plays `SCIENCEWORLD_TASKS[k % 4]`.
SCIENCEWORLD_TASKS = pretrain_config.SCIENCEWORLD_TASKS


def scienceworld(preset: str = "default") -> ml_collections.ConfigDict:
  """The ScienceWorld family at a preset (`default` or `smoke`); see the module docstring."""
  if preset not in ("default", "smoke"):
    raise ValueError(f"unknown preset {preset!r} of configs/londi.py:scienceworld; known: "
                     "default, smoke")
  c = babyai_text(preset)
  c.levels = SCIENCEWORLD_TASKS  # row r (and evaluation slot i) plays levels[r % len(levels)]
  # Passed to every `envs.make` of the run (ScienceWorld's keyword arguments).
  c.env_kwargs = pretrain_config.scienceworld("scienceworld").env_kwargs
  c.reward = "score"  # the score's increment over 100: an episode's rewards sum to its score/100
  c.policies.dir = "artifacts/scienceworld"  # `small/` and `large/` of `launch.pretrain`
  c.policies.prompt_buckets = (256, 512)
  c.pretrain.preset = "scienceworld"
  c.envs.backend = "process"  # one worker process (and JVM) per row, restarted on failure
  c.eval.baselines = ("random", "random_held", "confidence", "schedule", "trigger")
  c.switcher.target = "td"  # see the module docstring
  # Episodes of up to 40 steps: decisions every 4 steps, each transition 2 decisions late.
  c.switcher.hold = 4
  c.switcher.n_step = 2
  c.num_envs = 8  # rows per member, one JVM each (~0.5 GB)
  c.train_steps = 1500
  c.eval_every = 500
  c.eval_episodes = 16
  c.eval.episodes = 200
  c.eval.num_envs = 8  # episodes in flight, one JVM each
  c.eval.dev_episodes = 64
  if preset == "smoke":
    c.levels = SCIENCEWORLD_TASKS[:3:2]  # find-living-thing and lifespan-longest-lived: short
    c.env_kwargs.step_limit = 8
    c.policies.dir = ""  # tests write tiny policies and set it
    c.policies.prompt_buckets = (64,)  # the prompts' last 64 tokens: tests run in minutes
    c.num_envs = 2  # one row per task
    c.train_steps = 16
    c.log_every = 4
    c.checkpoint_every = 8
    c.eval_every = 8
    c.eval_episodes = 2
    c.eval.episodes = 4
    c.eval.num_envs = 2
    c.eval.dev_episodes = 2
    c.eval.trigger.patience, c.eval.trigger.duration = (2,), (2, 4)
    c.switcher.hold = 2
    c.switcher.min_replay = 8
    c.switcher.batch_size = 8
  c.env_kwargs.variation_stride = len(c.levels)  # each task's episodes: distinct variations
  return c


FAMILIES = {"babyai_text": babyai_text, "scienceworld": scienceworld}


def get_config(arg: str = "babyai_text") -> ml_collections.ConfigDict:
  """`family[:preset]`, e.g. `babyai_text`, `babyai_text:smoke` or `scienceworld:smoke`."""
  family, _, preset = arg.partition(":")
  if family not in FAMILIES:
    raise ValueError(f"unknown family {family!r} of configs/londi.py; known: {sorted(FAMILIES)}")
  return FAMILIES[family](preset or "default")
