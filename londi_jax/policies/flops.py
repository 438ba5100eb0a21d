"""Forward FLOPs of the decoder from its config (docs/architecture.md: compute accounting).

A token costs `2 * matmul_params` in the blocks' matrix products (Kaplan et al. 2020, Sec. 2.1),
`4 * layers * heads * head_dim * context` in attention (q.k and the weighted sum of v over
`context` keys), and `2 * d * vocab` for each position whose logits are computed.
"""

from __future__ import annotations

from typing import Sequence

from londi_jax.policies.config import DecoderConfig


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


def scoring_flops(config: DecoderConfig, prompt_lens: Sequence[int],
                  cand_lens: Sequence[Sequence[int]]) -> int:
  """FLOPs of scoring candidates over a shared prompt, as `make_candidate_scorer` computes them.

  Each prompt runs once (causal context `p (p + 1) / 2`, logits at its last token); a candidate
  of `l` tokens attends to the `p` prompt tokens and causally to itself, with logits at its first
  `l - 1` tokens.
  """
  total = 0
  for p, lens in zip(prompt_lens, cand_lens):
    total += forward_flops(config, p, p * (p + 1) // 2, 1 if lens else 0)
    for l in lens:
      total += forward_flops(config, l, l * p + l * (l + 1) // 2, max(l - 1, 0))
  return total


def naive_scoring_flops(config: DecoderConfig, prompt_lens: Sequence[int],
                        cand_lens: Sequence[Sequence[int]]) -> int:
  """FLOPs of scoring each candidate by a separate forward pass over prompt + candidate."""
  total = 0
  for p, lens in zip(prompt_lens, cand_lens):
    for l in lens:
      n = p + l
      total += forward_flops(config, n, n * (n + 1) // 2, n)
  return total


def flops_per_step(config: DecoderConfig, prompt_len: int, cand_lens: Sequence[int]) -> int:
  """FLOPs of one policy step: one prompt of `prompt_len` tokens and its candidates."""
  return scoring_flops(config, [prompt_len], [cand_lens])
