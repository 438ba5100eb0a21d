"""Model configurations, read from and written to Hugging Face `config.json` dicts.

`DecoderConfig` covers `model_type` `llama`, `qwen2` and `qwen3` (Llama 3, Qwen 2.5 and 3,
SmolLM 2, Mistral without sliding windows); `T5Config` covers `model_type` `t5` (original T5,
T5 v1.1, Flan-T5). `config_from_hf` picks one from `model_type`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")
ENCODER_DECODER_MODEL_TYPES = ("t5",)

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


_T5_ACTIVATIONS = ("relu", "gelu", "gelu_new", "silu")


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Static shape and numerics of a T5 encoder-decoder (Raffel et al. 2020, JMLR 21:140).

  Attributes:
    vocab_size: number of token ids (shared by the encoder, the decoder and the output head).
    d_model: model width `d`.
    d_kv: width of one attention head; the attention's inner width is `num_heads * d_kv`.
    d_ff: feed-forward inner width.
    num_layers: encoder blocks.
    num_decoder_layers: decoder blocks.
    num_heads: attention heads.
    relative_attention_num_buckets: buckets of the relative position bias.
    relative_attention_max_distance: distance beyond which relative positions share a bucket.
    layer_norm_epsilon: epsilon of T5's RMS layer norm (no mean, no bias).
    feed_forward_proj: `relu` (original T5: `wo(relu(wi x))`) or `gated-gelu` (T5 v1.1 and
      Flan-T5: `wo(gelu_tanh(wi_0 x) * wi_1 x)`, Shazeer 2020); `gated-<act>` and `<act>` for
      `act` in relu, gelu, silu also read.
    tie_word_embeddings: whether the output head is the shared input embedding.
    scale_decoder_outputs: whether the decoder output is multiplied by `d_model ** -0.5` before
      the head (original T5, whose head is tied; not T5 v1.1 or Flan-T5).
    pad_token_id, eos_token_id: the tokenizer's padding and end-of-sequence ids.
    decoder_start_token_id: the first decoder input (T5: the padding id).
    model_type: `t5`.
    dtype: compute dtype name (`float32` or `bfloat16`).
  """

  vocab_size: int
  d_model: int
  d_kv: int
  d_ff: int
  num_layers: int
  num_decoder_layers: int
  num_heads: int
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6
  feed_forward_proj: str = "gated-gelu"
  tie_word_embeddings: bool = False
  scale_decoder_outputs: bool = False
  pad_token_id: int = 0
  eos_token_id: int = 1
  decoder_start_token_id: int = 0
  model_type: str = "t5"
  dtype: str = "float32"

  def __post_init__(self):
    if self.activation not in _T5_ACTIVATIONS:
      raise ValueError(f"unsupported feed_forward_proj {self.feed_forward_proj!r}")

  @property
  def jnp_dtype(self):
    return _DTYPES[self.dtype]

  @property
  def hidden_size(self) -> int:
    """`d_model`, under the name the switcher's features read."""
    return self.d_model

  @property
  def is_gated(self) -> bool:
    return self.feed_forward_proj.startswith("gated-")

  @property
  def activation(self) -> str:
    """The feed-forward activation, named as in transformers' `ACT2FN`."""
    act = self.feed_forward_proj.removeprefix("gated-")
    return "gelu_new" if self.feed_forward_proj == "gated-gelu" else act

  @property
  def inner_dim(self) -> int:
    return self.num_heads * self.d_kv

  def replace(self, **changes: Any) -> "T5Config":
    return dataclasses.replace(self, **changes)

  def attention_params(self) -> int:
    """q, k, v and o of one attention layer."""
    return 4 * self.d_model * self.inner_dim

  def ff_params(self) -> int:
    return (3 if self.is_gated else 2) * self.d_model * self.d_ff

  def encoder_matmul_params(self) -> int:
    """Per-token matrix weights of the encoder blocks."""
    return self.num_layers * (self.attention_params() + self.ff_params())

  def cross_kv_params(self) -> int:
    """Cross-attention k and v weights of every decoder block (run on the encoder output)."""
    return self.num_decoder_layers * 2 * self.d_model * self.inner_dim

  def decoder_matmul_params(self) -> int:
    """Per-token matrix weights of the decoder blocks: self-attention, cross-attention q and o,
    feed-forward (the cross-attention's k and v run on encoder tokens: `cross_kv_params`)."""
    per_layer = self.attention_params() + 2 * self.d_model * self.inner_dim + self.ff_params()
    return self.num_decoder_layers * per_layer

  def matmul_params(self) -> int:
    """Every matrix weight of the blocks (no embeddings, no head)."""
    return self.encoder_matmul_params() + self.cross_kv_params() + self.decoder_matmul_params()

  def norm_params(self) -> int:
    return self.d_model * (2 * self.num_layers + 3 * self.num_decoder_layers + 2)

  def num_params(self, include_embeddings: bool = True) -> int:
    """Parameter count: blocks, norms, both relative position tables and the embeddings (the
    head once more when untied)."""
    bias = 2 * self.relative_attention_num_buckets * self.num_heads
    embed = self.vocab_size * self.d_model * (1 if self.tie_word_embeddings else 2)
    return self.matmul_params() + self.norm_params() + bias + (embed if include_embeddings else 0)

  @classmethod
  def from_hf(cls, hf: Mapping[str, Any], dtype: str | None = None) -> "T5Config":
    """Reads a Hugging Face T5 `config.json` dict.

    transformers 4 writes `tie_word_embeddings: false` for T5 v1.1 and Flan-T5 (untied head, no
    output scaling); transformers 5 writes `tie_word_embeddings: true` for every T5 and
    `scale_decoder_outputs` beside it. Either way a head without the output scaling is untied.

    Args:
      hf: the parsed `config.json`.
      dtype: compute dtype; defaults to the checkpoint's `dtype` / `torch_dtype`, else float32.
    """
    if hf.get("model_type") not in ENCODER_DECODER_MODEL_TYPES:
      raise ValueError(f"not a T5 config: model_type {hf.get('model_type')!r}")
    tied = hf.get("tie_word_embeddings", True) is not False
    scale = bool(hf.get("scale_decoder_outputs", tied))
    if dtype is None:
      dtype = hf.get("dtype") or hf.get("torch_dtype") or "float32"
      dtype = dtype if dtype in _DTYPES else "float32"
    pad = hf.get("pad_token_id", 0)
    start = hf.get("decoder_start_token_id")
    eos = hf.get("eos_token_id", 1)
    return cls(
        vocab_size=hf["vocab_size"],
        d_model=hf["d_model"],
        d_kv=hf["d_kv"],
        d_ff=hf["d_ff"],
        num_layers=hf["num_layers"],
        num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
        num_heads=hf["num_heads"],
        relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
        layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-6)),
        feed_forward_proj=hf.get("feed_forward_proj", "relu"),
        tie_word_embeddings=tied and scale,
        scale_decoder_outputs=scale,
        pad_token_id=pad,
        eos_token_id=eos[0] if isinstance(eos, list) else eos,
        decoder_start_token_id=pad if start is None else start,
        dtype=dtype,
    )

  def to_hf(self) -> dict[str, Any]:
    """A `config.json` dict that `from_hf` and transformers 4 and 5 read back to this config."""
    return {
        "model_type": "t5",
        "architectures": ["T5ForConditionalGeneration"],
        "is_encoder_decoder": True,
        "vocab_size": self.vocab_size,
        "d_model": self.d_model,
        "d_kv": self.d_kv,
        "d_ff": self.d_ff,
        "num_layers": self.num_layers,
        "num_decoder_layers": self.num_decoder_layers,
        "num_heads": self.num_heads,
        "relative_attention_num_buckets": self.relative_attention_num_buckets,
        "relative_attention_max_distance": self.relative_attention_max_distance,
        "layer_norm_epsilon": self.layer_norm_epsilon,
        "feed_forward_proj": self.feed_forward_proj,
        "tie_word_embeddings": self.tie_word_embeddings,
        "scale_decoder_outputs": self.scale_decoder_outputs,
        "pad_token_id": self.pad_token_id,
        "eos_token_id": self.eos_token_id,
        "decoder_start_token_id": self.decoder_start_token_id,
        "dtype": self.dtype,
    }


ModelConfig = DecoderConfig | T5Config


def config_from_hf(hf: Mapping[str, Any], dtype: str | None = None) -> ModelConfig:
  """The config of a Hugging Face `config.json` dict: `T5Config` for `model_type` `t5`, else
  `DecoderConfig`."""
  if hf.get("model_type") in ENCODER_DECODER_MODEL_TYPES:
    return T5Config.from_hf(hf, dtype=dtype)
  return DecoderConfig.from_hf(hf, dtype=dtype)
