"""Scoring candidate actions with a decoder, prompt encoded once per state.

GLAM (Carta et al. 2023, arXiv 2302.02662) grounds an LM in a text environment by scoring each
valid action `a` with `log p(a | prompt) = sum_j log p(a_j | prompt, a_<j)` and acting from
`softmax(scores / temperature)`. Here the prompt runs once; every candidate then runs as its own
group over the prompt's cached keys and values (it attends to the prompt and causally to itself,
never to other candidates), so all candidates of a state cost one pass, not one each.

A T5 encoder-decoder (Flan-T5, the model family of GLAM) scores the same way with the encoder
run once per state: the prompt is encoded once, each decoder block's cross-attention keys and
values of it are computed once, the decoder start token runs once, and every candidate then runs
as its own group of decoder tokens over the start token's cached keys and values and over the
state's encoder output, which is broadcast inside the attention products, never copied per
candidate.

With `chunk`, candidates beyond the prompt's pass run `chunk` at a time (`jax.lax.map` over
groups of candidates), so the largest intermediate, the candidate tokens' logits
`[B, chunk, L - 1, V]`, stays bounded however many candidates a state offers (ScienceWorld's
lists run to thousands); the prompt is still encoded once per state.

Everything in this module is a pure function of arrays of fixed (bucketed) shapes; padding rows,
candidates and tokens are masked exactly.
"""

from __future__ import annotations

from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from londi_jax.policies.model import Decoder
from londi_jax.policies.t5 import T5

_MASKED = -1e30


@flax.struct.dataclass
class TokenBatch:
  """A padded batch of prompts, each with its own candidate actions.

  Attributes:
    prompt_ids: [batch, prompt_tokens] int32, right-padded.
    prompt_mask: [batch, prompt_tokens] bool.
    cand_ids: [batch, candidates, cand_tokens] int32, right-padded.
    cand_mask: [batch, candidates, cand_tokens] bool; a candidate with no token is padding.
  """

  prompt_ids: jax.Array
  prompt_mask: jax.Array
  cand_ids: jax.Array
  cand_mask: jax.Array

  @property
  def cand_valid(self) -> jax.Array:
    return self.cand_mask[..., 0]  # [batch, candidates]


@flax.struct.dataclass
class Scores:
  """Candidate log-probabilities and the prompt features.

  Attributes:
    log_probs: [batch, candidates] float32, `sum_j log p(a_j | prompt, a_<j)`; padding is -1e30.
    features: [batch, d] float32, the mean of the prompt's final hidden states (the encoder's,
      for an encoder-decoder).
  """

  log_probs: jax.Array
  features: jax.Array


def _token_log_probs(model: Decoder | T5, params, hidden: jax.Array, targets: jax.Array
                     ) -> jax.Array:
  """log softmax(logits(hidden))[target], float32, shape of `targets`."""
  logits = model.apply({"params": params}, hidden, method=type(model).logits).astype(jnp.float32)
  return jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), targets[..., None], axis=-1)[
      ..., 0]


def _mean_pool(hidden: jax.Array, mask: jax.Array) -> jax.Array:
  """The mean over real tokens of `hidden` [batch, tokens, d], float32 [batch, d]."""
  weights = mask.astype(jnp.float32)
  return jnp.einsum("btd,bt->bd", hidden.astype(jnp.float32), weights) / jnp.maximum(
      weights.sum(-1), 1.0)[:, None]


def over_chunks(fn: Callable[[jax.Array, jax.Array], jax.Array], cand_ids: jax.Array,
                cand_mask: jax.Array, chunk: int | None) -> jax.Array:
  """`fn(cand_ids, cand_mask) -> [B, K]`, run on `chunk` candidates at a time.

  Args:
    fn: a per-candidate function of `[B, C, L]` ids and mask, returning `[B, C]`.
    cand_ids, cand_mask: `[B, K, L]`.
    chunk: candidates per call; None (or at least K) calls `fn` once on all of them. K is padded
      with masked candidates to a multiple of `chunk`.
  """
  b, k = cand_ids.shape[:2]
  if chunk is None or chunk >= k:
    return fn(cand_ids, cand_mask)
  n = -(-k // chunk)
  pad = [(0, 0), (0, n * chunk - k), (0, 0)]
  ids, mask = jnp.pad(cand_ids, pad), jnp.pad(cand_mask, pad)

  def split(x):  # [B, n * chunk, L] -> [n, B, chunk, L]
    return jnp.moveaxis(x.reshape(b, n, chunk, x.shape[-1]), 1, 0)

  out = jax.lax.map(lambda a: fn(*a), (split(ids), split(mask)))  # [n, B, chunk]
  return jnp.moveaxis(out, 0, 1).reshape(b, n * chunk)[:, :k]


def make_candidate_scorer(model: Decoder | T5, chunk: int | None = None
                          ) -> Callable[[dict, TokenBatch], Scores]:
  """Builds `score(params, batch) -> Scores` for `model` (jit it, or call inside a jitted step).

  A `T5` model gets `make_encoder_decoder_scorer`'s scorer. `chunk`: candidates decoded per pass
  (see the module docstring); None decodes all of them at once.
  """
  if isinstance(model, T5):
    return make_encoder_decoder_scorer(model, chunk)

  def score(params, batch: TokenBatch) -> Scores:
    prompt_mask = batch.prompt_mask
    hidden, kvs = model.apply({"params": params}, batch.prompt_ids, prompt_mask.astype(jnp.int32),
                              method=Decoder.encode)  # [batch, prompt_tokens, d]
    weights = prompt_mask.astype(jnp.float32)
    n_prompt = weights.sum(-1)  # [batch]
    features = jnp.einsum("btd,bt->bd", hidden.astype(jnp.float32), weights) / jnp.maximum(
        n_prompt, 1.0)[:, None]
    last = jnp.maximum(n_prompt.astype(jnp.int32) - 1, 0)
    h_last = jnp.take_along_axis(hidden, last[:, None, None], axis=1)  # [batch, 1, d]
    first = _token_log_probs(model, params, h_last, batch.cand_ids[..., 0])  # [batch, candidates]

    cand_len = batch.cand_ids.shape[-1]
    causal = jnp.tril(jnp.ones((cand_len, cand_len), bool))

    def rest(cand_ids, cand_mask):  # [batch, c, l] -> [batch, c]
      positions = n_prompt.astype(jnp.int32)[:, None, None] + jnp.arange(cand_len)  # [b, c, l]
      mask = causal & cand_mask[:, :, None, :]  # [batch, c, l(query), l(key)]
      cand_hidden = model.apply({"params": params}, cand_ids, positions, mask, kvs,
                                prompt_mask, method=Decoder.extend)  # [batch, c, l, d]
      logp = _token_log_probs(model, params, cand_hidden[:, :, :-1], cand_ids[:, :, 1:])
      return jnp.where(cand_mask[..., 1:], logp, 0.0).sum(-1)

    total = jnp.where(batch.cand_mask[..., 0], first, 0.0) + over_chunks(
        rest, batch.cand_ids, batch.cand_mask, chunk)
    return Scores(jnp.where(batch.cand_valid, total, _MASKED), features)

  return score


def make_encoder_decoder_scorer(model: T5, chunk: int | None = None
                                ) -> Callable[[dict, TokenBatch], Scores]:
  """Builds `score(params, batch) -> Scores` for a T5 model, the encoder run once per state.

  A candidate `a` of `l` tokens is scored as GLAM scores it with a seq2seq model: the decoder
  input is `[start, a_1, ..., a_(l-1)]` and

      score(a) = sum_j log p(a_j | prompt, start, a_<j)

  The prompt is encoded once per state, and each decoder block's cross-attention keys and
  values `[B, P, heads, d_kv]` are computed once from it. The start token is decoded once per
  state: it gives the first token's log-probability of every candidate, and its keys and values
  become a shared decoder prefix. Every candidate then decodes `a_1 .. a_(l-1)` as its own group
  `[B, K, l - 1]`, attending causally to itself, to the start token and to the state's encoder
  output, with no per-candidate copy of the encoder states. `chunk`: candidates decoded per pass.
  """
  start_id = model.config.decoder_start_token_id

  def apply(params, *args, method):
    return model.apply({"params": params}, *args, method=method)

  def score(params, batch: TokenBatch) -> Scores:
    prompt_mask = batch.prompt_mask
    b, k, cand_len = batch.cand_ids.shape
    encoded = apply(params, batch.prompt_ids, prompt_mask.astype(jnp.int32),
                    method=T5.encode)  # [batch, prompt_tokens, d]
    features = _mean_pool(encoded, prompt_mask)
    cross = apply(params, encoded, method=T5.cross_kv)  # per block, [batch, prompt_tokens, h, d_kv]

    start = jnp.full((b, 1, 1), start_id, jnp.int32)  # [batch, 1 group, 1 token]
    h_start, kv_start = apply(params, start, jnp.ones((b, 1, 1, 1), bool), cross, prompt_mask,
                              method=T5.decode)  # [batch, 1, 1, d]
    first = _token_log_probs(model, params, h_start[:, 0], batch.cand_ids[..., 0])  # [batch, k]
    total = jnp.where(batch.cand_mask[..., 0], first, 0.0)
    if cand_len > 1:
      prefix = [(kk[:, 0], vv[:, 0]) for kk, vv in kv_start]  # [batch, 1, h, d_kv]
      causal = jnp.tril(jnp.ones((cand_len - 1, cand_len - 1), bool))

      def rest(cand_ids, cand_mask):  # [batch, c, l] -> [batch, c]
        inputs = cand_ids[..., :-1]  # [batch, c, l - 1]: a_1 .. a_(l-1)
        mask = causal & cand_mask[:, :, None, :-1]  # [batch, c, l-1 (query), l-1 (key)]
        hidden, _ = apply(params, inputs, mask, cross, prompt_mask, prefix,
                          jnp.ones((b, 1), bool), method=T5.decode)  # [batch, c, l - 1, d]
        logp = _token_log_probs(model, params, hidden, cand_ids[..., 1:])
        return jnp.where(cand_mask[..., 1:], logp, 0.0).sum(-1)

      total = total + over_chunks(rest, batch.cand_ids, batch.cand_mask, chunk)
    return Scores(jnp.where(batch.cand_valid, total, _MASKED), features)

  return score


def candidate_log_softmax(log_probs: jax.Array, valid: jax.Array,
                          temperature: float | jax.Array = 1.0) -> jax.Array:
  """log softmax(scores / temperature) over the valid candidates; padding gets -1e30."""
  logits = jnp.where(valid, log_probs / temperature, _MASKED)
  return jnp.where(valid, jax.nn.log_softmax(logits, axis=-1), _MASKED)


def confidence(probs: jax.Array, valid: jax.Array) -> dict[str, jax.Array]:
  """Max probability, entropy `-sum p log p` and top-2 margin `p_(1) - p_(2)` per row."""
  probs = jnp.where(valid, probs, 0.0)
  entropy = -jnp.sum(jnp.where(probs > 0, probs * jnp.log(jnp.where(probs > 0, probs, 1.0)), 0.0),
                     axis=-1)
  top2 = jax.lax.top_k(probs, min(2, probs.shape[-1]))[0]  # [batch, 2]
  second = top2[:, 1] if probs.shape[-1] > 1 else jnp.zeros_like(top2[:, 0])
  return {"max_prob": top2[:, 0], "entropy": entropy, "margin": top2[:, 0] - second}


def make_act_fn(model: Decoder | T5, chunk: int | None = None):
  """Builds `act(params, batch, temperature, key) -> dict` of everything a policy step reports.

  `chunk`: candidates decoded per pass (`make_candidate_scorer`).

  Outputs: `log_probs` [B, K] (candidate scores), `probs` [B, K] (softmax at `temperature`,
  exactly 0 on padding), `greedy` and `sampled` [B] (candidate indices), `max_prob`, `entropy`,
  `margin` [B], and `features` [B, d] float32.
  """
  scorer = make_candidate_scorer(model, chunk)

  def act(params, batch: TokenBatch, temperature: jax.Array, key: jax.Array) -> dict:
    s = scorer(params, batch)
    valid = batch.cand_valid
    logp = candidate_log_softmax(s.log_probs, valid, temperature)
    probs = jnp.where(valid, jnp.exp(logp), 0.0)
    return {
        "log_probs": s.log_probs,
        "probs": probs,
        "greedy": jnp.argmax(logp, axis=-1),
        "sampled": jax.random.categorical(key, logp, axis=-1),
        "features": s.features,
        **confidence(probs, valid),
    }

  return act


def bucket(n: int, sizes: tuple[int, ...]) -> int:
  """The smallest size >= n (powers of two beyond the largest)."""
  for s in sizes:
    if s >= n:
      return s
  return 1 << max(n - 1, 1).bit_length()


def pack(prompts: list[list[int]], candidates: list[list[list[int]]], *, pad_id: int,
         batch_size: int, prompt_len: int, num_candidates: int, cand_len: int) -> TokenBatch:
  """Pads token lists into a `TokenBatch` of the given (bucket) sizes, as numpy arrays.

  Prompts longer than `prompt_len` keep their last `prompt_len` tokens.
  """
  prompt_ids = np.full((batch_size, prompt_len), pad_id, np.int32)  # [batch, prompt_tokens]
  prompt_mask = np.zeros((batch_size, prompt_len), bool)
  cand_ids = np.full((batch_size, num_candidates, cand_len), pad_id, np.int32)  # [b, k, l]
  cand_mask = np.zeros((batch_size, num_candidates, cand_len), bool)
  for i, (p, cands) in enumerate(zip(prompts, candidates)):
    p = p[-prompt_len:]
    prompt_ids[i, :len(p)] = p
    prompt_mask[i, :len(p)] = True
    for j, c in enumerate(cands):
      if len(c) > cand_len:
        raise ValueError(f"candidate of {len(c)} tokens exceeds the bucket {cand_len}")
      cand_ids[i, j, :len(c)] = c
      cand_mask[i, j, :len(c)] = True
  return TokenBatch(prompt_ids, prompt_mask, cand_ids, cand_mask)
