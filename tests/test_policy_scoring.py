"""Candidate scoring against a naive per-candidate computation; masking, buckets, compilations."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from londi_jax.policies import (Buckets, Policy, build_word_tokenizer, load_policy,
                                load_pretrained, save_policy)
from londi_jax.policies.flops import forward_flops, naive_scoring_flops, scoring_flops

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "parity")


def _policy(name):
  model, params = load_pretrained(os.path.join(FIXTURES, name))
  return Policy(model, params, build_word_tokenizer(["unused"]), temperature=0.7)


@pytest.fixture(scope="module")
def policy():
  return _policy("qwen3")


def _random_tokens(rng, n_rows, vocab=128):
  prompts = [list(rng.integers(3, vocab, rng.integers(3, 15))) for _ in range(n_rows)]
  cands = [[list(rng.integers(3, vocab, rng.integers(1, 4))) for _ in range(rng.integers(1, 7))]
           for _ in range(n_rows)]
  return prompts, cands


_JITTED = {}


def _naive(policy, prompt, cand):
  """log p(cand | prompt) from one plain forward pass over prompt + cand (right-padded to 24)."""
  seq = prompt + cand
  ids = jnp.asarray([seq + [0] * (24 - len(seq))])
  mask = (jnp.arange(24) < len(seq))[None].astype(jnp.int32)
  if id(policy) not in _JITTED:
    _JITTED[id(policy)] = jax.jit(policy.model.apply)
  logits = _JITTED[id(policy)]({"params": policy.params}, ids, mask)
  logp = np.asarray(jax.nn.log_softmax(logits, -1))[0]
  return sum(logp[len(prompt) - 1 + j, tok] for j, tok in enumerate(cand))


def _naive_features(policy, prompt):
  """Mean final hidden state of the prompt alone, right-padded to 24."""
  key = ("encode", id(policy))
  if key not in _JITTED:
    _JITTED[key] = jax.jit(lambda p, x, m: policy.model.apply(
        {"params": p}, x, m, method=type(policy.model).encode)[0])
  ids = jnp.asarray([prompt + [0] * (24 - len(prompt))])
  mask = (jnp.arange(24) < len(prompt))[None].astype(jnp.int32)
  hidden = _JITTED[key](policy.params, ids, mask)
  return np.asarray(hidden[0, :len(prompt)], np.float64).mean(0)


@pytest.mark.parametrize("name", ["qwen3", "llama"])
def test_scores_match_naive_per_candidate_passes(name):
  policy = _policy(name)
  prompts, cands = _random_tokens(np.random.default_rng(0), 3)
  out = policy.score_tokens(prompts, cands)
  for i, (p, cs) in enumerate(zip(prompts, cands)):
    expected = np.array([_naive(policy, p, c) for c in cs])
    np.testing.assert_allclose(out.log_probs[i, :len(cs)], expected, atol=1e-4, rtol=1e-5)
    assert np.all(np.isneginf(out.log_probs[i, len(cs):]))
    np.testing.assert_allclose(out.features[i], _naive_features(policy, p), atol=1e-5)
  assert out.features.dtype == np.float32


def test_distribution_and_confidence(policy):
  prompts, cands = _random_tokens(np.random.default_rng(1), 4)
  out = policy.score_tokens(prompts, cands)
  for i, cs in enumerate(cands):
    z = out.log_probs[i, :len(cs)] / 0.7
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(out.probs[i, :len(cs)], p, atol=1e-6)
    assert np.all(out.probs[i, len(cs):] == 0)
    s = np.sort(p)[::-1]
    assert out.greedy[i] == np.argmax(p)
    assert 0 <= out.sampled[i] < len(cs)
    np.testing.assert_allclose(out.max_prob[i], s[0], atol=1e-6)
    np.testing.assert_allclose(out.margin[i], s[0] - (s[1] if len(s) > 1 else 0), atol=1e-6)
    np.testing.assert_allclose(out.entropy[i], -(p * np.log(p)).sum(), atol=1e-5)


def test_padding_rows_candidates_and_buckets_change_nothing(policy):
  rng = np.random.default_rng(2)
  prompts, cands = _random_tokens(rng, 3)
  out = policy.score_tokens(prompts, cands)
  more_p, more_c = _random_tokens(rng, 4)
  bigger = policy.score_tokens(prompts + more_p, cands + more_c)
  big = Policy(policy.model, policy.params, policy.tokenizer, temperature=0.7,
               buckets=Buckets(batch=(16,), prompt=(64,), candidates=(32,), cand_tokens=(8,)))
  padded = big.score_tokens(prompts, cands)
  for other in (bigger, padded):
    k = out.log_probs.shape[1]
    np.testing.assert_allclose(other.log_probs[:3, :k], out.log_probs, atol=1e-5)
    np.testing.assert_allclose(other.probs[:3, :k], out.probs, atol=1e-6)
    np.testing.assert_allclose(other.features[:3], out.features, atol=1e-5)


def test_no_recompilation_within_a_bucket(policy):
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, *a, **k: compiles.append(event)
      if event == "/jax/core/compile/backend_compile_duration" else None)
  rng = np.random.default_rng(3)
  fresh = Policy(policy.model, policy.params, policy.tokenizer)
  prompts, cands = _random_tokens(rng, 4)
  fresh.score_tokens(prompts, [[[4, 5, 6]] * 6] + cands[1:])
  first = len(compiles)
  for n_rows in (3, 4, 3, 4):
    prompts, cands = _random_tokens(rng, n_rows)
    cands[0] = [[4, 5, 6]] * 6  # the same buckets: <= 4 rows, 16 prompt tokens, 8 x 4 candidates
    out = fresh.score_tokens(prompts, cands)
    assert out.compile_time_s == 0.0
  assert fresh.num_compilations == 1
  assert len(compiles) == first


def test_string_interface_and_save_load_round_trip(policy, tmp_path):
  tok = build_word_tokenizer(["go to the red ball turn left right forward pick up drop toggle"])
  pol = Policy(policy.model, policy.params, tok)
  prompts = ["go to the red ball", "pick up the ball"]
  cands = [["turn left", "turn right", "go forward"], ["pick up", "drop"]]
  out = pol(prompts, cands)
  assert out.greedy_action[1] in cands[1]
  assert out.sampled_action[0] in cands[0]
  save_policy(str(tmp_path / "p"), pol.config, pol.params, tok, meta={"name": "x"})
  loaded = load_policy(str(tmp_path / "p"))
  again = loaded(prompts, cands)
  assert loaded.meta == {"name": "x"}
  np.testing.assert_array_equal(again.log_probs, out.log_probs)


def test_flops_from_config_count_the_real_weights(policy):
  c = policy.config
  kernels = {k: v for k, v in traverse_util.flatten_dict(policy.params).items()
             if k[0].startswith("layers_") and k[-1] == "kernel"}
  assert sum(v.size for v in kernels.values()) == c.matmul_params()
  n = 10
  assert forward_flops(c, n, 0, 0) == 2 * n * sum(v.size for v in kernels.values())
  shared = scoring_flops(c, [20], [[2] * 6])
  naive = naive_scoring_flops(c, [20], [[2] * 6])
  assert naive > 4 * shared
  out = policy.score_tokens([[5] * 20], [[[6, 7]] * 6])
  assert out.flops == shared and out.padded_flops >= shared
