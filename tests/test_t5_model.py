"""The Flax T5 against PyTorch transformers' `T5ForConditionalGeneration` on committed random
checkpoints: encoder states, decoder logits, GLAM candidate log-probabilities, relative-position
buckets; loading sharded, bfloat16 and Hub-style folders; writing them back.

The fixtures come from `tests/make_t5_fixtures.py` (run once with torch); these tests need no
torch.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from londi_jax.policies import load_pretrained, save_pretrained
from londi_jax.policies.config import T5Config
from londi_jax.policies.scoring import TokenBatch, make_candidate_scorer
from londi_jax.policies.t5 import T5, relative_position_bucket

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "t5")
TOLERANCE = 1e-4


def _load(name, **kwargs):
  model, params = load_pretrained(os.path.join(FIXTURES, name), **kwargs)
  return model, params, dict(np.load(os.path.join(FIXTURES, name, "reference.npz")))


_JITTED = {}


def _jitted(model, method=None):
  """`model.apply` (or one of its methods), jitted once per config."""
  key = (model.config, method)
  if key not in _JITTED:
    _JITTED[key] = jax.jit(lambda p, *a: model.apply({"params": p}, *a, method=method))
  return _JITTED[key]


def _logits(model, params, ref):
  return np.asarray(_jitted(model)(params, *(jnp.asarray(ref[k]) for k in (
      "input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask"))))


def _max_diff(ours, ref, mask):
  valid = mask.astype(bool)
  return float(np.abs(np.asarray(ours, np.float32)[valid] - ref[valid]).max())


@pytest.mark.parametrize("name", ["flan_t5", "t5"])
def test_encoder_states_and_logits_match_transformers(name):
  model, params, ref = _load(name)
  assert isinstance(model, T5)
  enc = _jitted(model, T5.encode)(params, jnp.asarray(ref["input_ids"]),
                                  jnp.asarray(ref["attention_mask"]))
  assert enc.shape == ref["encoder_hidden"].shape
  assert _max_diff(enc, ref["encoder_hidden"], ref["attention_mask"]) < TOLERANCE
  logits = _logits(model, params, ref)
  assert logits.shape == ref["logits"].shape
  assert np.abs(ref["logits"][ref["decoder_attention_mask"].astype(bool)]).max() > 1.0
  assert _max_diff(logits, ref["logits"], ref["decoder_attention_mask"]) < TOLERANCE


def test_the_two_variants_are_read_as_such():
  flan = _load("flan_t5")[0].config
  assert (flan.feed_forward_proj, flan.tie_word_embeddings, flan.scale_decoder_outputs) == (
      "gated-gelu", False, False)
  assert (flan.num_layers, flan.num_decoder_layers) == (2, 3)
  original = _load("t5")[0].config
  assert (original.feed_forward_proj, original.tie_word_embeddings,
          original.scale_decoder_outputs) == ("relu", True, True)
  _, params, _ = _load("t5")
  assert "lm_head" not in params
  # transformers 5 writes `tie_word_embeddings: true` even for an untied Flan-T5.
  with open(os.path.join(FIXTURES, "flan_t5_bf16", "config.json")) as f:
    assert json.load(f)["tie_word_embeddings"] is True
  assert not _load("flan_t5_bf16")[0].config.tie_word_embeddings


@pytest.mark.parametrize("name", ["flan_t5", "t5"])
def test_candidate_log_probs_match_glam_scoring_in_transformers(name):
  """The encoder-once scorer against one full PyTorch pass per candidate."""
  model, params, ref = _load(name)
  batch = TokenBatch(jnp.asarray(ref["cand_prompt_ids"], jnp.int32),
                     jnp.asarray(ref["cand_prompt_mask"], bool),
                     jnp.asarray(ref["cand_ids"], jnp.int32), jnp.asarray(ref["cand_mask"], bool))
  scores = jax.jit(make_candidate_scorer(model))(params, batch)
  np.testing.assert_allclose(np.asarray(scores.log_probs), ref["cand_log_probs"], atol=TOLERANCE,
                             rtol=0)
  mask = ref["cand_prompt_mask"].astype(np.float64)
  expected = (ref["encoder_hidden"][:len(mask)] * mask[..., None]).sum(1) / mask.sum(1)[:, None]
  np.testing.assert_allclose(np.asarray(scores.features), expected, atol=1e-5)


def test_relative_position_buckets_match_transformers():
  ref = _load("flan_t5")[2]
  for prefix, (num, dist) in (("buckets", (8, 16)), ("buckets_default", (32, 128))):
    for direction, bidirectional in (("bidirectional", True), ("causal", False)):
      ours = relative_position_bucket(ref["bucket_positions"], bidirectional, num, dist)
      np.testing.assert_array_equal(ours, ref[f"{prefix}_{direction}"])


def test_relative_position_buckets_by_hand():
  # Causal, 32 buckets up to 128: distances 0..15 exact; bucket 16 + k starts at distance
  # 16 * 8^(k / 16) (18.2 for k = 1, 128 for k = 16, clipped to the last bucket, 31).
  rel = -np.array([0, 1, 15, 16, 18, 19, 127, 128, 1000])
  assert relative_position_bucket(rel, False).tolist() == [0, 1, 15, 16, 16, 17, 31, 31, 31]
  assert relative_position_bucket(-rel, False).tolist() == [0] * 9  # the future: bucket 0
  # Bidirectional: 16 per direction, the later keys offset by 16.
  assert relative_position_bucket(np.array([-3, 0, 3]), True).tolist() == [3, 0, 19]


def test_bfloat16_checkpoint_loads_in_bfloat16():
  """bf16 weights against the float32 model's logits: rounding the weights alone moves these
  logits (largest 13) by up to 0.4, computing in bf16 by up to 0.7."""
  model, params, ref = _load("flan_t5_bf16")
  assert params["decoder"]["block_0"]["layer_1"]["EncDecAttention"]["q"]["kernel"].dtype == (
      jnp.bfloat16)
  mask = ref["decoder_attention_mask"]
  scale = np.abs(ref["logits"][mask.astype(bool)]).max()
  logits = _jitted(model)(params, *(jnp.asarray(ref[k]) for k in (
      "input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")))
  assert logits.dtype == jnp.bfloat16
  assert _max_diff(logits, ref["logits"], mask) < 0.08 * scale
  model32, params32, _ = _load("flan_t5_bf16", dtype="float32")
  assert _max_diff(_logits(model32, params32, ref), ref["logits"], mask) < 0.05 * scale


def test_save_pretrained_round_trip_reads_back_the_same_model(tmp_path):
  for name in ("flan_t5", "t5"):
    model, params, ref = _load(name)
    folder = str(tmp_path / name)
    save_pretrained(folder, model.config, params)
    model2, params2 = load_pretrained(folder)
    assert model2.config == model.config
    assert _max_diff(_logits(model2, params2, ref), ref["logits"],
                     ref["decoder_attention_mask"]) < TOLERANCE
    with open(os.path.join(folder, "config.json")) as f:
      assert T5Config.from_hf(json.load(f)) == model.config


def test_an_equal_head_copy_is_tied_and_a_different_one_untied(tmp_path):
  """transformers 5's rule for a config that ties the head: a stored `lm_head` equal to the
  shared embedding is the tied head; a different one is a head of its own (output scaling kept)."""
  model, params, ref = _load("t5")
  head = np.asarray(params["shared"]["embedding"]).T
  for copy, tied in ((head, True), (head + 0.5, False)):
    folder = str(tmp_path / str(tied))
    save_pretrained(folder, model.config, {**params, "lm_head": {"kernel": copy}})
    loaded, loaded_params = load_pretrained(folder)
    assert loaded.config.tie_word_embeddings is tied
    assert loaded.config.scale_decoder_outputs
    assert ("lm_head" in loaded_params) is not tied
  logits = _logits(loaded, loaded_params, ref)
  # The untied head adds 0.5 * sum(h) * d^-0.5 to every logit of a position.
  hidden_sum = (logits - _logits(model, params, ref)) / 0.5
  assert np.allclose(hidden_sum, hidden_sum[..., :1], atol=1e-4)


def test_param_tree_names_follow_hugging_face(tmp_path):
  model, params, _ = _load("flan_t5")
  flat = traverse_util.flatten_dict(params)
  assert ("decoder", "block_2", "layer_1", "EncDecAttention", "q", "kernel") in flat
  assert ("encoder", "block_0", "layer_0", "SelfAttention", "relative_attention_bias",
          "embedding") in flat
  assert ("encoder", "block_1", "layer_0", "SelfAttention", "relative_attention_bias",
          "embedding") not in flat  # shared from the first block
  assert sum(v.size for v in flat.values()) == model.config.num_params()


def test_a_missing_folder_fails_clearly():
  with pytest.raises(FileNotFoundError, match="no config.json"):
    load_pretrained("/path/to/flan-t5-small")
