"""Writes tiny random Hugging Face checkpoints and their PyTorch logits for the parity tests.

Needs torch and transformers, which the project's environment does not have; run it once from a
separate one and commit the output:

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 transformers==5.24.0 safetensors==0.8.0 numpy==2.4.6
    /tmp/torchvenv/bin/python tests/make_parity_fixtures.py

Each `tests/fixtures/parity/<name>/` holds `config.json`, the safetensors weights and
`reference.npz` (`input_ids`, `attention_mask` and the float32 `logits` of a right-padded batch).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import torch
import transformers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "parity")

COMMON = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              rms_norm_eps=1e-6, attn_implementation="eager")

# name -> (config class, config kwargs, save dtype, max shard size)
FIXTURES = {
    "llama": (transformers.LlamaConfig, dict(
        num_attention_heads=4, num_key_value_heads=2, attention_bias=True,
        tie_word_embeddings=False,
        rope_parameters=dict(rope_type="llama3", rope_theta=5000.0, factor=8.0,
                             low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=16)), torch.float32, None),
    "qwen2": (transformers.Qwen2Config, dict(
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        rope_parameters=dict(rope_type="default", rope_theta=1e6)), torch.float32, "40KB"),
    "qwen3": (transformers.Qwen3Config, dict(
        num_attention_heads=4, num_key_value_heads=1, head_dim=16, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="default", rope_theta=1e6)), torch.float32, None),
    "llama_bf16": ("llama", {}, torch.bfloat16, None),
}

LENGTHS = (12, 7, 3)


def _randomise(model: torch.nn.Module, seed: int) -> None:
  """Larger-than-default random weights, so logits differ visibly between positions."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=g)
      if name.endswith("norm.weight"):
        p.copy_(1.0 + 0.2 * noise)
      elif name.endswith("bias"):
        p.copy_(0.2 * noise)
      else:
        p.copy_(0.25 * noise)


def _batch(vocab: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(0)
  t = max(LENGTHS)
  ids = rng.integers(1, vocab, size=(len(LENGTHS), t))  # [batch, tokens]
  mask = (np.arange(t)[None] < np.array(LENGTHS)[:, None]).astype(np.int64)
  return ids * mask, mask


def main() -> None:
  shutil.rmtree(OUT, ignore_errors=True)
  models = {}
  for i, (name, (cls, kwargs, dtype, shard)) in enumerate(FIXTURES.items()):
    folder = os.path.join(OUT, name)
    if isinstance(cls, str):
      model = models[cls]
    else:
      torch.manual_seed(i)
      model = transformers.AutoModelForCausalLM.from_config(cls(**COMMON, **kwargs)).eval()
      _randomise(model, i)
      models[name] = model
    ids, mask = _batch(model.config.vocab_size)
    with torch.no_grad():
      logits = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    save = model.to(dtype) if dtype != torch.float32 else model
    save_kwargs = {"max_shard_size": shard} if shard else {}
    save.save_pretrained(folder, safe_serialization=True, **save_kwargs)
    np.savez_compressed(os.path.join(folder, "reference.npz"), input_ids=ids, attention_mask=mask,
                        logits=logits.float().numpy())
    files = sorted(os.listdir(folder))
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    print(f"{name}: {files} {size / 1e3:.0f} KB")


if __name__ == "__main__":
  main()
