"""The decoder's configuration, read from and written to Hugging Face `config.json` dicts.

Covers `model_type` `llama`, `qwen2` and `qwen3` (Llama 3, Qwen 2.5 and 3, SmolLM 2, Mistral
without sliding windows).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Static shape and numerics of a Llama-family decoder.

  Attributes:
    vocab_size: number of token ids.
    hidden_size: model width `d`.
    intermediate_size: SwiGLU inner width.
    num_layers: transformer blocks.
    num_heads: query heads.
    num_kv_heads: key/value heads (grouped-query attention when fewer than `num_heads`).
    head_dim: width of one head.
    rope_theta: rotary base `theta` (Su et al. 2021, RoFormer).
    rope_scaling: `None`, or a dict with `rope_type` `linear` or `llama3` and its parameters.
    rms_norm_eps: RMSNorm epsilon (Zhang and Sennrich 2019).
    tie_word_embeddings: whether the output head reuses the input embedding.
    attention_bias: bias on the q, k and v projections (Qwen 2).
    attention_out_bias: bias on the output projection (Llama's `attention_bias` sets both).
    mlp_bias: bias on the SwiGLU projections (Llama's `mlp_bias`).
    qk_norm: RMSNorm over each head of q and k before the rotation (Qwen 3).
    model_type: the Hugging Face `model_type` it was read from.
    dtype: compute dtype name (`float32` or `bfloat16`).
  """

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rope_theta: float = 10000.0
  rope_scaling: tuple[tuple[str, Any], ...] | None = None
  rms_norm_eps: float = 1e-6
  tie_word_embeddings: bool = False
  attention_bias: bool = False
  attention_out_bias: bool = False
  mlp_bias: bool = False
  qk_norm: bool = False
  model_type: str = "llama"
  dtype: str = "float32"

  @property
  def jnp_dtype(self):
    return _DTYPES[self.dtype]

  def replace(self, **changes: Any) -> "DecoderConfig":
    return dataclasses.replace(self, **changes)

  def num_params(self, include_embeddings: bool = True) -> int:
    """Parameter count (embeddings once when tied)."""
    return self.matmul_params() + self.vocab_size * self.hidden_size * (
        (1 if self.tie_word_embeddings else 2) if include_embeddings else 0) + self.norm_params()

  def norm_params(self) -> int:
    per_layer = 2 * self.hidden_size + (2 * self.head_dim if self.qk_norm else 0)
    return self.num_layers * per_layer + self.hidden_size

  def matmul_params(self) -> int:
    """Weights of the per-token matrix products of the blocks (no embeddings, no head)."""
    d, q, kv = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
    attn = d * q + 2 * d * kv + q * d
    mlp = 3 * d * self.intermediate_size
    return self.num_layers * (attn + mlp)

  @classmethod
  def from_hf(cls, hf: Mapping[str, Any], dtype: str | None = None) -> "DecoderConfig":
    """Reads a Hugging Face `config.json` dict.

    Args:
      hf: the parsed `config.json`.
      dtype: compute dtype; defaults to the checkpoint's `dtype` / `torch_dtype`, else float32.

    Raises:
      ValueError: for an unsupported `model_type` or rope type.
    """
    model_type = hf.get("model_type", "llama")
    if model_type not in SUPPORTED_MODEL_TYPES:
      raise ValueError(f"unsupported model_type {model_type!r}; supported: {SUPPORTED_MODEL_TYPES}")
    num_heads = hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or hf["hidden_size"] // num_heads
    rope = dict(hf.get("rope_parameters") or {})
    legacy = hf.get("rope_scaling") or {}
    rope_theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    scaling = {**legacy, **rope}
    scaling.pop("rope_theta", None)
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type not in ("default", "linear", "llama3"):
      raise ValueError(f"unsupported rope_type {rope_type!r}")
    rope_scaling = None
    if rope_type != "default":
      scaling["rope_type"] = rope_type
      scaling.pop("type", None)
      rope_scaling = tuple(sorted(scaling.items()))
    if model_type == "qwen2":
      attention_bias, out_bias = True, False
    else:
      attention_bias = out_bias = bool(hf.get("attention_bias", False))
    if dtype is None:
      dtype = hf.get("dtype") or hf.get("torch_dtype") or "float32"
      dtype = dtype if dtype in _DTYPES else "float32"
    return cls(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=num_heads,
        num_kv_heads=hf.get("num_key_value_heads") or num_heads,
        head_dim=head_dim,
        rope_theta=float(rope_theta),
        rope_scaling=rope_scaling,
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        attention_bias=attention_bias,
        attention_out_bias=out_bias,
        mlp_bias=bool(hf.get("mlp_bias", False)),
        qk_norm=model_type == "qwen3",
        model_type=model_type,
        dtype=dtype,
    )

  def to_hf(self) -> dict[str, Any]:
    """A `config.json` dict that `from_hf` (and Hugging Face) reads back to this config."""
    hf = {
        "model_type": self.model_type,
        "architectures": [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                           "qwen3": "Qwen3ForCausalLM", "mistral": "MistralForCausalLM"}[
                               self.model_type]],
        "vocab_size": self.vocab_size,
        "hidden_size": self.hidden_size,
        "intermediate_size": self.intermediate_size,
        "num_hidden_layers": self.num_layers,
        "num_attention_heads": self.num_heads,
        "num_key_value_heads": self.num_kv_heads,
        "head_dim": self.head_dim,
        "rope_theta": self.rope_theta,
        "rms_norm_eps": self.rms_norm_eps,
        "tie_word_embeddings": self.tie_word_embeddings,
        "hidden_act": "silu",
        "dtype": self.dtype,
    }
    if self.model_type in ("llama", "mistral"):
      if self.attention_bias != self.attention_out_bias:
        raise ValueError("llama checkpoints tie the q/k/v and output biases")
      hf["attention_bias"] = self.attention_bias
      hf["mlp_bias"] = self.mlp_bias
    if self.rope_scaling is not None:
      hf["rope_scaling"] = dict(self.rope_scaling)
    return hf
