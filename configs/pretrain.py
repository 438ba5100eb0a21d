"""Behaviour cloning of a small and a large policy (`launch.pretrain`).

    python -m launch.pretrain --config configs/pretrain.py:babyai_text --workdir DIR
    BabyAI-Text presets: smoke (seconds, tests), babyai_text (CPU, ~15 min), full (the embedded
    default policies), paper (real checkpoint folders, GPU), paper_t5 (the same over Flan-T5)
    ScienceWorld presets: scienceworld (from gold paths; about 1.5 hours on 2 cores),
    scienceworld_smoke (tests)

`paper` and `paper_t5` hold placeholder folders: set `--config.policies.small.checkpoint` and
`--config.policies.large.checkpoint` (launch.pretrain names the field it cannot read). Any
Hugging Face folder of a supported `model_type` (llama, qwen2, qwen3, t5) fits either policy.

The small policy sees the current observation only; the large one a longer window plus the
episode's first observation (the starting pose, which missions such as `behind you` refer to).
"""

import ml_collections

LEVELS = ("babyai_text/BabyAI-GoToLocal-v0", "babyai_text/BabyAI-PickupLoc-v0")

# Short gold paths (3-20 steps), short candidate lists (medians 145-450) and many test variations
# (32-135 each), over classification, life spans and measurement: tasks 2 CPU cores clone and
# evaluate in about 1.5 hours. Any other task is one `--config.levels` away.
SCIENCEWORLD_TASKS = ("scienceworld/find-living-thing", "scienceworld/find-plant",
                      "scienceworld/lifespan-longest-lived", "scienceworld/use-thermometer")


def _model(layers: int, d: int, heads: int, kv_heads: int, ff: int) -> ml_collections.ConfigDict:
  """A new model's shape. `architecture` `llama` is a decoder; `t5` an encoder-decoder with
  `layers` blocks per stack and a gated-GELU feed-forward of width `ff` (`num_kv_heads` and
  `rope_theta` unused; a tied head is the original T5's, `bc.model_config`)."""
  return ml_collections.ConfigDict(dict(
      architecture="llama", num_layers=layers, hidden_size=d, num_heads=heads,
      num_kv_heads=kv_heads, intermediate_size=ff, rope_theta=10000.0, tie_word_embeddings=True))


def _policy(model, num_observations: int, num_actions: int, keep_first: bool, steps: int,
            lr: float) -> ml_collections.ConfigDict:
  p = ml_collections.ConfigDict()
  p.checkpoint = ""  # a Hugging Face checkpoint folder to fine-tune instead of `model`
  p.model = model
  p.prompt = ml_collections.ConfigDict(dict(
      template="compact", num_observations=num_observations, num_actions=num_actions,
      keep_first=keep_first))
  p.max_prompt_tokens = 256  # longer prompts keep their last tokens
  p.steps = steps
  p.batch_size = 64
  p.lr = lr
  p.warmup = 100
  p.weight_decay = 0.0
  return p


def _scienceworld_policy(model, num_actions: int, steps: int, lr: float
                         ) -> ml_collections.ConfigDict:
  p = _policy(model, 0, 0, False, steps, lr)
  p.prompt = ml_collections.ConfigDict(dict(num_actions=num_actions, history_chars=80,
                                            observation_chars=600))
  p.max_prompt_tokens = 512  # the compact prompt stays below it, so no prompt is cut
  # Longer candidates (a few `pour`/`dunk` ones between vessels, up to 34 tokens) are scored on
  # their first 8 tokens; the tasks' gold actions are all shorter.
  p.max_candidate_tokens = 8
  p.batch_size = 16
  p.num_candidates = 32  # the expert's candidate and 31 others of its state (bc_sampled)
  return p


def scienceworld(preset: str) -> ml_collections.ConfigDict:
  """ScienceWorld: policies cloned from the gold paths of the tasks' train variations.

  Both see the current state (task, time, score, room, observation, inventory) and no earlier
  actions: the small one through one narrow layer trained for 400 steps, the large one through 3
  wider layers trained for 1,500. This is the embedded pair, artifacts/scienceworld, whose README
  gives the other pairs tried.
  """
  c = ml_collections.ConfigDict()
  c.family = "scienceworld"
  c.seed = 0
  c.levels = SCIENCEWORLD_TASKS
  # Twice the longest gold path of the tasks (3-21 steps).
  c.env_kwargs = ml_collections.ConfigDict(dict(simplification="easy", step_limit=40))
  c.demos = ml_collections.ConfigDict()
  c.demos.path = ""  # an existing folder of demos.jsonl (all tasks) instead of collecting
  c.demos.episodes_per_level = 120  # each train variation at most once
  c.demos.val_fraction = 0.05
  c.policies = ml_collections.ConfigDict()
  c.policies.small = _scienceworld_policy(_model(1, 24, 2, 1, 48), 0, steps=400, lr=3e-3)
  c.policies.large = _scienceworld_policy(_model(3, 128, 4, 2, 256), 0, steps=1500, lr=1.5e-3)
  c.length_buckets = (128, 192, 256, 320, 384, 512)  # padded prompt lengths of training batches
  c.log_every = 100
  c.checkpoint_every = 250
  c.val_states = 128  # validation states scored over all their candidates at each log
  c.eval = ml_collections.ConfigDict()
  c.eval.episodes = 120  # test variations, spread over `levels`
  c.eval.mode = "sampled"
  c.eval.temperature = 1.0
  c.eval.num_envs = 8  # one JVM each
  if preset == "scienceworld_smoke":
    c.levels = ("scienceworld/find-living-thing", "scienceworld/lifespan-longest-lived")
    c.env_kwargs.step_limit = 8
    c.demos.episodes_per_level = 3
    c.demos.val_fraction = 0.34
    for p in (c.policies.small, c.policies.large):
      p.model = _model(1, 16, 2, 1, 32)
      p.steps = 20
      p.batch_size = 8
      p.num_candidates = 16
      p.warmup = 5
    c.length_buckets = (512,)
    c.log_every = 10
    c.checkpoint_every = 10
    c.val_states = 8
    c.eval.episodes = 2
    c.eval.num_envs = 2
  return c


def get_config(preset: str = "babyai_text") -> ml_collections.ConfigDict:
  if preset.startswith("scienceworld"):
    if preset not in ("scienceworld", "scienceworld_smoke"):
      raise ValueError(f"unknown preset {preset!r} of configs/pretrain.py; known ScienceWorld "
                       "presets: scienceworld, scienceworld_smoke")
    return scienceworld(preset)
  c = ml_collections.ConfigDict()
  c.family = "babyai_text"
  c.seed = 0
  c.levels = LEVELS
  c.demos = ml_collections.ConfigDict()
  c.demos.path = ""  # an existing demonstration folder (demos.jsonl) instead of collecting
  c.demos.episodes_per_level = 1500
  c.demos.val_fraction = 0.02  # episodes held out for per-step validation accuracy
  c.policies = ml_collections.ConfigDict()
  c.policies.small = _policy(_model(1, 32, 2, 1, 64), 1, 0, False, steps=400, lr=3e-3)
  c.policies.large = _policy(_model(4, 128, 4, 2, 384), 3, 2, True, steps=600, lr=1.5e-3)
  c.length_buckets = (32, 48, 64, 96)  # training prompts are padded to one of these (or longer)
  c.log_every = 50
  c.checkpoint_every = 250
  c.eval = ml_collections.ConfigDict()
  c.eval.episodes = 200  # held-out (`test` split) episodes per policy, spread over `levels`
  c.eval.mode = "sampled"
  c.eval.temperature = 1.0
  c.eval.num_envs = 50

  if preset == "smoke":
    c.demos.episodes_per_level = 8
    c.demos.val_fraction = 0.2
    c.length_buckets = ()
    c.policies.small = _policy(_model(1, 32, 2, 1, 64), 1, 0, False, steps=80, lr=1e-2)
    c.policies.large = _policy(_model(1, 32, 2, 1, 64), 2, 1, True, steps=80, lr=1e-2)
    for p in (c.policies.small, c.policies.large):
      p.batch_size = 32
      p.warmup = 10
    c.log_every = 40
    c.checkpoint_every = 60
    c.eval.episodes = 4
    c.eval.num_envs = 4
  elif preset == "full":
    c.demos.episodes_per_level = 2500
    c.policies.small.steps = 800
    c.policies.large.steps = 1100
    c.eval.episodes = 400
  elif preset in ("paper", "paper_t5"):
    c.demos.episodes_per_level = 5000
    for p in (c.policies.small, c.policies.large):
      p.prompt.template = "glam"
      p.prompt.num_observations = 3
      p.prompt.num_actions = 2
      p.prompt.keep_first = False
      p.max_prompt_tokens = 1024
      p.batch_size = 64
      p.lr = 1e-5
      p.steps = 5000
    # Placeholders: set both to real folders (each with its tokenizer).
    c.policies.small.checkpoint = "/path/to/SmolLM2-135M"
    c.policies.large.checkpoint = "/path/to/Qwen2.5-1.5B"
    if preset == "paper_t5":  # GLAM's model family; AdamW fine-tuning of T5 commonly uses 1e-4
      c.policies.small.checkpoint = "/path/to/flan-t5-small"
      c.policies.large.checkpoint = "/path/to/flan-t5-large"
      for p in (c.policies.small, c.policies.large):
        p.lr = 1e-4
    c.eval.episodes = 1000
  elif preset != "babyai_text":
    raise ValueError(f"unknown preset {preset!r} of configs/pretrain.py; known: smoke, "
                     "babyai_text, full, paper, paper_t5, scienceworld, scienceworld_smoke")
  return c
