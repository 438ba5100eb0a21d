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
import time
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

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
  prompted with its environment family's default template (an empty prompt config; GLAM's
  template on BabyAI-Text)."""
  if os.path.exists(os.path.join(folder, "policy.json")):
    return load_policy(folder, **kwargs)
  model, params = load_pretrained(folder)
  return Policy(model, params, Tokenizer.load(folder),
                meta={"name": os.path.basename(folder), "prompt": {}}, **kwargs)


class _PlacedAct:
  """A policy's jitted `act(params, batch, temperature, key)` with the batch split over devices
  (every leaf of a `TokenBatch` leads with the batch axis) and the rest replicated. The batch is
  placed before the call because jit refuses to split host arrays itself when the process is
  one of several."""

  def __init__(self, act, rows: NamedSharding, replicated: NamedSharding):
    self._rows = rows
    self._jitted = jax.jit(act, in_shardings=(replicated, rows, replicated, replicated))

  def __call__(self, params, batch, temperature, key):
    return self._jitted(params, jax.device_put(batch, self._rows), temperature, key)

  def _cache_size(self) -> int:  # `Policy.num_compilations` reads it
    return self._jitted._cache_size()  # pylint: disable=protected-access


@dataclasses.dataclass
class Scored:
  """One batched policy call: the policy's output and the FLOPs of each row."""

  out: PolicyOutput
  row_flops: np.ndarray  # [R] int64
  wall_s: float


class LMRunner:
  """A policy as the loop calls it: its prompt config, and batched scoring timed on the wall.

  Attributes:
    policy: the `Policy`.
    prompt_config: how this policy's prompts are written, as saved in its metadata (a mapping of
      its environment family's `PromptConfig` fields; `envs.prompt_history` reads it).
    name: `small` or `large`.
    mesh: the devices its batches are split over (`shard`), or None: the policy's own device.
  """

  def __init__(self, policy: Policy, name: str, mesh: Mesh | None = None):
    self.policy = policy
    self.name = name
    self.prompt_config: dict[str, Any] = dict(policy.meta.get("prompt", {}))
    self.mesh: Mesh | None = None
    self._own_act = None  # the policy's own jitted scoring, once `shard` replaces it
    if mesh is not None:
      self.shard(mesh)

  def shard(self, mesh: Mesh) -> None:
    """Splits every scoring batch over `mesh`'s devices (data parallel over its flattened
    axes), with the parameters replicated on each; idempotent.

    The batch buckets are rounded up to multiples of the device count, so every device scores
    the same number of rows and each bucket still compiles once. On one device nothing changes:
    the policy keeps its own jitted scoring, buckets and parameters.
    """
    if mesh.size == 1 or mesh == self.mesh:
      return
    policy = self.policy
    rows = NamedSharding(mesh, PartitionSpec(mesh.axis_names))  # [batch, ...] split
    replicated = NamedSharding(mesh, PartitionSpec())
    if self._own_act is None:
      self._own_act = policy._act  # pylint: disable=protected-access
    policy.params = jax.device_put(policy.params, replicated)
    policy._act = _PlacedAct(self._own_act, rows, replicated)  # pylint: disable=protected-access
    policy.buckets = dataclasses.replace(
        policy.buckets, batch=multiples_of(policy.buckets.batch, mesh.size))
    self.mesh = mesh

  @property
  def hidden_size(self) -> int:
    return int(self.policy.config.hidden_size)

  def __call__(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> Scored:
    """Scores each row's candidates after its prompt (one jitted call for all rows)."""
    start = time.perf_counter()
    out = self.policy(prompts, candidates)
    return Scored(out=out, row_flops=out.row_flops, wall_s=time.perf_counter() - start)


def multiples_of(sizes: Sequence[int], n: int) -> tuple[int, ...]:
  """`sizes` each rounded up to a multiple of `n`, without repeats, in increasing order."""
  return tuple(sorted({-(-int(s) // n) * n for s in sizes}))


def load_runners(config: ml_collections.ConfigDict,
                 mesh: Mesh | None = None) -> tuple[LMRunner, LMRunner]:
  """The small and the large policy of `config.policies`, their batches split over `mesh`'s
  devices when given (`LMRunner.shard`)."""
  runners = []
  sizes = {"batch": tuple(int(b) for b in config.policies.batch_buckets),
           "prompt": tuple(int(b) for b in config.policies.prompt_buckets)}
  kwargs = {"buckets": dataclasses.replace(Buckets(), **{k: v for k, v in sizes.items() if v})}
  for name in ("small", "large"):
    policy = load_policy_any(policy_folder(config, name),
                             temperature=config.policies.temperature, **kwargs)
    runners.append(LMRunner(policy, name, mesh))
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


def held_coins(seed: int, episode_seeds: np.ndarray, t: np.ndarray, hold: int, rate: float,
               stream: int) -> np.ndarray:
  """Held random switching: `[R]` int64 switches, 1 with probability `rate` by a coin drawn at
  each row's decision step `t - t % hold` (`crn_uniform` of `stream`) and held until the next."""
  t = np.asarray(t, np.int64)
  return (crn_uniform(seed, episode_seeds, t - t % hold, stream) < rate).astype(np.int64)


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
