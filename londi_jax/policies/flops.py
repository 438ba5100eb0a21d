"""Forward FLOPs of a policy's model from its config (docs/architecture.md: compute accounting).

A token costs `2 * matmul_params` in the blocks' matrix products (Kaplan et al. 2020, Sec. 2.1),
`4 * layers * heads * head_dim * context` in attention (q.k and the weighted sum of v over
`context` keys), and `2 * d * vocab` for each position whose logits are computed.

For a T5 encoder-decoder the same rule is applied to each part (`encoder_flops`,
`cross_kv_flops`, `decoder_flops`); `scoring_flops`, `naive_scoring_flops` and `flops_per_step`
take either kind of config.
"""

from __future__ import annotations

from typing import Sequence

from londi_jax.policies.config import DecoderConfig, ModelConfig, T5Config


def forward_flops(config: DecoderConfig, tokens: int, context: int, logit_tokens: int) -> int:
  """FLOPs of a forward pass.

  Args:
    config: the model.
    tokens: tokens run through the blocks.
    context: keys attended to, summed over those tokens.
    logit_tokens: positions whose vocabulary logits are computed.
  """
  attn = 4 * config.num_layers * config.num_heads * config.head_dim * context
  return (2 * config.matmul_params() * tokens + attn
          + 2 * config.hidden_size * config.vocab_size * logit_tokens)


def encoder_flops(config: T5Config, tokens: int) -> int:
  """FLOPs of T5's encoder on one prompt of `tokens` tokens (bidirectional: `tokens^2` context)."""
  attn = 4 * config.num_layers * config.inner_dim * tokens * tokens
  return 2 * config.encoder_matmul_params() * tokens + attn


def cross_kv_flops(config: T5Config, encoder_tokens: int) -> int:
  """FLOPs of every decoder block's cross-attention keys and values of one encoder output."""
  return 2 * config.cross_kv_params() * encoder_tokens


def decoder_flops(config: T5Config, tokens: int, self_context: int, cross_context: int,
                  logit_tokens: int) -> int:
  """FLOPs of T5's decoder blocks and head (the cross-attention keys and values excluded).

  Args:
    config: the model.
    tokens: decoder tokens run through the blocks.
    self_context: decoder keys attended to, summed over those tokens.
    cross_context: encoder keys attended to, summed over those tokens.
    logit_tokens: positions whose vocabulary logits are computed.
  """
  attn = 4 * config.num_decoder_layers * config.inner_dim * (self_context + cross_context)
  return (2 * config.decoder_matmul_params() * tokens + attn
          + 2 * config.d_model * config.vocab_size * logit_tokens)


def _t5_state_flops(config: T5Config, p: int, lens: Sequence[int]) -> int:
  """One state as `make_encoder_decoder_scorer` runs it: the prompt encoded once, its
  cross-attention keys and values once, the start token once (logits included), and each
  candidate's `l - 1` tokens after it (self context `2 + 3 + ... + l`, logits at each)."""
  if not lens:
    return 0
  total = encoder_flops(config, p) + cross_kv_flops(config, p) + decoder_flops(config, 1, 1, p, 1)
  for l in lens:
    n = max(l - 1, 0)
    total += decoder_flops(config, n, n * (n + 3) // 2, n * p, n)
  return total


def scoring_flops(config: ModelConfig, prompt_lens: Sequence[int],
                  cand_lens: Sequence[Sequence[int]]) -> int:
  """FLOPs of scoring candidates over a shared prompt, as `make_candidate_scorer` computes them.

  Decoder: each prompt runs once (causal context `p (p + 1) / 2`, logits at its last token); a
  candidate of `l` tokens attends to the `p` prompt tokens and causally to itself, with logits at
  its first `l - 1` tokens. T5: see `_t5_state_flops`.
  """
  if isinstance(config, T5Config):
    return sum(_t5_state_flops(config, p, lens) for p, lens in zip(prompt_lens, cand_lens))
  total = 0
  for p, lens in zip(prompt_lens, cand_lens):
    total += forward_flops(config, p, p * (p + 1) // 2, 1 if lens else 0)
    for l in lens:
      total += forward_flops(config, l, l * p + l * (l + 1) // 2, max(l - 1, 0))
  return total


def naive_scoring_flops(config: ModelConfig, prompt_lens: Sequence[int],
                        cand_lens: Sequence[Sequence[int]]) -> int:
  """FLOPs of scoring each candidate by a separate forward pass over prompt + candidate (T5: the
  encoder on the prompt and the decoder on `[start, a_1 .. a_(l-1)]`, per candidate)."""
  total = 0
  if isinstance(config, T5Config):
    for p, lens in zip(prompt_lens, cand_lens):
      for l in lens:
        total += (encoder_flops(config, p) + cross_kv_flops(config, p)
                  + decoder_flops(config, l, l * (l + 1) // 2, l * p, l))
    return total
  for p, lens in zip(prompt_lens, cand_lens):
    for l in lens:
      n = p + l
      total += forward_flops(config, n, n * (n + 1) // 2, n)
  return total


def flops_per_step(config: ModelConfig, prompt_len: int, cand_lens: Sequence[int]) -> int:
  """FLOPs of one policy step: one prompt of `prompt_len` tokens and its candidates."""
  return scoring_flops(config, [prompt_len], [cand_lens])
