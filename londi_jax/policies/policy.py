"""An LM policy over text: prompts and candidate actions in, action distribution out.

    policy = Policy(model, params, tokenizer)
    out = policy(prompts, candidates)          # B prompts, each with its own candidate list
    out.sampled_action, out.probs, out.features, out.row_flops, out.device_time_s

Token shapes are padded to buckets (batch, prompt length, candidate count, candidate length), so
after the first call of each bucket nothing recompiles.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from londi_jax.policies import flops as flops_lib
from londi_jax.policies.model import Decoder
from londi_jax.policies.scoring import bucket, make_act_fn, pack
from londi_jax.policies.t5 import T5
from londi_jax.policies.tokenizer import Tokenizer


GROUPED_ABOVE = 64  # candidate buckets above this get calls of their own (`score_tokens`)


def _powers(lo: int, hi: int) -> tuple[int, ...]:
  return tuple(1 << i for i in range(lo.bit_length() - 1, hi.bit_length()))


@dataclasses.dataclass(frozen=True)
class Buckets:
  """Padded sizes; a call uses the smallest of each at least as large as its content.

  Attributes:
    batch: rows (prompts).
    prompt: prompt tokens; longer prompts keep their last `max(prompt)` tokens.
    candidates: candidate actions per prompt.
    cand_tokens: tokens per candidate.
  """

  batch: tuple[int, ...] = _powers(1, 256)
  prompt: tuple[int, ...] = _powers(16, 4096)
  candidates: tuple[int, ...] = _powers(2, 8192)
  cand_tokens: tuple[int, ...] = _powers(2, 64)


@dataclasses.dataclass
class PolicyOutput:
  """One batched policy call; arrays are numpy, trimmed to the real rows and candidates.

  Attributes:
    log_probs: [B, K] candidate scores `sum_j log p(a_j | prompt, a_<j)`; -inf on padding (rows
      with fewer than K candidates).
    probs: [B, K] softmax(log_probs / temperature); 0 on padding.
    greedy, sampled: [B] candidate indices.
    greedy_action, sampled_action: the candidate strings (None when scored from token ids).
    max_prob, entropy, margin: [B] confidence statistics of `probs`.
    features: [B, d] float32 mean-pooled final hidden state of the prompt (of the encoder, for
      T5).
    row_flops: [B] int64 forward FLOPs of each row's real (unpadded) tokens
      (`flops.flops_per_step` of its prompt, cut to the largest prompt bucket, and candidates).
    flops: their sum, the FLOPs of the call (`flops.scoring_flops`).
    padded_flops: the same count over the padded shapes the device ran.
    device_time_s: wall time from dispatch to `block_until_ready` (0 when the call compiled; its
      time is in `compile_time_s` instead).
    compile_time_s: time of a call that compiled, else 0.
  """

  log_probs: np.ndarray
  probs: np.ndarray
  greedy: np.ndarray
  sampled: np.ndarray
  greedy_action: list[str] | None
  sampled_action: list[str] | None
  max_prob: np.ndarray
  entropy: np.ndarray
  margin: np.ndarray
  features: np.ndarray
  row_flops: np.ndarray
  flops: int
  padded_flops: int
  device_time_s: float
  compile_time_s: float


class Policy:
  """A decoder (or a T5 encoder-decoder), its params and tokenizer, scoring candidate actions.

  Attributes:
    model: the `Decoder` or `T5`.
    params: its parameters.
    tokenizer: a `Tokenizer`.
    temperature: of the action distribution.
    buckets: the padded sizes.
    meta: free-form description (prompt config, name, training metrics) saved with the policy;
      its `max_candidate_tokens`, when set, cuts every candidate to its first that many tokens
      (as the policy was trained: ScienceWorld's few very long `pour`/`dunk` candidates would
      otherwise pad every candidate of a batch to their length).
    candidate_chunk: candidates decoded per pass (`scoring.make_candidate_scorer`): a state with
      more runs them in chunks, so memory stays bounded by the chunk, not the candidate count.
    calls, total_flops, total_device_time_s: running totals over calls that did not compile.
  """

  def __init__(self, model: Decoder | T5, params: Any, tokenizer: Tokenizer, *,
               temperature: float = 1.0, buckets: Buckets = Buckets(), seed: int = 0,
               meta: dict | None = None, candidate_chunk: int | None = 256):
    self.model = model
    self.params = params
    self.tokenizer = tokenizer
    self.temperature = temperature
    self.buckets = buckets
    self.meta = dict(meta or {})
    self.candidate_chunk = candidate_chunk
    self._act = jax.jit(make_act_fn(model, candidate_chunk))
    self._key = jax.random.key(seed)
    self._cand_ids: dict[str, list[int]] = {}  # candidate action -> its token ids
    self._flops: dict[tuple, int] = {}  # (prompt length, candidate lengths) -> FLOPs of a row
    self.calls = 0
    self.total_flops = 0
    self.total_device_time_s = 0.0

  @property
  def config(self):
    return self.model.config

  @property
  def num_compilations(self) -> int:
    """Distinct shapes compiled so far (the jit cache size)."""
    return self._act._cache_size()

  def __call__(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]],
               key: jax.Array | None = None) -> PolicyOutput:
    """Scores each prompt's candidates and picks greedy and sampled actions.

    Args:
      prompts: B prompt strings.
      candidates: B lists of candidate action strings (lengths may differ).
      key: PRNG key of the sampled action; defaults to the policy's own stream.
    """
    if len(prompts) != len(candidates):
      raise ValueError(f"{len(prompts)} prompts but {len(candidates)} candidate lists")
    prompt_ids = self.tokenizer.encode_prompts(prompts)
    out = self.score_tokens(prompt_ids, self.candidate_ids(candidates), key)
    out.greedy_action = [c[i] for c, i in zip(candidates, out.greedy)]
    out.sampled_action = [c[i] for c, i in zip(candidates, out.sampled)]
    return out

  def candidate_ids(self, candidates: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    """Token ids `[B][K_i][L_ik]` of each row's candidates; each action string is tokenised once
    per policy (environments offer the same actions again and again)."""
    new = list({c for cands in candidates for c in cands} - self._cand_ids.keys())
    cap = self.meta.get("max_candidate_tokens")
    self._cand_ids.update(
        (c, ids[:cap]) for c, ids in zip(new, self.tokenizer.encode_candidates(new)))
    return [[self._cand_ids[c] for c in cands] for cands in candidates]

  def score_tokens(self, prompt_ids: Sequence[Sequence[int]],
                   cand_ids: Sequence[Sequence[Sequence[int]]],
                   key: jax.Array | None = None) -> PolicyOutput:
    """`__call__` on token ids: `prompt_ids` [B][P_i], `cand_ids` [B][K_i][L_ik].

    Rows with more than `GROUPED_ABOVE` candidates are scored in one call per candidate bucket
    (a row with 150 candidates is not padded to the 1,024 of another), the rest together, and the
    outputs merged in row order; short lists (BabyAI-Text's fixed one) make one call.
    """
    n_cands = [len(c) for c in cand_ids]
    if min(n_cands, default=0) < 1:
      raise ValueError("every prompt needs at least one candidate")
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(n_cands):
      size = bucket(n, self.buckets.candidates)
      groups.setdefault(size if size > GROUPED_ABOVE else 0, []).append(i)
    if len(groups) == 1:
      return self._score_rows(prompt_ids, cand_ids, key)
    parts = [(rows, self._score_rows([prompt_ids[i] for i in rows], [cand_ids[i] for i in rows],
                                     None if key is None else jax.random.fold_in(key, g)))
             for g, rows in enumerate(groups.values())]
    return _merge(parts, len(prompt_ids), max(n_cands))

  def _score_rows(self, prompt_ids: Sequence[Sequence[int]],
                  cand_ids: Sequence[Sequence[Sequence[int]]],
                  key: jax.Array | None) -> PolicyOutput:
    """One padded call over all the rows."""
    b = len(prompt_ids)
    n_cands = [len(c) for c in cand_ids]
    bk = self.buckets
    max_prompt = bk.prompt[-1]
    shapes = dict(
        batch_size=bucket(b, bk.batch),
        prompt_len=bucket(min(max(len(p) for p in prompt_ids), max_prompt), bk.prompt),
        num_candidates=bucket(max(n_cands), bk.candidates),
        cand_len=bucket(max(len(t) for c in cand_ids for t in c), bk.cand_tokens))
    batch = pack([list(p) for p in prompt_ids], [[list(t) for t in c] for c in cand_ids],
                 pad_id=self.tokenizer.pad_id, **shapes)
    if key is None:
      key = jax.random.fold_in(self._key, self.calls)
      self.calls += 1
    before = self.num_compilations
    start = time.perf_counter()
    res = jax.block_until_ready(self._act(self.params, batch, jnp.float32(self.temperature), key))
    elapsed = time.perf_counter() - start
    compiled = self.num_compilations > before
    res = jax.tree_util.tree_map(np.asarray, res)
    k = max(n_cands)
    valid = np.arange(k)[None] < np.array(n_cands)[:, None]  # [batch, candidates]
    row_flops = self._rows_flops(prompt_ids, cand_ids)  # [B]
    useful = int(row_flops.sum())
    padded = flops_lib.scoring_flops(
        self.config, [shapes["prompt_len"]] * shapes["batch_size"],
        [[shapes["cand_len"]] * shapes["num_candidates"]] * shapes["batch_size"])
    if not compiled:
      self.total_flops += useful
      self.total_device_time_s += elapsed
    return PolicyOutput(
        log_probs=np.where(valid, res["log_probs"][:b, :k], -np.inf),
        probs=res["probs"][:b, :k],
        greedy=res["greedy"][:b],
        sampled=res["sampled"][:b],
        greedy_action=None,
        sampled_action=None,
        max_prob=res["max_prob"][:b],
        entropy=res["entropy"][:b],
        margin=res["margin"][:b],
        features=res["features"][:b],
        row_flops=row_flops,
        flops=useful,
        padded_flops=padded,
        device_time_s=0.0 if compiled else elapsed,
        compile_time_s=elapsed if compiled else 0.0)

  def row_flops(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> np.ndarray:
    """`[B]` int64: the forward FLOPs scoring each row would take (`PolicyOutput.row_flops`),
    from its token counts alone, without running the model."""
    return self._rows_flops(self.tokenizer.encode_prompts(prompts), self.candidate_ids(candidates))

  def _rows_flops(self, prompt_ids: Sequence[Sequence[int]],
                  cand_ids: Sequence[Sequence[Sequence[int]]]) -> np.ndarray:
    max_prompt = self.buckets.prompt[-1]
    return np.array([self._row_flops(min(len(p), max_prompt), tuple(len(t) for t in c))
                     for p, c in zip(prompt_ids, cand_ids)], np.int64)

  def _row_flops(self, prompt_len: int, cand_lens: tuple[int, ...]) -> int:
    """`flops.flops_per_step`, cached: a run meets few distinct shapes."""
    key = (prompt_len, cand_lens)
    if key not in self._flops:
      self._flops[key] = flops_lib.flops_per_step(self.config, prompt_len, cand_lens)
    return self._flops[key]


def _merge(parts: list[tuple[list[int], PolicyOutput]], b: int, k: int) -> PolicyOutput:
  """The outputs of calls over disjoint row sets, as one output over `b` rows and `k`
  candidates (padding: log-probability -inf, probability 0)."""
  first = parts[0][1]
  log_probs = np.full((b, k), -np.inf, first.log_probs.dtype)
  probs = np.zeros((b, k), first.probs.dtype)
  per_row = {name: np.zeros((b, *getattr(first, name).shape[1:]), getattr(first, name).dtype)
             for name in ("greedy", "sampled", "max_prob", "entropy", "margin", "features",
                          "row_flops")}
  for rows, out in parts:
    width = out.log_probs.shape[1]
    log_probs[rows, :width] = out.log_probs
    probs[rows, :width] = out.probs
    for name, array in per_row.items():
      array[rows] = getattr(out, name)
  outs = [out for _, out in parts]
  return PolicyOutput(
      log_probs=log_probs, probs=probs, greedy_action=None, sampled_action=None,
      flops=sum(o.flops for o in outs), padded_flops=sum(o.padded_flops for o in outs),
      device_time_s=sum(o.device_time_s for o in outs),
      compile_time_s=sum(o.compile_time_s for o in outs), **per_row)
