"""Chunked candidate scoring (`scoring.over_chunks`): the same scores as one pass over every
candidate, for a decoder and a T5 model, and intermediates bounded by the chunk, not the
candidate count."""

import os

import jax
import numpy as np
import pytest

from londi_jax.policies import load_pretrained
from londi_jax.policies.scoring import make_candidate_scorer, pack

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _batch(rng, vocab, rows=2, k=37, cand_len=4, prompt_len=16):
  """Random prompts with `k` candidates each (the last row with fewer), padded to `k`."""
  prompts = [list(rng.integers(3, vocab, rng.integers(4, prompt_len))) for _ in range(rows)]
  cands = [[list(rng.integers(3, vocab, rng.integers(1, cand_len + 1))) for _ in range(n)]
           for n in [k] * (rows - 1) + [k - 9]]
  return pack(prompts, cands, pad_id=0, batch_size=rows, prompt_len=prompt_len, num_candidates=k,
              cand_len=cand_len)


def _largest_intermediate(fn, *args) -> int:
  """The element count of the largest array any equation of `fn`'s jaxpr (nested ones too)
  produces."""
  largest = 0

  def visit(jaxpr):
    nonlocal largest
    for eqn in jaxpr.eqns:
      for v in eqn.outvars:
        largest = max(largest, int(np.prod(getattr(v.aval, "shape", ()))))
      for param in eqn.params.values():
        for sub in param if isinstance(param, (list, tuple)) else [param]:
          inner = getattr(sub, "jaxpr", sub)
          if hasattr(inner, "eqns"):
            visit(inner)

  visit(jax.make_jaxpr(fn)(*args).jaxpr)
  return largest


@pytest.mark.parametrize("folder", ["parity/qwen3", "t5/flan_t5"])
def test_chunked_scores_equal_one_pass_and_bound_memory(folder):
  model, params = load_pretrained(os.path.join(FIXTURES, folder))
  vocab = model.config.vocab_size
  batch = _batch(np.random.default_rng(0), vocab)
  whole = make_candidate_scorer(model)
  chunked = make_candidate_scorer(model, chunk=8)  # 37 candidates: 5 chunks, the last padded
  expected = jax.jit(whole)(params, batch)
  got = jax.jit(chunked)(params, batch)
  np.testing.assert_allclose(got.log_probs, expected.log_probs, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(got.log_probs <= -1e29, expected.log_probs <= -1e29)
  np.testing.assert_allclose(got.features, expected.features, rtol=1e-6, atol=1e-6)
  # The candidate tokens' logits [B, K, L - 1, V] are the largest array of one pass; chunked,
  # nothing grows with K beyond [B, K]-sized outputs.
  b, k, l = batch.cand_ids.shape
  assert _largest_intermediate(whole, params, batch) >= b * k * (l - 1) * vocab
  assert _largest_intermediate(chunked, params, batch) <= b * 8 * l * vocab


def test_rows_of_different_candidate_buckets_score_as_they_would_alone():
  from londi_jax.policies import Policy, build_word_tokenizer  # pylint: disable=import-outside-toplevel
  model, params = load_pretrained(os.path.join(FIXTURES, "parity/qwen3"))
  policy = Policy(model, params, build_word_tokenizer(["unused"]), candidate_chunk=16)
  rng = np.random.default_rng(1)
  vocab = model.config.vocab_size
  counts = [3, 40, 300, 130]  # buckets 4 and 64 (one call), 512, 256
  prompts = [list(rng.integers(3, vocab, rng.integers(4, 12))) for _ in counts]
  cands = [[list(rng.integers(3, vocab, rng.integers(1, 4))) for _ in range(n)] for n in counts]
  out = policy.score_tokens(prompts, cands)
  assert out.log_probs.shape == (4, 300) and out.probs.shape == (4, 300)
  for i, n in enumerate(counts):
    alone = policy.score_tokens([prompts[i]], [cands[i]])
    np.testing.assert_allclose(out.log_probs[i, :n], alone.log_probs[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.probs[i, :n], alone.probs[0], rtol=1e-5, atol=1e-6)
    assert np.all(np.isneginf(out.log_probs[i, n:])) and np.all(out.probs[i, n:] == 0)
    np.testing.assert_allclose(out.features[i], alone.features[0], rtol=1e-5, atol=1e-5)
    assert out.greedy[i] == alone.greedy[0] and out.row_flops[i] == alone.row_flops[0]
  assert out.flops == out.row_flops.sum()
