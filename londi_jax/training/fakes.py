"""Tiny untrained small and large policies, written in seconds, for tests and benchmarks.

    make_tiny_policies(folder)   # folder/small/ and folder/large/, readable by load_policy

They are random decoders over a word tokenizer of BabyAI-Text's compact prompts; the large one
is wider and deeper and reads a longer history, so FLOPs and prompts differ as they do for real
policies. Nothing here is trained: use them to exercise the machinery, not to measure learning.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from londi_jax import envs
from londi_jax.envs.babyai.prompts import PromptConfig
from londi_jax.policies.config import DecoderConfig
from londi_jax.policies.model import init_params
from londi_jax.policies.store import save_policy
from londi_jax.policies.tokenizer import build_word_tokenizer

LEVELS = ("babyai_text/BabyAI-GoToLocal-v0", "babyai_text/BabyAI-PickupLoc-v0")
PROMPTS = {"small": PromptConfig(template="compact", num_observations=1, num_actions=0),
           "large": PromptConfig(template="compact", num_observations=3, num_actions=2,
                                 keep_first=True)}
SIZES = {"small": dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2,
                       num_kv_heads=1),
         "large": dict(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                       num_kv_heads=1)}


def vocabulary(episodes: int = 40, steps: int = 30, seed: int = 0) -> list[str]:
  """Prompts of random-action episodes of `LEVELS`, and the action strings."""
  rng = np.random.default_rng(seed)
  texts = []
  for k in range(episodes):
    env_id = LEVELS[k % len(LEVELS)]
    env = envs.make(env_id)
    obs = env.reset(seed=seed + k)
    hist = {n: envs.prompt_history(env_id, c) for n, c in PROMPTS.items()}
    for h in hist.values():
      h.reset(obs)
    texts += list(obs.valid_actions)
    for _ in range(steps):
      texts += [h.prompt() for h in hist.values()]
      action = obs.valid_actions[rng.integers(3)]  # turns and forward: cover the room
      obs, reward, done, _ = env.step(action)
      if done:
        break
      for h in hist.values():
        h.record(action, obs, reward)
    env.close()
  return texts


def pretrain_sizes(preset: str) -> dict:
  """The model sizes and prompts of a `configs/pretrain.py` preset, in this module's format."""
  from configs import pretrain  # the project root is on the path wherever `configs` is

  c = pretrain.get_config(preset)
  sizes = {}
  for name in ("small", "large"):
    m = c.policies[name].model
    sizes[name] = dict(hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
                       num_layers=m.num_layers, num_heads=m.num_heads, num_kv_heads=m.num_kv_heads)
  prompts = {name: PromptConfig(**c.policies[name].prompt.to_dict()) for name in sizes}
  return {"sizes": sizes, "prompts": prompts}


def make_tiny_policies(folder: str, seed: int = 0, sizes: dict | None = None,
                       prompts: dict | None = None) -> str:
  """Writes `folder/small` and `folder/large` (of `SIZES` and `PROMPTS` unless given); returns
  `folder`."""
  sizes, prompts = sizes or SIZES, prompts or PROMPTS
  tokenizer = build_word_tokenizer(vocabulary(seed=seed))
  for k, name in enumerate(("small", "large")):
    s = sizes[name]
    config = DecoderConfig(vocab_size=-(-tokenizer.vocab_size // 8) * 8,
                           head_dim=s["hidden_size"] // s["num_heads"], tie_word_embeddings=True,
                           **s)
    params = init_params(config, jax.random.fold_in(jax.random.key(seed), k))
    save_policy(os.path.join(folder, name), config, params, tokenizer,
                meta={"name": name, "prompt": dataclasses.asdict(prompts[name]),
                      "levels": list(LEVELS), "untrained": True})
  return folder
