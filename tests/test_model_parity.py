"""Flax logits against PyTorch transformers' on the committed random checkpoints.

The fixtures come from `tests/make_parity_fixtures.py` (run once with torch); these tests need no
torch.
"""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from londi_jax.policies import load_pretrained, save_pretrained
from londi_jax.policies.model import Decoder

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "parity")


def _reference(name):
  ref = np.load(os.path.join(FIXTURES, name, "reference.npz"))
  return ref["input_ids"], ref["attention_mask"], ref["logits"]


def _max_diff(logits, ref, mask):
  valid = mask.astype(bool)
  return float(np.abs(np.asarray(logits, np.float32)[valid] - ref[valid]).max())


@pytest.mark.parametrize("name", ["llama", "qwen2", "qwen3"])
def test_float32_logits_match_transformers(name):
  model, params = load_pretrained(os.path.join(FIXTURES, name))
  ids, mask, ref = _reference(name)
  logits = model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))
  assert logits.shape == ref.shape
  assert np.abs(ref[mask.astype(bool)]).max() > 1.0
  assert _max_diff(logits, ref, mask) < 1e-4


def test_bfloat16_checkpoint_loads_in_bfloat16():
  model, params = load_pretrained(os.path.join(FIXTURES, "llama_bf16"))
  assert params["layers_0"]["self_attn"]["q_proj"]["kernel"].dtype == jnp.bfloat16
  ids, mask, ref = _reference("llama_bf16")
  logits = model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))
  assert logits.dtype == jnp.bfloat16
  scale = np.abs(ref[mask.astype(bool)]).max()
  assert _max_diff(logits, ref, mask) < 0.05 * scale
  model32, params32 = load_pretrained(os.path.join(FIXTURES, "llama_bf16"), dtype="float32")
  logits32 = model32.apply({"params": params32}, jnp.asarray(ids), jnp.asarray(mask))
  assert _max_diff(logits32, ref, mask) < 0.05 * scale


def test_left_padding_with_explicit_positions_matches_right_padding():
  model, params = load_pretrained(os.path.join(FIXTURES, "qwen3"))
  ids, mask, ref = _reference("qwen3")
  t = ids.shape[1]
  lengths = mask.sum(1)
  left_ids = np.stack([np.roll(row, t - n) for row, n in zip(ids, lengths)])
  left_mask = np.stack([np.roll(row, t - n) for row, n in zip(mask, lengths)])
  positions = np.maximum(np.cumsum(left_mask, 1) - 1, 0)
  logits = np.asarray(model.apply({"params": params}, jnp.asarray(left_ids),
                                  jnp.asarray(left_mask), jnp.asarray(positions)))
  for row, n in enumerate(lengths):
    np.testing.assert_allclose(logits[row, t - n:], ref[row, :n], atol=1e-4)


def test_save_pretrained_round_trip(tmp_path):
  model, params = load_pretrained(os.path.join(FIXTURES, "qwen2"))
  save_pretrained(str(tmp_path), model.config, params)
  model2, params2 = load_pretrained(str(tmp_path))
  assert model2.config == model.config
  ids, mask, ref = _reference("qwen2")
  logits = model2.apply({"params": params2}, jnp.asarray(ids), jnp.asarray(mask))
  assert isinstance(model2, Decoder)
  assert _max_diff(logits, ref, mask) < 1e-4
