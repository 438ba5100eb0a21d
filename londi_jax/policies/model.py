"""A Llama-family decoder-only transformer in flax.linen.

RMSNorm (Zhang and Sennrich 2019), rotary positions (Su et al. 2021), SwiGLU (Shazeer 2020),
grouped-query attention (Ainslie et al. 2023), optional per-head q/k RMSNorm (Qwen 3) and qkv
bias (Qwen 2), tied or untied embeddings. Parameter names follow Hugging Face's
(`layers_3/self_attn/q_proj/kernel` for `model.layers.3.self_attn.q_proj.weight`), so checkpoints
map one to one.

Sequences carry a group axis internally: `[batch, groups, tokens]`. A plain forward pass has one
group; candidate scoring puts each candidate action in its own group, attending to a shared
prompt prefix (its keys and values computed once) and causally to itself only.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from londi_jax.policies.config import DecoderConfig

KV = tuple[jax.Array, jax.Array]

_MASKED = -1e30


def rope_inv_freq(config: DecoderConfig) -> jax.Array:
  """Rotary inverse frequencies `theta^(-2i/d)`, with `linear` or `llama3` scaling applied."""
  d = config.head_dim
  inv_freq = 1.0 / (config.rope_theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))  # [d/2]
  if config.rope_scaling is None:
    return inv_freq
  s = dict(config.rope_scaling)
  if s["rope_type"] == "linear":
    return inv_freq / s["factor"]
  factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
  old_len = s["original_max_position_embeddings"]
  wavelen = 2 * math.pi / inv_freq
  scaled = jnp.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
  smooth = (old_len / wavelen - low) / (high - low)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
  return jnp.where(medium, smoothed, scaled)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: jax.Array) -> jax.Array:
  """Rotates `x` [..., tokens, heads, head_dim] by `positions` [..., tokens] (rotate-half form)."""
  freqs = positions.astype(jnp.float32)[..., None] * inv_freq  # [..., tokens, head_dim/2]
  emb = jnp.concatenate([freqs, freqs], axis=-1)[..., None, :]  # [..., tokens, 1, head_dim]
  cos, sin = jnp.cos(emb).astype(x.dtype), jnp.sin(emb).astype(x.dtype)
  x1, x2 = jnp.split(x, 2, axis=-1)
  return x * cos + jnp.concatenate([-x2, x1], axis=-1) * sin


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array,
           prefix: KV | None = None, prefix_mask: jax.Array | None = None) -> jax.Array:
  """Scaled dot-product attention over a group's own tokens and an optional shared prefix.

  softmax(q k^T / sqrt(d) + mask) v (Vaswani et al. 2017), one softmax over the concatenation of
  the prefix keys and the group's keys; heads share key/value heads in groups of
  `heads / kv_heads`.

  Args:
    q: [batch, groups, tokens, heads, head_dim].
    k, v: [batch, groups, tokens, kv_heads, head_dim].
    mask: [batch, groups, tokens(query), tokens(key)] bool, True where attention is allowed.
    prefix: keys and values [batch, prefix, kv_heads, head_dim] shared by every group.
    prefix_mask: [batch, prefix] bool, the valid prefix tokens.

  Returns:
    [batch, groups, tokens, heads * head_dim].
  """
  b, g, t, h, d = q.shape
  hkv = k.shape[3]
  q = q.reshape(b, g, t, hkv, h // hkv, d) * jnp.asarray(1.0 / math.sqrt(d), q.dtype)
  scores = jnp.einsum("bgqhrd,bgkhd->bghrqk", q, k).astype(jnp.float32)  # [b, g, kv, rep, t, t]
  scores = jnp.where(mask[:, :, None, None], scores, _MASKED)
  if prefix is None:
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bghrqk,bgkhd->bgqhrd", probs, v)
  else:
    k_pre, v_pre = prefix
    p = k_pre.shape[1]
    pre = jnp.einsum("bgqhrd,bkhd->bghrqk", q, k_pre).astype(jnp.float32)  # [b, g, kv, rep, t, p]
    pre = jnp.where(prefix_mask[:, None, None, None, None, :], pre, _MASKED)
    probs = jax.nn.softmax(jnp.concatenate([pre, scores], axis=-1), axis=-1).astype(v.dtype)
    out = (jnp.einsum("bghrqk,bkhd->bgqhrd", probs[..., :p], v_pre)
           + jnp.einsum("bghrqk,bgkhd->bgqhrd", probs[..., p:], v))
  return out.reshape(b, g, t, h * d)


class RMSNorm(nn.Module):
  """x / sqrt(mean(x^2) + eps) * weight, computed in float32 (Zhang and Sennrich 2019)."""

  eps: float
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    weight = self.param("weight", nn.initializers.ones, (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return weight.astype(x.dtype) * normed.astype(x.dtype)


def _dense(config: DecoderConfig, features: int, bias: bool, name: str | None = None) -> nn.Dense:
  return nn.Dense(features, use_bias=bias, dtype=config.jnp_dtype, param_dtype=config.jnp_dtype,
                  kernel_init=nn.initializers.normal(0.02), name=name)


class Attention(nn.Module):
  """Grouped-query self-attention with rotary positions."""

  config: DecoderConfig

  def setup(self):
    c = self.config
    self.q_proj = _dense(c, c.num_heads * c.head_dim, c.attention_bias)
    self.k_proj = _dense(c, c.num_kv_heads * c.head_dim, c.attention_bias)
    self.v_proj = _dense(c, c.num_kv_heads * c.head_dim, c.attention_bias)
    self.o_proj = _dense(c, c.hidden_size, c.attention_out_bias)
    if c.qk_norm:
      self.q_norm = RMSNorm(c.rms_norm_eps, c.jnp_dtype)
      self.k_norm = RMSNorm(c.rms_norm_eps, c.jnp_dtype)

  def __call__(self, x: jax.Array, positions: jax.Array, mask: jax.Array,
               prefix: KV | None = None, prefix_mask: jax.Array | None = None
               ) -> tuple[jax.Array, KV]:
    c = self.config
    lead = x.shape[:-1]
    q = self.q_proj(x).reshape(*lead, c.num_heads, c.head_dim)  # [b, g, t, heads, head_dim]
    k = self.k_proj(x).reshape(*lead, c.num_kv_heads, c.head_dim)  # [b, g, t, kv_heads, head_dim]
    v = self.v_proj(x).reshape(*lead, c.num_kv_heads, c.head_dim)
    if c.qk_norm:
      q, k = self.q_norm(q), self.k_norm(k)
    inv_freq = rope_inv_freq(c)
    q, k = apply_rope(q, positions, inv_freq), apply_rope(k, positions, inv_freq)
    out = attend(q, k, v, mask, prefix, prefix_mask)
    return self.o_proj(out), (k, v)


class MLP(nn.Module):
  """SwiGLU: down(silu(gate(x)) * up(x)) (Shazeer 2020)."""

  config: DecoderConfig

  def setup(self):
    c = self.config
    self.gate_proj = _dense(c, c.intermediate_size, c.mlp_bias)
    self.up_proj = _dense(c, c.intermediate_size, c.mlp_bias)
    self.down_proj = _dense(c, c.hidden_size, c.mlp_bias)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down_proj(nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
  """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

  config: DecoderConfig

  def setup(self):
    c = self.config
    self.input_layernorm = RMSNorm(c.rms_norm_eps, c.jnp_dtype)
    self.self_attn = Attention(c)
    self.post_attention_layernorm = RMSNorm(c.rms_norm_eps, c.jnp_dtype)
    self.mlp = MLP(c)

  def __call__(self, x, positions, mask, prefix=None, prefix_mask=None):
    a, kv = self.self_attn(self.input_layernorm(x), positions, mask, prefix, prefix_mask)
    x = x + a
    return x + self.mlp(self.post_attention_layernorm(x)), kv


def positions_from_mask(attention_mask: jax.Array) -> jax.Array:
  """Position ids counting valid tokens only: cumsum(mask) - 1, clipped at 0."""
  return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


class Decoder(nn.Module):
  """The decoder. `apply({"params": p}, input_ids, attention_mask)` gives logits [B, T, vocab].

  Other entry points (through `apply(..., method=...)`): `encode` (final hidden states and every
  layer's keys and values), `extend` (tokens in groups over a shared prefix) and `logits`.
  """

  config: DecoderConfig

  def setup(self):
    c = self.config
    self.embed_tokens = nn.Embed(c.vocab_size, c.hidden_size, dtype=c.jnp_dtype,
                                 param_dtype=c.jnp_dtype,
                                 embedding_init=nn.initializers.normal(0.02))
    self.layers = [DecoderLayer(c) for _ in range(c.num_layers)]
    self.norm = RMSNorm(c.rms_norm_eps, c.jnp_dtype)
    if not c.tie_word_embeddings:
      self.lm_head = _dense(c, c.vocab_size, False)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None,
               position_ids: jax.Array | None = None) -> jax.Array:
    """Logits [B, T, vocab] of `input_ids` [B, T].

    Args:
      input_ids: [B, T] token ids, right-padded (or left-padded with explicit `position_ids`).
      attention_mask: [B, T], 1 for real tokens; defaults to all ones.
      position_ids: [B, T]; defaults to the count of real tokens before each one.
    """
    hidden, _ = self.encode(input_ids, attention_mask, position_ids)
    return self.logits(hidden)

  def encode(self, input_ids: jax.Array, attention_mask: jax.Array | None = None,
             position_ids: jax.Array | None = None) -> tuple[jax.Array, list[KV]]:
    """Final (normed) hidden states [B, T, d] and each layer's rotated keys and values."""
    b, t = input_ids.shape
    if attention_mask is None:
      attention_mask = jnp.ones((b, t), jnp.int32)
    if position_ids is None:
      position_ids = positions_from_mask(attention_mask)
    causal = jnp.tril(jnp.ones((t, t), bool))  # [t(query), t(key)]
    mask = causal[None] & attention_mask.astype(bool)[:, None, :]  # [b, t, t]
    hidden, kvs = self._run(input_ids[:, None], position_ids[:, None], mask[:, None])
    return hidden[:, 0], [(k[:, 0], v[:, 0]) for k, v in kvs]

  def extend(self, input_ids: jax.Array, position_ids: jax.Array, mask: jax.Array,
             prefix: Sequence[KV], prefix_mask: jax.Array) -> jax.Array:
    """Final hidden states [B, G, L, d] of token groups that attend to a shared prefix.

    Args:
      input_ids: [B, G, L] tokens of G groups (candidates) per row.
      position_ids: [B, G, L].
      mask: [B, G, L, L] bool attention within each group.
      prefix: per layer, keys and values [B, P, kv_heads, head_dim] from `encode`.
      prefix_mask: [B, P] bool, the prefix tokens every group may attend to.
    """
    hidden, _ = self._run(input_ids, position_ids, mask, prefix, prefix_mask)
    return hidden

  def logits(self, hidden: jax.Array) -> jax.Array:
    if self.config.tie_word_embeddings:
      return self.embed_tokens.attend(hidden)
    return self.lm_head(hidden)

  def _run(self, input_ids, positions, mask, prefix=None, prefix_mask=None):
    x = self.embed_tokens(input_ids)  # [b, g, t, d]
    kvs = []
    for i, layer in enumerate(self.layers):
      x, kv = layer(x, positions, mask, None if prefix is None else prefix[i], prefix_mask)
      kvs.append(kv)
    return self.norm(x), kvs


def init_params(config: DecoderConfig, rng: jax.Array) -> dict:
  """Random parameters of a decoder with `config` (normal(0.02) weights, unit norms)."""
  ids = jnp.zeros((1, 2), jnp.int32)
  return Decoder(config).init(rng, ids)["params"]
