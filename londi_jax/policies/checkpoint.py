"""Hugging Face checkpoint folders (`config.json` + `*.safetensors`) to and from Flax params.

`model_type` in `config.json` picks the model: `t5` a `t5.T5` encoder-decoder, the Llama family a
`model.Decoder`. Weights of `nn.Dense` are stored transposed (`[in, out]`) relative to torch's
`[out, in]`.
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

from londi_jax.policies import model as decoder_lib
from londi_jax.policies import t5 as t5_lib
from londi_jax.policies.config import ModelConfig, T5Config, config_from_hf
from londi_jax.policies.model import Decoder
from londi_jax.policies.t5 import T5

Model = Decoder | T5

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


def read_config(folder: str, dtype: str | None = None) -> ModelConfig:
  """The model config of a checkpoint folder's `config.json` (`DecoderConfig` or `T5Config`)."""
  path = os.path.join(folder, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{folder} is not a Hugging Face checkpoint folder (no config.json)")
  with open(path) as f:
    return config_from_hf(json.load(f), dtype=dtype)


def model_for(config: ModelConfig) -> Model:
  """The Flax module of a config: `T5` for a `T5Config`, else `Decoder`."""
  return T5(config) if isinstance(config, T5Config) else Decoder(config)


def random_params(config: ModelConfig, rng: jax.Array) -> dict:
  """Freshly initialised parameters of `model_for(config)`."""
  init = t5_lib.init_params if isinstance(config, T5Config) else decoder_lib.init_params
  return init(config, rng)


def abstract_params(config: ModelConfig):
  """Shapes and dtypes of a model's params, without allocating them."""
  return jax.eval_shape(lambda: random_params(config, jax.random.key(0)))


def load_pretrained(folder: str, dtype: str | None = None) -> tuple[Model, dict]:
  """Loads a Llama / Qwen 2 / Qwen 3 or T5 / Flan-T5 checkpoint folder.

  Args:
    folder: holds `config.json` and `model.safetensors`, or shards listed in
      `model.safetensors.index.json` (or any `*.safetensors`).
    dtype: `float32` or `bfloat16` for params and compute; defaults to the checkpoint's dtype.

  Returns:
    `(model, params)`: for a decoder, `model.apply({"params": params}, input_ids,
    attention_mask)` gives logits [B, T, vocab]; for T5, `model.apply({"params": params},
    input_ids, attention_mask, decoder_input_ids, decoder_attention_mask)` gives logits
    [B, T_dec, vocab].
  """
  config = read_config(folder, dtype)
  if isinstance(config, T5Config):
    return _load_t5(folder, config)
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
  params = _check_params(folder, config, flat)
  return Decoder(config), params


def _load_t5(folder: str, config: T5Config) -> tuple[T5, dict]:
  """`load_pretrained` of a T5 folder: the head tied or not as the checkpoint holds it
  (`t5.resolve_head`), the stacks' copies of the shared embedding used only without it."""
  target = np.dtype(ml_dtypes.bfloat16) if config.dtype == "bfloat16" else np.dtype(config.dtype)
  flat: dict[tuple[str, ...], Any] = {}
  embed_copy = None
  for file in _weight_files(folder):
    with safe_open(file, framework="np") as f:
      for name in f.keys():
        path = t5_lib.flax_path(name)
        if path is None:
          if name.endswith("embed_tokens.weight") and embed_copy is None:
            embed_copy = f.get_tensor(name)
          continue
        w = f.get_tensor(name)
        flat[path] = jnp.asarray(
            np.ascontiguousarray(w.T if path[-1] == "kernel" else w).astype(target))
  if ("shared", "embedding") not in flat and embed_copy is not None:
    flat[("shared", "embedding")] = jnp.asarray(embed_copy.astype(target))
  config, flat = t5_lib.resolve_head(config, flat)
  params = _check_params(folder, config, flat)
  return T5(config), params


def _check_params(folder: str, config: ModelConfig, flat: dict) -> dict:
  """The nested params of `config`'s model from `flat`, or an error naming what is missing or
  mis-shaped."""
  expected = traverse_util.flatten_dict(abstract_params(config))
  missing = sorted("/".join(p) for p in expected if p not in flat)
  if missing:
    raise ValueError(f"checkpoint {folder} lacks {missing[:8]}{'...' if len(missing) > 8 else ''}")
  for path, spec in expected.items():
    if flat[path].shape != spec.shape:
      raise ValueError(f"{'/'.join(path)}: checkpoint shape {flat[path].shape} != {spec.shape}")
  return traverse_util.unflatten_dict({p: flat[p] for p in expected})


def save_pretrained(folder: str, config: ModelConfig, params: dict) -> None:
  """Writes `config.json` and `model.safetensors` that `load_pretrained` (and HF) read back."""
  os.makedirs(folder, exist_ok=True)
  name_of = t5_lib.hf_name if isinstance(config, T5Config) else _hf_name
  tensors = {}
  for path, w in traverse_util.flatten_dict(params).items():
    w = np.asarray(w)
    tensors[name_of(path)] = np.ascontiguousarray(w.T if path[-1] == "kernel" else w)
  save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump(config.to_hf(), f, indent=2)
