"""Hugging Face checkpoint folders (`config.json` + `*.safetensors`) to and from Flax params.

Weights of `nn.Dense` are stored transposed (`[in, out]`) relative to torch's `[out, in]`.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import traverse_util
from safetensors import safe_open
from safetensors.numpy import save_file

from londi_jax.policies.config import DecoderConfig
from londi_jax.policies.model import Decoder

_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")


def _flax_path(name: str) -> tuple[str, ...] | None:
  """The Flax param path of a Hugging Face tensor name, or None for tensors the model lacks."""
  if name == "model.embed_tokens.weight":
    return ("embed_tokens", "embedding")
  if name == "model.norm.weight":
    return ("norm", "weight")
  if name == "lm_head.weight":
    return ("lm_head", "kernel")
  m = _LAYER.match(name)
  if m is None:
    return None
  layer, module, kind = m.groups()
  parts = tuple(module.split("."))
  if parts[-1].endswith("norm"):
    return (f"layers_{layer}", *parts, "weight")
  return (f"layers_{layer}", *parts, "kernel" if kind == "weight" else "bias")


def _hf_name(path: tuple[str, ...]) -> str:
  if path == ("embed_tokens", "embedding"):
    return "model.embed_tokens.weight"
  if path == ("norm", "weight"):
    return "model.norm.weight"
  if path == ("lm_head", "kernel"):
    return "lm_head.weight"
  layer = path[0].removeprefix("layers_")
  kind = "bias" if path[-1] == "bias" else "weight"
  return f"model.layers.{layer}.{'.'.join(path[1:-1])}.{kind}"


def _weight_files(folder: str) -> list[str]:
  index = os.path.join(folder, "model.safetensors.index.json")
  if os.path.exists(index):
    with open(index) as f:
      files = sorted(set(json.load(f)["weight_map"].values()))
  else:
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
  if not files:
    raise FileNotFoundError(f"no *.safetensors in {folder}")
  return [os.path.join(folder, f) for f in files]


def read_config(folder: str, dtype: str | None = None) -> DecoderConfig:
  with open(os.path.join(folder, "config.json")) as f:
    return DecoderConfig.from_hf(json.load(f), dtype=dtype)


def load_pretrained(folder: str, dtype: str | None = None) -> tuple[Decoder, dict]:
  """Loads a Llama / Qwen 2 / Qwen 3 checkpoint folder.

  Args:
    folder: holds `config.json` and `model.safetensors`, or shards listed in
      `model.safetensors.index.json` (or any `*.safetensors`).
    dtype: `float32` or `bfloat16` for params and compute; defaults to the checkpoint's dtype.

  Returns:
    `(model, params)`: `model.apply({"params": params}, input_ids, attention_mask)` gives logits
    [B, T, vocab].
  """
  config = read_config(folder, dtype)
  target = np.dtype(ml_dtypes.bfloat16) if config.dtype == "bfloat16" else np.dtype(config.dtype)
  flat: dict[tuple[str, ...], Any] = {}
  for file in _weight_files(folder):
    with safe_open(file, framework="np") as f:
      for name in f.keys():
        path = _flax_path(name)
        if path is None or (path[0] == "lm_head" and config.tie_word_embeddings):
          continue
        w = f.get_tensor(name)
        if path[-1] == "kernel":
          w = w.T
        flat[path] = jnp.asarray(np.ascontiguousarray(w).astype(target))
  expected = traverse_util.flatten_dict(
      jax.eval_shape(lambda: Decoder(config).init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
                     )["params"])
  missing = sorted("/".join(p) for p in expected if p not in flat)
  if missing:
    raise ValueError(f"checkpoint {folder} lacks {missing[:8]}{'...' if len(missing) > 8 else ''}")
  for path, spec in expected.items():
    if flat[path].shape != spec.shape:
      raise ValueError(f"{'/'.join(path)}: checkpoint shape {flat[path].shape} != {spec.shape}")
  params = traverse_util.unflatten_dict({p: flat[p] for p in expected})
  return Decoder(config), params


def save_pretrained(folder: str, config: DecoderConfig, params: dict) -> None:
  """Writes `config.json` and `model.safetensors` that `load_pretrained` (and HF) read back."""
  os.makedirs(folder, exist_ok=True)
  tensors = {}
  for path, w in traverse_util.flatten_dict(params).items():
    w = np.asarray(w)
    tensors[_hf_name(path)] = np.ascontiguousarray(w.T if path[-1] == "kernel" else w)
  save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump(config.to_hf(), f, indent=2)
