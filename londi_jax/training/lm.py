"""The two LM policies as the loop uses them: loading, batched scoring with per-row FLOPs, and
action choice from common random numbers.

Actions are drawn by inverse CDF from a uniform that depends only on `(seed, episode seed, t)`
(`crn_uniform`), so every method that reaches the same state at the same step of the same
episode draws the same number (common random numbers): methods differ only where their switches
differ, and a run does not depend on how rows are batched.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import jax
import ml_collections
import numpy as np

from londi_jax.envs.babyai.prompts import PromptConfig
from londi_jax.policies import flops as flops_lib
from londi_jax.policies.policy import Buckets, Policy, PolicyOutput
from londi_jax.policies.checkpoint import load_pretrained
from londi_jax.policies.store import load_policy
from londi_jax.policies.tokenizer import Tokenizer

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _is_hf_checkpoint(folder: str) -> bool:
  return os.path.exists(os.path.join(folder, "config.json")) and any(
      f.endswith(".safetensors") for f in os.listdir(folder))


def policy_folder(config: ml_collections.ConfigDict, name: str) -> str:
  """The folder of policy `name` (`small` or `large`): `policies.<name>` if set (a policy folder
  or a Hugging Face checkpoint folder), else `policies.dir/<name>` or `policies.dir/<name>/policy`
  (a `launch.pretrain` workdir)."""
  explicit = config.policies[name]
  candidates = [explicit] if explicit else [
      os.path.join(config.policies.dir, name), os.path.join(config.policies.dir, name, "policy")]
  for folder in candidates:
    if folder and (os.path.exists(os.path.join(folder, "policy.json"))
                   or (folder == explicit and os.path.isdir(folder) and _is_hf_checkpoint(folder))):
      return os.path.abspath(folder)
  raise FileNotFoundError(
      f"no {name} policy (policy.json) in {candidates}; set --config.policies.dir to the embedded "
      f"default policies or a launch.pretrain workdir, or --config.policies.{name} to a folder")


def load_policy_any(folder: str, **kwargs) -> Policy:
  """A policy folder (`load_policy`), or a Hugging Face checkpoint folder with its tokenizer,
  prompted with the GLAM template (`PromptConfig()`)."""
  if os.path.exists(os.path.join(folder, "policy.json")):
    return load_policy(folder, **kwargs)
  model, params = load_pretrained(folder)
  return Policy(model, params, Tokenizer.load(folder),
                meta={"name": os.path.basename(folder),
                      "prompt": dataclasses.asdict(PromptConfig())}, **kwargs)


@dataclasses.dataclass
class Scored:
  """One batched policy call: the policy's output and the FLOPs of each row."""

  out: PolicyOutput
  row_flops: np.ndarray  # [R] int64
  wall_s: float


class LMRunner:
  """A policy and its prompt template; scores rows and counts FLOPs per row.

  Attributes:
    policy: the `Policy`.
    prompt_config: how this policy's prompts are written (from its saved metadata).
    name: `small` or `large`.
  """

  def __init__(self, policy: Policy, name: str):
    self.policy = policy
    self.name = name
    self.prompt_config = PromptConfig(**policy.meta.get("prompt", {}))
    self._cand_ids: dict[str, list[int]] = {}
    self._flops: dict[tuple, int] = {}
    self._key = jax.random.key(0)  # unused: actions come from `choose_actions`

  @property
  def hidden_size(self) -> int:
    return int(self.policy.config.hidden_size)

  def flops_per_step(self, prompt_len: int, cand_lens: tuple[int, ...]) -> int:
    key = (prompt_len, cand_lens)
    if key not in self._flops:
      self._flops[key] = flops_lib.flops_per_step(self.policy.config, prompt_len, cand_lens)
    return self._flops[key]

  def __call__(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> Scored:
    """Scores each row's candidates after its prompt (one jitted call for all rows)."""
    import time
    start = time.perf_counter()
    tok = self.policy.tokenizer
    prompt_ids = tok.encode_prompts(prompts)
    for c in {c for cands in candidates for c in cands} - self._cand_ids.keys():
      self._cand_ids[c] = tok.encode_candidates([c])[0]
    cand_ids = [[self._cand_ids[c] for c in cands] for cands in candidates]
    out = self.policy.score_tokens(prompt_ids, cand_ids, self._key)
    max_prompt = self.policy.buckets.prompt[-1]
    row_flops = np.array([
        self.flops_per_step(min(len(p), max_prompt), tuple(len(t) for t in c))
        for p, c in zip(prompt_ids, cand_ids)], np.int64)  # [R]
    return Scored(out=out, row_flops=row_flops, wall_s=time.perf_counter() - start)


def load_runners(config: ml_collections.ConfigDict) -> tuple[LMRunner, LMRunner]:
  """The small and the large policy of `config.policies`."""
  runners = []
  sizes = {"batch": tuple(int(b) for b in config.policies.batch_buckets),
           "prompt": tuple(int(b) for b in config.policies.prompt_buckets)}
  kwargs = {"buckets": dataclasses.replace(Buckets(), **{k: v for k, v in sizes.items() if v})}
  for name in ("small", "large"):
    policy = load_policy_any(policy_folder(config, name),
                             temperature=config.policies.temperature, **kwargs)
    runners.append(LMRunner(policy, name))
  return runners[0], runners[1]


def _splitmix64(x: np.ndarray) -> np.ndarray:
  x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
  x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
  x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
  return x ^ (x >> np.uint64(31))


def crn_uniform(seed: int, episode_seeds: np.ndarray, t: np.ndarray, stream: int = 0
                ) -> np.ndarray:
  """A uniform in [0, 1) for each row, a fixed hash (splitmix64) of `(seed, stream, episode seed,
  t)`: `[R]` float64."""
  with np.errstate(over="ignore"):
    x = _splitmix64(np.full(np.shape(t), seed, np.uint64) * np.uint64(1_000_003)
                    + np.uint64(stream))
    x = _splitmix64(x ^ np.asarray(episode_seeds, np.int64).astype(np.uint64))
    x = _splitmix64(x ^ np.asarray(t, np.int64).astype(np.uint64))
  return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def choose_actions(probs: np.ndarray, num_candidates: Sequence[int], uniforms: np.ndarray,
                   mode: str) -> np.ndarray:
  """Candidate indices `[R]`: the inverse CDF of each row's `probs` `[R, K]` at its uniform
  (`sampled`), or the argmax (`greedy`); never a padded candidate."""
  n = np.asarray(num_candidates)
  if mode == "greedy":
    return np.argmax(probs, axis=-1)
  if mode != "sampled":
    raise ValueError(f"policies.action must be 'sampled' or 'greedy', got {mode!r}")
  cdf = np.cumsum(probs, axis=-1)  # [R, K]
  idx = (cdf < (uniforms * cdf[:, -1])[:, None]).sum(-1)
  return np.minimum(idx, n - 1)
